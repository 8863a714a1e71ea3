"""knserve's images: the Containerfiles `make images` builds parse and copy only what exists,
the build names the images exactly as `knserve export --registry --tag` does, never `latest`."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from dockerfile_parse import DockerfileParser

from knserve.functions.build import _write_containerfile
from knserve.knative.apiserver.release_images import (
    FUNCTION_BASE,
    IMAGES,
    OPERATOR,
    RUNTIME,
    InvalidRelease,
    package_version,
    release,
)
from knserve.knative.cli.export import cli as export_cli
from knserve.knative.kube.manifests import DEPLOY_DIR, operator_manifests

ROOT = Path(__file__).parents[2]  # the build context: the repository root
SCRIPT = DEPLOY_DIR / "build-images.sh"
ONNX_ISVC = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: mnist}
spec:
  predictor:
    model:
      modelFormat: {name: onnx}
      storageUri: gs://bucket/mnist
"""


def parse(path: Path) -> DockerfileParser:
    # a path argument names a folder holding `Dockerfile`; ours are named Containerfile.*
    parser = DockerfileParser(fileobj=io.BytesIO(path.read_bytes()))
    assert parser.structure, path
    return parser


def parsed(name: str) -> DockerfileParser:
    return parse(DEPLOY_DIR / f"Containerfile.{name}")


@pytest.mark.parametrize("name", IMAGES)
def test_each_containerfile_parses_and_copies_only_paths_of_the_repository(name: str) -> None:
    parser = parsed(name)
    assert parser.baseimage == "python:3.11-slim"
    copies = [i for i in parser.structure if i["instruction"] in ("COPY", "ADD")]
    assert copies, name
    for instruction in copies:
        *sources, _dest = instruction["value"].split()
        assert not any(s.startswith("--") for s in sources)  # no --from/--chown surprises
        missing = [s for s in sources if not (ROOT / s).exists()]
        assert missing == [], (name, instruction["value"])
    # every package folder setup.py maps is copied, else `pip install /src` misses one
    copied = {s for i in copies for s in i["value"].split()[:-1]}
    assert {"runtime", "functions", "eventing", "knative", "scaffolds", "setup.py"} <= copied
    user = [i["value"] for i in parser.structure if i["instruction"] == "USER"]
    assert user and not user[-1].startswith("0"), "no root in the pod"


def test_the_runtime_image_installs_the_framework_extras_given_as_a_build_argument() -> None:
    parser = parsed(RUNTIME)
    assert parser.args["EXTRAS"] == "sklearn,xgboost,lightgbm,onnx"
    run = next(i["value"] for i in parser.structure if i["instruction"] == "RUN")
    assert '"/src[${EXTRAS}]"' in run
    assert yaml.safe_load(
        next(i["value"] for i in parser.structure if i["instruction"] == "ENTRYPOINT")
    ) == ["python", "-m", "knserve.runtime"]


def test_the_function_base_runs_the_function_host_on_the_workspace() -> None:
    parser = parsed(FUNCTION_BASE)
    assert parser.envs["PORT"] == "8080"
    cmd = next(i["value"] for i in parser.structure if i["instruction"] == "CMD")
    assert yaml.safe_load(cmd) == ["python", "-m", "knserve.functions.host", "--path", "/workspace"]


def test_a_functions_containerfile_starts_from_the_configured_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "requirements.txt").write_text("httpx>=0.27\n")
    monkeypatch.setenv("KNSERVE_REGISTRY", "localhost:5001")
    monkeypatch.setenv("KNSERVE_TAG", "7.1")
    _write_containerfile(tmp_path)
    parser = parse(tmp_path / "Containerfile")
    assert parser.baseimage == "localhost:5001/knserve/function-base:7.1"
    assert any("'httpx>=0.27'" in i["value"] for i in parser.structure if i["instruction"] == "RUN")
    monkeypatch.delenv("KNSERVE_REGISTRY")
    monkeypatch.delenv("KNSERVE_TAG")
    _write_containerfile(tmp_path)
    base = parse(tmp_path / "Containerfile").baseimage
    assert base == f"knserve/function-base:{package_version()}"


