"""Replicas forked from the warm zygote, and exec'd when they cannot be."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest
from net_fixtures import free_port

from knserve.knative.supervisor.launcher import ForkedProcess, Launcher
from knserve.knative.supervisor.zygote import forkable

pytestmark = pytest.mark.slow


def iris_server(model_dir: Path) -> list[str]:
    """The command line of a model server for iris: what the zygote may fork."""
    return [
        sys.executable,
        "-m",
        "knserve.runtime",
        "--model_name",
        "iris",
        "--model_dir",
        str(model_dir),
    ]


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


async def ready(port: int, timeout: float = 30.0) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(int(timeout / 0.01)):
            try:
                if (
                    await client.get(f"http://127.0.0.1:{port}/v2/health/ready")
                ).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.01)  # a process we do not control: polling is the only signal
    pytest.fail(f"nothing ready on port {port}")


def test_only_knserve_modules_of_this_python_are_forkable() -> None:
    assert (
        forkable([sys.executable, "-m", "knserve.runtime", "--model_name", "x"])
        == "knserve.runtime"
    )
    assert forkable([sys.executable, "-m", "http.server"]) is None
    assert forkable(["/usr/bin/env", "-m", "knserve.runtime"]) is None
    assert forkable([sys.executable, "script.py"]) is None


async def test_a_model_server_is_forked_from_the_zygote_and_stopped_by_its_group(
    tmp_path: Path, sklearn_iris_dir: Path
) -> None:
    launcher = Launcher(tmp_path / "run")
    launcher.warm_up()
    port = free_port()
    env = {**os.environ, "PORT": str(port)}
    argv = iris_server(sklearn_iris_dir)
    try:
        process = await launcher.spawn(argv, env, tmp_path, tmp_path / "replica.log")
        assert isinstance(process, ForkedProcess)
        assert parent_of(process.pid) == launcher._zygote.pid  # type: ignore[union-attr]
        await ready(port)
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                f"http://127.0.0.1:{port}/v1/models/iris:predict",
                json={"instances": [[6.8, 2.8, 4.8, 1.4]]},
            )
        assert answer.json() == {"predictions": [1]}
        os.killpg(process.pid, signal.SIGTERM)
        # uvicorn drains, then re-raises SIGTERM on itself, as an exec'd one does
        assert await asyncio.wait_for(process.wait(), 60) == -signal.SIGTERM

        # a command that is not a knserve module is exec'd, with its own exit code
        other = await launcher.spawn(
            [sys.executable, "-c", "raise SystemExit(3)"], env, None, tmp_path / "x.log"
        )
        assert not isinstance(other, ForkedProcess)
        assert await asyncio.wait_for(other.wait(), 60) == 3

        # a crash in the replica is reported with its code, its output in its log
        crash = await launcher.spawn(
            [sys.executable, "-m", "knserve.runtime", "--model_dir", "/nonexistent"],
            env,
            None,
            tmp_path / "crash.log",
        )
        assert await asyncio.wait_for(crash.wait(), 30) != 0
        assert (tmp_path / "crash.log").read_text()
    finally:
        await launcher.close()


async def test_when_the_zygote_dies_its_replicas_report_an_unknown_exit(
    tmp_path: Path, sklearn_iris_dir: Path
) -> None:
    launcher = Launcher(tmp_path / "run")
    port = free_port()
    argv = iris_server(sklearn_iris_dir)
    try:
        process = await launcher.spawn(
            argv, {**os.environ, "PORT": str(port)}, None, tmp_path / "r.log"
        )
        await ready(port)
        os.kill(launcher._zygote.pid, signal.SIGKILL)  # type: ignore[union-attr]
        assert await asyncio.wait_for(process.wait(), 60) == -1
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # as the supervisor does for code -1
        # the next replica starts a new zygote
        again = await launcher.spawn(
            argv, {**os.environ, "PORT": str(free_port())}, None, tmp_path / "r2.log"
        )
        assert isinstance(again, ForkedProcess)
        os.killpg(again.pid, signal.SIGTERM)
        await asyncio.wait_for(again.wait(), 60)  # bounded; a loaded machine is slow to stop it
    finally:
        await launcher.close()
