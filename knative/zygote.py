"""A warm template process that forks replicas, so scale-from-zero skips Python's imports.

Starting a model server is mostly imports: `knserve.runtime` with scikit-learn spends over a
second on them before it reads a model. The zygote does those imports once, then waits on a Unix
socket; each replica the supervisor asks for is a `fork()` of it (copy-on-write: the imported
modules' pages are shared until written), which sets the replica's environment, working folder and
log, and runs the module (`python -m knserve.runtime …`) as `__main__` in the already-warm
interpreter.

Only `python -m MODULE` commands of this interpreter, for modules under `knserve.` are forked;
anything else is started the ordinary way by the supervisor.

The protocol is one JSON object per line. The supervisor sends
`{"argv": [...], "env": {...}, "cwd": str|null, "log": path}` and receives `{"pid": N}` (or
`{"error": "..."}`); when a replica exits the zygote, its parent, reaps it and sends
`{"exited": N, "code": C}`. The zygote stays single-threaded, so forking it is safe.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import os
import runpy
import selectors
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

# What a model server replica imports; more is cheap (shared pages), less is a slower replica.
DEFAULT_PRELOAD = (
    "knserve.runtime.server",
    "knserve.runtime.app",
    "knserve.runtime.formats.sklearn",
    "sklearn.linear_model",
    "sklearn.ensemble",
    "sklearn.tree",
    "sklearn.pipeline",
    "joblib",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.auto",
    "uvicorn.lifespan.on",
    "uvicorn.loops.uvloop",
    "encodings.idna",
    "knserve.functions.host",
)


def forkable(argv: Sequence[str]) -> str | None:
    """The module a zygote can run for `argv` (`<this python> -m knserve.…`), else None."""
    # The same interpreter *and* environment: a function's venv python resolves to the same
    # binary, but its own packages are not on this process's path, so it is exec'd instead.
    ours = len(argv) >= 3 and os.path.abspath(argv[0]) == os.path.abspath(sys.executable)
    return argv[2] if ours and argv[1] == "-m" and argv[2].startswith("knserve.") else None


def _child(request: dict, listener: socket.socket, conn: socket.socket, started: int) -> None:
    """In the forked replica: become the process the request describes, then run its module."""
    try:
        listener.close()
        conn.close()
        os.setsid()  # its own process group: the supervisor stops it (and its children) by group
        os.write(started, b".")
        os.close(started)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        if request.get("cwd"):
            os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        argv = request["argv"]
        sys.argv = [argv[2], *argv[3:]]
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


class _Server:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self.listener.bind(str(path))
        self.listener.listen()
        self.listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the selector through the pipe
        self.selector.register(self.wake_r, selectors.EVENT_READ, "signal")
        self.buffers: dict[socket.socket, bytes] = {}
        self.owner: dict[int, socket.socket] = {}  # replica pid -> the connection that asked
        self.running = True
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)

    def _stop(self, *_: object) -> None:
        self.running = False

    def serve(self) -> None:
        while self.running:
            for key, _ in self.selector.select(timeout=1.0):
                if key.data == "accept":
                    conn, _ = self.listener.accept()
                    conn.setblocking(True)
                    self.buffers[conn] = b""
                    self.selector.register(conn, selectors.EVENT_READ, "conn")
                elif key.data == "signal":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 512)
                    self._reap()
                else:
                    self._read(key.fileobj)  # type: ignore[arg-type]
            self._reap()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _read(self, conn: socket.socket) -> None:
        data = conn.recv(65536)
        if not data:
            self.selector.unregister(conn)
            self.buffers.pop(conn, None)
            conn.close()
            return
        buffer = self.buffers[conn] + data
        *lines, self.buffers[conn] = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                self._spawn(conn, json.loads(line))

    def _spawn(self, conn: socket.socket, request: dict) -> None:
        if forkable(request.get("argv") or []) is None:
            self._send(conn, {"error": f"cannot fork {request.get('argv')!r}"})
            return
        started_r, started_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(started_r)
            _child(request, self.listener, conn, started_w)
        os.close(started_w)
        # answer only once the child leads its own group, so stopping it by group never misses
        os.read(started_r, 1)
        os.close(started_r)
        self.owner[pid] = conn
        self._send(conn, {"pid": pid})

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.owner.pop(pid, None)
            if conn is not None:
                self._send(conn, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})

    def _send(self, conn: socket.socket, message: dict) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps(message).encode() + b"\n")


def _warm_up() -> None:
    """Pay first-call costs once, here, instead of in every replica's first request: scikit-learn's
    first predict scans every installed package's entry points (10-20 ms) and caches the result."""
    try:
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        x = np.asarray([[0.0, 1.0], [1.0, 0.0], [0.0, 0.9], [0.9, 0.1]])
        model = LogisticRegression().fit(x, [0, 1, 0, 1])
        model.predict(x[:1])
        model.predict_proba(x[:1])
    except Exception:
        pass  # an optional extra missing: replicas pay the cost themselves


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m knserve.knative.zygote")
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--preload", default=",".join(DEFAULT_PRELOAD))
    args = parser.parse_args(argv)
    for module in filter(None, args.preload.split(",")):
        try:
            importlib.import_module(module)
        except ImportError:
            pass  # an extra that is not installed: replicas that need it import it themselves
    _warm_up()
    # Objects that exist now are never collected: the collector then never writes to (and so
    # never copies) the pages replicas share with the zygote.
    gc.freeze()
    server = _Server(args.socket)
    print(f"zygote ready on {args.socket}", flush=True)
    server.serve()


if __name__ == "__main__":
    main()
