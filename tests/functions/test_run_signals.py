"""`knserve func run` stopped by a signal, or killed, stops the function process it started."""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from function_fixtures import start_func_run
from net_fixtures import ServerProcess, eventually
from plane_fixtures import descendants, running

pytestmark = pytest.mark.slow

HANGING_STOP = """

    def stop(self):
        import time

        time.sleep(3600)  # a stop hook that never returns
"""


def func_run(
    spawn: Callable[..., ServerProcess], folder: Path, port: int, *args: str
) -> tuple[ServerProcess, int, int]:
    """`knserve func run` serving `folder`; with its host's pid and start time once it is ready."""
    proc = start_func_run(spawn, folder, port, *args)
    host = json.loads((folder / ".func" / "instance.json").read_text())["pid"]
    assert host != proc.pid and host in descendants(proc.pid)
    return proc, host, descendants(host)[host]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_func_run_stops_the_function_and_then_func_run(
    created_functions: dict[str, Path],
    functions_home: Path,
    spawn: Callable[..., ServerProcess],
    port: int,
    sig: int,
) -> None:
    proc, host, started = func_run(spawn, created_functions["http"], port)
    os.kill(proc.pid, sig)
    assert proc.proc.wait(30) in (0, 128 + sig)
    assert not running(host, started)
    assert not (created_functions["http"] / ".func" / "instance.json").exists()


def test_a_func_run_that_is_killed_takes_its_function_with_it(
    created_functions: dict[str, Path],
    functions_home: Path,
    spawn: Callable[..., ServerProcess],
    port: int,
) -> None:
    proc, host, started = func_run(spawn, created_functions["http"], port)
    os.kill(proc.pid, signal.SIGKILL)
    eventually(
        lambda: not running(host, started), 5, f"the function's host {host} outlived func run"
    )


def test_a_function_that_does_not_stop_is_killed_after_the_grace_period(
    created_functions: dict[str, Path],
    spawn: Callable[..., ServerProcess],
    port: int,
    tmp_path: Path,
) -> None:
    folder = tmp_path / "stuck"
    shutil.copytree(created_functions["http"], folder, ignore=shutil.ignore_patterns(".func"))
    source = folder / "function" / "func.py"
    source.write_text(
        source.read_text().replace("\n    def stop(self):\n        pass\n", HANGING_STOP)
    )
    assert "time.sleep(3600)" in source.read_text()
    proc, host, started = func_run(spawn, folder, port, "--no-build")
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.proc.wait(30) == 128 + signal.SIGKILL  # after the 10 s grace period
    assert not running(host, started)
