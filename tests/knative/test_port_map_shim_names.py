"""The port map shim's part of cluster DNS, in real processes: with KNSERVE_GATEWAY a client that
ignores HTTP_PROXY still reaches `{service}.{namespace}.{domain}` (port 80) at the gateway, which
routes by Host; other names and ports are left alone."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from knserve.knative.supervisor.port_map import GATEWAY_ENV
from knserve.knative.supervisor.port_map_shim import build

# Connects to (host, port) as a plain client would, sends an HTTP request naming the host, and
# prints the first line the server answers (or the error).
CLIENT = """
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(f"GET / HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n".encode())
        print(sock.makefile("rb").readline().decode().strip())
except OSError as exc:
    print("error", type(exc).__name__)
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("shim"))


@pytest.fixture
def gateway():
    """A one-request-at-a-time HTTP server on 127.0.0.1 standing for the gateway: it answers with
    the Host it was asked for, so the test sees the name arrived intact."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    code = (
        "import socket, sys\n"
        "s = socket.socket(fileno=int(sys.argv[1]))\n"
        "while True:\n"
        "    c, _ = s.accept()\n"
        "    data = c.recv(4096).decode()\n"
        "    host = next((l.split(':', 1)[1].strip() for l in data.splitlines()\n"
        "                 if l.lower().startswith('host:')), '?')\n"
        "    c.sendall(f'HTTP/1.0 200 {host}\\r\\n\\r\\n'.encode()); c.close()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(server.fileno())], pass_fds=[server.fileno()]
    )
    try:
        yield server.getsockname()[1]
    finally:
        process.kill()
        process.wait()
        server.close()


def ask(shim: Path, gateway_env: str | None, host: str, port: int) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", GATEWAY_ENV)}
    env["LD_PRELOAD"] = str(shim)
    if gateway_env is not None:
        env[GATEWAY_ENV] = gateway_env
    done = subprocess.run(
        [sys.executable, "-c", CLIENT, host, str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


def test_a_service_name_on_port_80_reaches_the_gateway_with_its_host(
    shim: Path, gateway: int
) -> None:
    host = "iris-predictor.default.localhost"
    assert ask(shim, f"localhost={gateway}", host, 80) == f"HTTP/1.0 200 {host}"
    assert ask(shim, f"localhost={gateway}", host + ".", 80).startswith("HTTP/1.0 200")


def test_the_plane_domain_decides_which_names_are_services(shim: Path, gateway: int) -> None:
    host = "iris-predictor.default.example.com"
    assert ask(shim, f"example.com={gateway}", host, 80) == f"HTTP/1.0 200 {host}"
    # a name outside the domain is resolved as usual (here: not at all)
    assert ask(shim, f"localhost={gateway}", host, 80).startswith("error")


def test_without_the_gateway_setting_names_and_ports_are_left_alone(
    shim: Path, gateway: int
) -> None:
    assert ask(shim, None, "iris-predictor.default.localhost", 80).startswith("error")
    # and with it, only port 80 moves: a client dialling another loopback port gets that port
    assert ask(shim, f"localhost={gateway}", "127.0.0.1", gateway).startswith("HTTP/1.0 200")