def build_commands(**env: str) -> list[list[str]]:
    result = subprocess.run(
        ["sh", str(SCRIPT), "--print"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.split() for line in result.stdout.splitlines()]


def tagged(commands: list[list[str]]) -> dict[str, str]:
    return {Path(c[c.index("-f") + 1]).suffix[1:]: c[c.index("-t") + 1] for c in commands}


def test_make_images_tags_what_export_names() -> None:
    commands = build_commands(REGISTRY="ghcr.io/acme/", TAG="1.4.2")
    rel = release("ghcr.io/acme", "1.4.2")
    assert tagged(commands) == {name: rel.image(name) for name in IMAGES}
    assert all(c[-1] == str(ROOT) for c in commands)  # the build context the COPY paths assume
    runtime = next(c for c in commands if rel.image(RUNTIME) in c)
    assert "EXTRAS=sklearn,xgboost,lightgbm,onnx" in runtime
    default = tagged(build_commands(REGISTRY="", TAG=""))
    assert default == {name: f"knserve/{name}:{package_version()}" for name in IMAGES}


def test_make_images_refuses_latest_and_says_why_when_nothing_can_build(tmp_path: Path) -> None:
    latest = subprocess.run(
        ["sh", str(SCRIPT)], env={**os.environ, "TAG": "latest"}, capture_output=True, text=True
    )
    assert latest.returncode == 2 and "TAG may not be latest" in latest.stderr
    # a PATH with the shell's tools and neither podman nor docker
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "sed", "head", "dirname"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or tool)
    none = subprocess.run(
        ["sh", str(SCRIPT)], env={"PATH": str(bin_dir)}, capture_output=True, text=True
    )
    assert none.returncode == 1
    assert "neither podman nor docker can build here: neither is installed" in none.stderr


def export(path: Path, *args: str) -> list[dict]:
    result = CliRunner().invoke(export_cli, ["-f", str(path), "--target", "kube", *args])
    assert result.exit_code == 0, result.output
    return list(yaml.safe_load_all(result.output))


def images_of(objects: list[dict]) -> list[str]:
    return [
        c["image"]
        for o in objects
        for c in (o.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or [])
    ]


def test_export_names_the_configured_runtime_image_and_never_latest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "isvc.yaml"
    path.write_text(ONNX_ISVC)
    assert images_of(export(path)) == [f"knserve/runtime:{package_version()}"]
    given = export(path, "--registry", "localhost:5001", "--tag", "0.9.1")
    assert images_of(given) == ["localhost:5001/knserve/runtime:0.9.1"]
    monkeypatch.setenv("KNSERVE_REGISTRY", "ghcr.io/acme")
    monkeypatch.setenv("KNSERVE_TAG", "2.0")
    assert images_of(export(path)) == ["ghcr.io/acme/knserve/runtime:2.0"]
    bad = CliRunner().invoke(export_cli, ["-f", str(path), "--tag", "latest"])
    assert bad.exit_code == 1 and "may not be 'latest'" in bad.output


def test_export_operator_names_the_operator_image_and_its_runtime_release() -> None:
    result = CliRunner().invoke(export_cli, ["--operator", "--registry", "r.io/x", "--tag", "3.1"])
    assert result.exit_code == 0, result.output
    objects = list(yaml.safe_load_all(result.output))
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "r.io/x/knserve/operator:3.1"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"KNSERVE_REGISTRY": "r.io/x", "KNSERVE_TAG": "3.1"}
    assert "latest" not in result.output
    missing = CliRunner().invoke(export_cli, [])
    assert missing.exit_code == 2 and "give -f FILE" in missing.output


def test_the_shipped_operator_yaml_is_the_default_release() -> None:
    shipped = [d for d in yaml.safe_load_all((DEPLOY_DIR / "operator.yaml").read_text()) if d]
    assert shipped == operator_manifests(release("", package_version()))
    assert images_of(shipped) == [f"knserve/operator:{package_version()}"]


@pytest.mark.parametrize(
    ("registry", "tag", "message"),
    [
        ("", "latest", "may not be 'latest'"),
        ("", "-x", "not valid"),
        ("Not A Registry", "1", "registry 'Not A Registry' is not valid"),
    ],
)
def test_bad_registry_or_tag_says_what_to_use(registry: str, tag: str, message: str) -> None:
    with pytest.raises(InvalidRelease, match=message):
        release(registry, tag)


def test_the_plane_still_knows_a_pushed_runtime_image_as_knserves() -> None:
    from knserve.knative.supervisor.images import RUNTIME_IMAGES, image_name

    for registry in ("", "localhost:5001", "ghcr.io/acme"):
        assert image_name(release(registry, "1.0").image(RUNTIME)) in RUNTIME_IMAGES
    assert release("", "1").image(OPERATOR) == "knserve/operator:1"
