"""An engine's environment is built once per machine: concurrent builds wait for the one that
holds the lock, a killed build is never trusted, a failed one leaves nothing and says why.

The engine here is a real one in all but its packages: its only requirement is the pip that
every venv already has, so the build runs venv and pip for real and needs no network."""

from __future__ import annotations

import asyncio
import ensurepip
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from net_fixtures import eventually

from knserve.knative.supervisor.engine_env import (
    MANIFEST,
    EngineBuildError,
    EngineBuilds,
    build,
    built,
    environment_dir,
)
from knserve.knative.supervisor.engines import Engine, EngineImage

pytestmark = pytest.mark.slow

TINY = EngineImage(
    Engine(
        name="tiny",
        images=frozenset({"knserve-test/tiny"}),
        packages=(),
        default_version="1.0.0",
        pins={"1.0.0": (f"pip=={ensurepip.version()}",)},
    ),
    "1.0.0",
)


@pytest.fixture(autouse=True)
def engines_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "engines"
    monkeypatch.setenv("KNSERVE_ENGINES_HOME", str(home))
    return home


async def test_concurrent_builds_build_once_and_both_get_it() -> None:
    first: list[str] = []
    second: list[str] = []
    one, other = await asyncio.gather(build(TINY, first.append), build(TINY, second.append))
    assert one == other == environment_dir(TINY) == built(TINY)
    assert (one / "bin" / "python").exists()
    messages = first + second
    assert sum(m.startswith("creating the environment") for m in messages) == 1
    assert any(m.startswith("waiting for the build that holds") for m in messages)
    # a later start finds it built and says nothing
    later: list[str] = []
    assert await build(TINY, later.append) == one
    assert later == []


async def test_replicas_of_one_plane_share_one_build_and_its_progress() -> None:
    builds = EngineBuilds()
    seen: dict[str, list[str]] = {"a": [], "b": []}
    roots = await asyncio.gather(
        builds.environment(TINY, seen["a"].append), builds.environment(TINY, seen["b"].append)
    )
    assert roots[0] == roots[1] == built(TINY)
    assert seen["a"] == seen["b"]  # one build, told to both
    assert not any(m.startswith("waiting for the build") for m in seen["a"])
    assert any(m.startswith("installing pip==") for m in seen["a"])


def test_a_killed_build_is_not_trusted_and_the_next_builds_anew(engines_home: Path) -> None:
    pins = TINY.engine.pins["1.0.0"]
    script = (
        "import asyncio\n"
        "from knserve.knative.supervisor.engine_env import build\n"
        "from knserve.knative.supervisor.engines import Engine, EngineImage\n"
        f"engine = Engine('tiny', frozenset(), (), '1.0.0', {{'1.0.0': {pins!r}}})\n"
        "asyncio.run(build(EngineImage(engine, '1.0.0')))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    root = environment_dir(TINY)
    try:
        # the build is another process: its folder appearing is what can be observed
        eventually(lambda: (root / "bin" / "python").exists(), 120, "the build never started")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert not (root / MANIFEST).exists()
    assert built(TINY) is None
    (root / "leftover").write_text("from the killed build")

    assert asyncio.run(build(TINY)) == root
    assert built(TINY) == root
    assert not (root / "leftover").exists()


async def test_a_failed_build_says_why_and_leaves_nothing(tmp_path: Path) -> None:
    broken = EngineImage(
        Engine(
            name="broken",
            images=frozenset(),
            packages=(),
            default_version="1.0.0",
            pins={"1.0.0": (str(tmp_path / "no-such-project"),)},
        ),
        "1.0.0",
    )
    with pytest.raises(EngineBuildError, match=r"installing broken 1\.0\.0 failed \(exit 1\)"):
        await build(broken)
    assert not environment_dir(broken).exists()
    assert built(broken) is None
