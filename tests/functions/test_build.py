"""`func build`: an environment keyed by a digest of the source, a cache hit when nothing changed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from knserve.functions.build import build_function
from knserve.functions.create import create_function
from knserve.functions.errors import FunctionError
from knserve.functions.images import command_for_image


@pytest.mark.slow
def test_build_twice_is_a_cache_hit_and_a_source_change_rebuilds(
    tmp_path: Path, functions_home: Path
) -> None:
    folder = create_function("twice", "http", tmp_path / "twice")
    first = build_function(folder)
    assert not first.cached
    assert yaml.safe_load((folder / "func.yaml").read_text())["image"] == first.image
    assert first.image.startswith("knserve.local/twice@sha256:")
    assert (folder / "Containerfile").read_text().startswith("# Written by `knserve func build`")
    second = build_function(folder)
    assert second.cached and second.image == first.image
    assert second.seconds < 1.0
    argv, cwd = command_for_image(first.image)
    assert Path(argv[0]).is_file() and (cwd / "function" / "func.py").is_file()
    (folder / "tests" / "test_extra.py").write_text("def test_x(): pass\n")  # tests do not count
    assert build_function(folder).cached
    func_py = folder / "function" / "func.py"
    func_py.write_text(func_py.read_text().replace("Hello", "Howdy"))
    third = build_function(folder)
    assert not third.cached and third.image != first.image


@pytest.mark.slow
def test_a_dependency_that_cannot_be_installed_fails_cleanly(
    tmp_path: Path, functions_home: Path
) -> None:
    folder = create_function("broken-deps", "http", tmp_path / "f")
    pyproject = folder / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            "dependencies = []", 'dependencies = ["knserve-no-such-package-zz==9.9.9"]'
        )
    )
    before = sorted(p.name for p in functions_home.iterdir())
    with pytest.raises(FunctionError, match="installing the dependencies of broken-deps failed"):
        build_function(folder)
    assert sorted(p.name for p in functions_home.iterdir()) == before  # nothing half-built
    assert "image" not in yaml.safe_load((folder / "func.yaml").read_text())


def test_images_that_are_not_built_functions() -> None:
    assert command_for_image("kserve/sklearnserver:latest") is None
    with pytest.raises(FunctionError, match="not built on this machine"):
        command_for_image("knserve.local/x@sha256:" + "0" * 64)


def test_building_needs_a_func_yaml(tmp_path: Path) -> None:
    with pytest.raises(FunctionError, match="no func.yaml"):
        build_function(tmp_path)
    shutil.rmtree(tmp_path)
