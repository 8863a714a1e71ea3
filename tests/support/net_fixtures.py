"""Loopback networking for tests: free ports, ASGI apps served from a thread, and processes that
are always stopped by their id."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

T = TypeVar("T")


def eventually(
    probe: Callable[[], T | None],
    timeout: float = 15.0,
    failure: str | Callable[[], str] = "",
    interval: float = 0.05,
) -> T:
    """The first truthy result of `probe`, polled every `interval` seconds for `timeout`; else the
    test fails with `failure` (or what a callable writes then, from the last thing it saw).

    Only for what runs in another process or thread, whose state can be read but not awaited.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            message = failure() if callable(failure) else failure
            pytest.fail(message or f"not true within {timeout}s: {probe}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening_socket() -> tuple[socket.socket, int]:
    """A socket bound to a free loopback port and listening (connections wait in its backlog)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock, int(sock.getsockname()[1])


@contextmanager
def serve_in_thread(app: Any, timeout: float = 10.0) -> Iterator[str]:
    """Serve the ASGI `app` with uvicorn on a free loopback port, from a thread; yields its URL.

    The socket is bound and listening before uvicorn starts, so a first request waits in the
    kernel's backlog instead of the test polling for uvicorn to be up.
    """
    sock, port = listening_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn :{port}", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


@asynccontextmanager
async def serve_in_loop(app: Any, **config: Any) -> AsyncIterator[str]:
    """`serve_in_thread` for async tests: uvicorn runs as a task of the running loop."""
    sock, port = listening_socket()
    server = uvicorn.Server(
        uvicorn.Config(app, **{"log_level": "error", "lifespan": "off", **config})
    )
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"uvicorn :{port}")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


class ServerProcess:
    """A subprocess started by a test, with its output kept in a log file for failure messages."""

    def __init__(
        self,
        args: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> None:
        self.args = list(args)
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(
            self.args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_http(self, url: str, timeout: float = 30.0, status: int = 200) -> httpx.Response:
        """Poll ``url`` until it answers ``status``; fail with the process log if it never does."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        last: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.args} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                response = httpx.get(url, timeout=2.0)
                if response.status_code == status:
                    return response
                last = response.status_code
            except httpx.TransportError as exc:
                last = exc
            time.sleep(delay)  # polling a process we do not control; no event to await
            delay = min(delay * 2, 0.2)
        pytest.fail(f"{url} not {status} after {timeout}s (last: {last!r}):\n{self.log()}")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM the process group we started, then SIGKILL it after ``timeout``."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def port() -> int:
    """A free loopback port."""
    return free_port()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[object]:
    """Start processes for a test; every one is stopped (by its process group id) at teardown."""
    started: list[ServerProcess] = []

    def _spawn(
        args: Sequence[str], env: dict[str, str] | None = None, cwd: str | Path | None = None
    ) -> ServerProcess:
        log = tmp_path / f"proc-{len(started)}.log"
        server = ServerProcess(args, log, env=env, cwd=cwd)
        started.append(server)
        return server

    yield _spawn
    for server in reversed(started):
        server.stop()


PYTHON = sys.executable


def model_server(
    spawn: Callable[..., ServerProcess],
    name: str,
    model_dir: str | Path,
    port: int,
    env: dict[str, str] | None = None,
) -> ServerProcess:
    """`python -m knserve.runtime` serving one model on `port` (a `spawn`ed process, not awaited)."""
    argv = ["--model-name", name, "--model-dir", str(model_dir), "--http-port", str(port)]
    return spawn([sys.executable, "-m", "knserve.runtime", *argv], env=env)
