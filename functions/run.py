"""`knserve func run`: the function on this machine, in its own environment, in the foreground.

It builds first (a cache hit when nothing changed), starts the host with func.yaml's `run.envs`
on 127.0.0.1, prints the URL, and records it in `.func/instance.json` so `func invoke --path`
finds it; the record is removed when the function stops.
"""

from __future__ import annotations

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

INSTANCE = Path(".func") / "instance.json"


def run_function(folder: Path, port: int = 8080, build: bool = True,
                 progress: Progress = print) -> int:  # fmt: skip
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
    proc = subprocess.Popen([*argv, "--port", str(port)], cwd=cwd, env=env)
    record = folder / INSTANCE
    record.parent.mkdir(exist_ok=True)
    record.write_text(json.dumps({"url": url, "pid": proc.pid, "name": spec["name"]}))
    progress(f"Running {spec['name']} at {url}")

    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        record.unlink(missing_ok=True)


def running_url(folder: Path) -> str:
    record = Path(folder) / INSTANCE
    if not record.is_file():
        raise FunctionError(
            f"the function in {folder} is not running: start it with `knserve func run`, or pass --target URL"
        )
    return str(json.loads(record.read_text())["url"])
