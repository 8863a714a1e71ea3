"""`knserve func build`: the function's own environment, reused while nothing changes.

The environment is a virtual environment layered on the one knserve runs in — the way a function
image is a layer on a base image: a `.pth` file makes knserve and everything installed with it
importable, and only the function's dependencies that the base lacks are installed (with uv where
it is installed, else pip). Nothing needs the network when the base already has them.

It is keyed by a digest of the function's source and dependencies (func.yaml, tests and build
outputs excluded, since they do not change what runs) plus the knserve and Python versions. A
build whose digest exists is a cache hit that only checks files; a new build is assembled in a
staging folder and renamed into place when complete, so a failed install leaves nothing behind.
The source is copied into the environment, so an image stays what it was when built.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from knserve.functions import funcyaml
from knserve.functions.errors import FunctionError
from knserve.functions.images import env_dir, functions_home, image_ref
from knserve.knative.apiserver.release_images import FUNCTION_BASE, InvalidRelease, release

EXCLUDED_DIRS = {".func", "__pycache__", ".pytest_cache", ".venv", ".git", "tests", ".ruff_cache"}
EXCLUDED_FILES = {funcyaml.FILENAME, "Containerfile"}

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BuildResult:
    image: str
    digest: str
    env: Path
    cached: bool
    seconds: float


def source_files(folder: Path) -> list[Path]:
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS)
        for name in sorted(names):
            if name not in EXCLUDED_FILES and not name.endswith(".pyc"):
                files.append(Path(root) / name)
    return files


def dependencies(folder: Path) -> list[str]:
    pyproject = folder / "pyproject.toml"
    deps: list[str] = []
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise FunctionError(f"{pyproject} is not valid TOML: {exc}") from None
        deps += list(data.get("project", {}).get("dependencies", []))
    requirements = folder / "requirements.txt"
    if requirements.is_file():
        deps += [
            line.strip()
            for line in requirements.read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
    return deps


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    h.update(f"knserve {version('knserve')} python {sys.version_info[:2]}\n".encode())
    for path in source_files(folder):
        h.update(str(path.relative_to(folder)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _quiet(_: str) -> None:
    pass


def build_function(folder: Path, progress: Progress = _quiet) -> BuildResult:
    """Build (or reuse) the environment of the function in `folder` and record its image."""
    start = time.perf_counter()
    folder = Path(folder).resolve()
    spec = funcyaml.load(folder)
    name = spec["name"]
    key = digest(folder)
    image = image_ref(name, key)
    target = env_dir(key)
    cached = (target / "manifest.json").is_file()
    if not cached:
        _assemble(folder, name, key, image, target, spec, progress)
    if spec.get("image") != image:
        spec["image"] = image
        funcyaml.save(folder, spec)
    _write_containerfile(folder)
    return BuildResult(image, key, target, cached, time.perf_counter() - start)


def _assemble(
    folder: Path, name: str, key: str, image: str, target: Path, spec: dict, progress: Progress
) -> None:
    home = functions_home()
    home.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".build-{key[:12]}-", dir=home))
    try:
        venv = staging / "venv"
        uv = shutil.which("uv")
        progress(f"creating the environment of {name} ({'uv' if uv else 'venv + pip'})")
        base_python = getattr(sys, "_base_executable", sys.executable)
        if uv:
            _run(
                [uv, "venv", "--quiet", "--python", base_python, str(venv)],
                "creating the environment",
            )
        else:
            _run([base_python, "-m", "venv", str(venv)], "creating the environment")
        site_packages = Path(
            sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)})
        )
        # Layer on knserve's environment: addsitedir also runs its .pth files (editable installs).
        base_sites = [
            p for p in {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")} if p
        ]
        lines = [f"import site; site.addsitedir({p!r})" for p in base_sites]
        (site_packages / "_knserve_base.pth").write_text("\n".join(lines) + "\n")
        deps = dependencies(folder)
        if deps:
            progress(f"installing {len(deps)} dependencies: {', '.join(deps)}")
            python = venv / "bin" / "python"
            if uv:
                cmd = [uv, "pip", "install", "--quiet", "--python", str(python), *deps]
            else:
                cmd = [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    *deps,
                ]
            _run(cmd, f"installing the dependencies of {name}")
        progress("copying the source")
        shutil.copytree(
            folder,
            staging / "src",
            ignore=shutil.ignore_patterns(*EXCLUDED_DIRS - {"tests"}, "*.pyc"),
        )
        manifest = {
            "name": name,
            "digest": key,
            "image": image,
            "source": str(folder),
            "invoke": spec.get("invoke", "http"),
            "built": datetime.now(UTC).replace(microsecond=0).isoformat(),
            "python": sys.version.split()[0],
            "dependencies": deps,
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
        try:
            staging.rename(target)
        except OSError:
            if not (target / "manifest.json").is_file():  # not a concurrent identical build
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _run(cmd: list[str], what: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-12:])
        raise FunctionError(f"{what} failed (exit {result.returncode}):\n{tail}")


# The base image (knative/deploy/Containerfile.function-base, built by `make images`) has knserve
# in a virtual environment the non-root user owns, WORKDIR /workspace, PORT and the host's CMD.
CONTAINERFILE = """\
# Written by `knserve func build` for the kube target: the function on knserve's function base
# image (`make images REGISTRY=… TAG=…`; $KNSERVE_REGISTRY and $KNSERVE_TAG name it here).
FROM {base}
COPY . /workspace
{install}CMD ["python", "-m", "knserve.functions.host", "--path", "/workspace"]
"""


def _write_containerfile(folder: Path) -> None:
    try:
        base = release().image(FUNCTION_BASE)
    except InvalidRelease as exc:
        raise FunctionError(str(exc)) from None
    deps = " ".join(f"'{d}'" for d in dependencies(folder))
    install = f"RUN pip install --no-cache-dir {deps}\n" if deps else ""
    text = CONTAINERFILE.format(base=base, install=install)
    path = folder / "Containerfile"
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
