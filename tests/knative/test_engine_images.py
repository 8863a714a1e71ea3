"""Third-party engine images as processes: which engine and version an image names, its ENV under
the container's, and Kubernetes' rules between the container's command/args and the image's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from knserve.knative.supervisor.engine_env import environment_dir
from knserve.knative.supervisor.engines import MLSERVER, EngineImage, engine_image, image_tag
from knserve.knative.supervisor.images import (
    ImageError,
    engine_of,
    image_name,
    resolve,
    with_image_env,
)

KSERVE_MLSERVER_IMAGE = "docker.io/seldonio/mlserver:1.7.1"


@pytest.mark.parametrize(
    ("image", "version"),
    [
        (KSERVE_MLSERVER_IMAGE, "1.7.1"),
        ("seldonio/mlserver:1.6.0-slim", "1.6.0"),
        ("seldonio/mlserver", MLSERVER.default_version),
        ("seldonio/mlserver:latest", MLSERVER.default_version),
        ("quay.io/seldonio/mlserver:1.7.1@sha256:abc", "1.7.1"),
        ("mlserver:replace", MLSERVER.default_version),  # KServe's YAML before kustomize
    ],
)
def test_an_mlserver_image_names_the_engine_at_its_tags_version(image: str, version: str) -> None:
    found = engine_image(image_name(image), image)
    assert found == EngineImage(MLSERVER, version)


def test_other_images_are_no_engine() -> None:
    for image in ("kserve/sklearnserver:v0.14", "python:3.11", "nginx", "seldonio/other:1.7.1"):
        assert engine_image(image_name(image), image) is None
    assert image_tag("localhost:5000/a/b") == ""


def test_the_pins_of_a_verified_version_follow_the_engines_packages() -> None:
    requirements = MLSERVER.requirements("1.7.1")
    assert requirements[:5] == [
        "mlserver==1.7.1",
        "mlserver-sklearn==1.7.1",
        "mlserver-xgboost==1.7.1",
        "mlserver-lightgbm==1.7.1",
        "mlserver-mlflow==1.7.1",
    ]
    assert any(r.startswith("mlflow==") for r in requirements)
    # an unverified version gets the engine's own packages at that version, nothing more
    assert MLSERVER.requirements("1.5.0") == [f"{p}==1.5.0" for p in MLSERVER.packages]


def test_each_version_has_its_own_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KNSERVE_ENGINES_HOME", str(tmp_path))
    one, other = EngineImage(MLSERVER, "1.7.1"), EngineImage(MLSERVER, "1.6.0")
    assert environment_dir(one).parent == tmp_path
    assert environment_dir(one).name.startswith("mlserver-1.7.1-")
    assert environment_dir(one) != environment_dir(other)


def kserve_mlserver_container(**extra: object) -> dict:
    """kserve-mlserver's container as KServe's controller renders it for an mlflow model."""
    return {
        "name": "kserve-container",
        "image": KSERVE_MLSERVER_IMAGE,
        "env": [
            {"name": "MLSERVER_MODEL_IMPLEMENTATION", "value": "mlserver_mlflow.MLflowRuntime"},
            {"name": "MLSERVER_HTTP_PORT", "value": "8080"},
            {"name": "MLSERVER_GRPC_PORT", "value": "9000"},
            {"name": "MLSERVER_MODEL_NAME", "value": "wine"},
            {"name": "MLSERVER_MODEL_URI", "value": "/mnt/models"},
        ],
        **extra,
    }


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def test_the_image_env_lies_under_the_containers_and_puts_the_engine_on_path(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("KNSERVE_ENGINES_HOME", str(tmp_path))
    container = kserve_mlserver_container()
    layered = with_image_env(container)
    root = environment_dir(EngineImage(MLSERVER, "1.7.1"))
    env = env_of(layered)
    assert env["MLSERVER_MODELS_DIR"] == "/mnt/models"  # the image's, for the storage initializer
    assert env["PATH"].split(os.pathsep)[0] == str(root / "bin")
    assert env["VIRTUAL_ENV"] == str(root)
    assert layered["env"][-5:] == container["env"]  # the container's own come last, unchanged
    assert container["env"] == kserve_mlserver_container()["env"]  # not mutated

    own = kserve_mlserver_container()
    own["env"].append({"name": "MLSERVER_MODELS_DIR", "value": "/srv/models"})
    assert env_of(with_image_env(own))["MLSERVER_MODELS_DIR"] == "/srv/models"
    assert [e["name"] for e in with_image_env(own)["env"]].count("MLSERVER_MODELS_DIR") == 1

    plain = {"image": "kserve/sklearnserver", "env": [{"name": "A", "value": "1"}]}
    assert with_image_env(plain) == plain
    assert engine_of(plain) is None


def test_without_command_or_args_the_images_cmd_runs() -> None:
    container = with_image_env(kserve_mlserver_container())
    argv, cwd = resolve(container, {"MLSERVER_MODELS_DIR": "/data/models"})
    assert argv == ["mlserver", "start", "/data/models"]
    assert cwd is None


def test_args_replace_the_images_cmd_and_a_command_replaces_both() -> None:
    args = kserve_mlserver_container(args=["mlserver", "start", "$(MODELS)"])
    assert resolve(args, {"MODELS": "/m"})[0] == ["mlserver", "start", "/m"]
    command = kserve_mlserver_container(command=["mlserver"], args=["infer", "-u", "x"])
    assert resolve(command, {})[0] == ["mlserver", "infer", "-u", "x"]


def test_torchserves_kserve_image_says_why_not_and_what_to_use() -> None:
    container = {
        "image": "pytorch/torchserve-kfs:0.9.0",
        "args": ["torchserve", "--start", "--model-store=/mnt/models/model-store"],
    }
    with pytest.raises(ImageError, match=r"torchserve-kfs\) cannot run on the local plane") as err:
        resolve(container, {})
    assert "knserve-pytorch" in str(err.value)
    assert ".pt2" in str(err.value)
