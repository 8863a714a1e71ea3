"""`knserve func run`: the function on this machine, in its own environment, in the foreground.

It builds first (a cache hit when nothing changed), starts the host with func.yaml's `run.envs`
on 127.0.0.1, prints the URL, and records it in `.func/instance.json` so `func invoke --path`
finds it; the record is removed when the function stops.

Stopping is `docker stop`'s: SIGINT or SIGTERM is passed on to the host, which finishes its
requests and runs the function's `stop()`; a host still running `STOP_GRACE_SECONDS` later, or
at a second signal, is killed. The host leads its own process group (a terminal's Ctrl-C reaches
`func run` alone, which passes it on once), and dies with `func run` even if that is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from knserve.functions import funcyaml
from knserve.functions.build import Progress, build_function
from knserve.functions.errors import FunctionError
from knserve.functions.images import command_for_image
from knserve.functions.parent_death import dying_with_parent

INSTANCE = Path(".func") / "instance.json"
STOP_GRACE_SECONDS = 10.0  # docker stop's default, which func gives a function's container


def run_function(
    folder: Path,
    port: int = 8080,
    build: bool = True,
    progress: Progress = print,
    grace: float = STOP_GRACE_SECONDS,
) -> int:
    """Run the function in `folder` until it exits or is stopped; its exit status (128 + the
    signal's number when a signal ended it, as a shell reports it)."""
    folder = Path(folder).resolve()
    spec = funcyaml.load(folder)
    if build:
        result = build_function(folder, progress)
        found = command_for_image(result.image)
        assert found is not None
        argv, cwd = found
    else:
        argv, cwd = [sys.executable, "-m", "knserve.functions.host", "--path", str(folder)], folder
    env = {**os.environ, **funcyaml.envs(spec), "PORT": str(port)}
    url = f"http://127.0.0.1:{port}"
    host = _Host(grace)
    stopping = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, host.stop) for s in stopping}
    previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, host.kill)
    record = folder / INSTANCE
    try:
        host.start([*argv, "--port", str(port)], cwd, env)
        assert host.process is not None
        record.parent.mkdir(exist_ok=True)
        record.write_text(json.dumps({"url": url, "pid": host.process.pid, "name": spec["name"]}))
        progress(f"Running {spec['name']} at {url}")
        code = host.process.wait()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        record.unlink(missing_ok=True)
    return 128 - code if code < 0 else code


class _Host:
    """The function's process, and what SIGINT, SIGTERM and the grace period's alarm do to it."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.process: subprocess.Popen[bytes] | None = None
        self.stopped_by: int | None = None  # a signal that came before the process started

    def start(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            argv, cwd=cwd, env=env, start_new_session=True, preexec_fn=dying_with_parent()
        )
        if self.stopped_by is not None:
            self._signal(self.stopped_by)

    def stop(self, signum: int, _frame: object) -> None:
        if self.stopped_by is not None and self.process is not None:
            self.kill()  # asked twice: no more waiting
            return
        self.stopped_by = signum
        if self.process is not None:
            self._signal(signum)

    def kill(self, *_: object) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self.process is None or self.process.returncode is not None:
            return  # reaped: its group id may belong to another process by now
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)
        if signum != signal.SIGKILL:
            signal.setitimer(signal.ITIMER_REAL, self.grace)


def running_url(folder: Path) -> str:
    record = Path(folder) / INSTANCE
    if not record.is_file():
        raise FunctionError(
            f"the function in {folder} is not running: start it with `knserve func run`, or pass --target URL"
        )
    return str(json.loads(record.read_text())["url"])
