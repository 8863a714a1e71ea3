"""The port map's LD_PRELOAD shim, built with the system's C compiler, in real processes: each bind
it maps lands where PortMap.target says, on loopback; and the environment a replica gets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from knserve.knative.supervisor.port_map import PortMap
from knserve.knative.supervisor.port_map_shim import ReplicaPorts, ShimUnavailable, build

EPHEMERAL = (32768, 60999)

# Binds each (family, address, port, v6only) in order, keeping every socket open, and prints
# where each landed: what a server that insists on its ports does.
BINDER = """
import json, socket, sys
held, out = [], []
for family, host, port, v6only in json.loads(sys.argv[1]):
    sock = socket.socket(getattr(socket, family))
    if v6only is not None:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
    try:
        sock.bind((host, port))
        out.append(list(sock.getsockname()[:2]))
    except OSError as exc:
        out.append(["error", exc.errno])
    held.append(sock)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("shim"))


def binds(
    shim: Path | None, mapping: PortMap | None, asked: list[tuple[str, str, int, int | None]]
) -> tuple[list[list[object]], str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "KNSERVE_PORT_MAP")}
    if shim is not None:
        env["LD_PRELOAD"] = str(shim)
    if mapping is not None:
        env["KNSERVE_PORT_MAP"] = mapping.env_value()
    done = subprocess.run(
        [sys.executable, "-c", BINDER, json.dumps(asked)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(done.stdout), done.stderr


def free_fixed_port() -> int:
    """A free loopback port below the ephemeral range: one a server would name in its args."""
    for port in range(20000, 30000):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise AssertionError("no free port in 20000-29999")


def test_fixed_binds_land_where_the_pure_map_says_on_loopback(shim: Path) -> None:
    with socket.socket() as own:
        own.bind(("127.0.0.1", 0))
        real = own.getsockname()[1]  # the plane's $PORT: free, released before the replica binds
    mapping = PortMap(8080, real, EPHEMERAL)
    asked = [8080, 8081, 9000, 8082, 80, 0, 61000]
    landed, log = binds(shim, mapping, [("AF_INET", "0.0.0.0", port, None) for port in asked])
    assert [host for host, _ in landed] == ["127.0.0.1"] * len(asked)
    for port, (_, got) in zip(asked, landed, strict=True):
        expected = mapping.target(port)
        if expected:
            assert got == expected
        else:  # a free port the kernel chose
            assert isinstance(got, int) and EPHEMERAL[0] <= got <= EPHEMERAL[1] and got != port
    assert f"knserve port map: bind 0.0.0.0 port 8080 -> 127.0.0.1 port {real}" in log
    assert "knserve port map: bind 0.0.0.0 port 8081 -> 127.0.0.1 port " in log


def test_the_replicas_own_port_and_kernel_ports_bind_as_asked_and_unreported(shim: Path) -> None:
    with socket.socket() as own:
        own.bind(("127.0.0.1", 0))
        real = own.getsockname()[1]
    landed, log = binds(
        shim, PortMap(8080, real, EPHEMERAL), [("AF_INET", "127.0.0.1", real, None)]
    )
    assert landed == [["127.0.0.1", real]]
    assert log == ""


def test_ipv6_any_becomes_a_loopback_the_gateway_can_dial(shim: Path) -> None:
    with socket.socket() as own:
        own.bind(("127.0.0.1", 0))
        real = own.getsockname()[1]
    mapping = PortMap(8080, real, EPHEMERAL)
    # gRPC's [::]:8081 is dual-stack: it lands on IPv4's loopback through a mapped address
    landed, _ = binds(shim, mapping, [("AF_INET6", "::", 8081, 0)])
    assert landed[0][0] == "::ffff:127.0.0.1"
    # a v6-only socket gets ::1; so does a dual-stack one whose IPv4 port is taken already
    landed, _ = binds(
        shim,
        mapping,
        [
            ("AF_INET", "0.0.0.0", 8080, None),
            ("AF_INET6", "::", 8080, 0),
            ("AF_INET6", "::1", 0, 1),
        ],
    )
    assert landed[:2] == [["127.0.0.1", real], ["::1", real]]
    assert landed[2][0] == "::1"
    landed, _ = binds(shim, mapping, [("AF_INET6", "::", 8080, 1)])
    assert landed == [["::1", real]]


def test_without_a_map_the_shim_leaves_binds_alone(shim: Path) -> None:
    port = free_fixed_port()
    assert binds(shim, None, [("AF_INET", "127.0.0.1", port, None)]) == (
        [["127.0.0.1", port]],
        "",
    )


def test_a_failed_bind_says_so_in_the_log(shim: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        real = taken.getsockname()[1]
        landed, log = binds(
            shim, PortMap(8080, real, EPHEMERAL), [("AF_INET", "0.0.0.0", 8080, None)]
        )
    assert landed == [["error", 98]]  # EADDRINUSE, as the server would see it
    assert "knserve port map: bind 0.0.0.0 port 8080 failed: Address already in use" in log


def test_the_build_is_cached_by_its_source_and_reused(shim: Path) -> None:
    assert shim.name.startswith("knserve-port-map-") and shim.suffix == ".so"
    # a second plane finds it: no compiler is needed for it
    assert build(shim.parent, compiler="no-such-cc") == shim
    assert [p.name for p in shim.parent.iterdir()] == [shim.name]  # nothing half-written left


def test_without_a_compiler_the_reason_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(
        ShimUnavailable, match=r"no C compiler \('no-such-cc'\).*apt-get install gcc"
    ):
        build(tmp_path, compiler="no-such-cc")
    with pytest.raises(ShimUnavailable, match="false could not build the port map"):
        build(tmp_path, compiler="false")
    assert list(tmp_path.iterdir()) == []


CONTAINER = {"ports": [{"containerPort": 9000}]}


async def test_an_execd_replica_gets_the_map_and_the_shim_first_in_its_preload(
    shim: Path,
) -> None:
    ports = ReplicaPorts(shim.parent)
    env, note = await ports.env(CONTAINER, 41000, ["/usr/bin/server"], {"LD_PRELOAD": "/x.so"})
    assert env["KNSERVE_PORT_MAP"].startswith("9000=41000,keep=")
    assert env["LD_PRELOAD"] == f"{shim}:/x.so"
    assert note is None
    env, _ = await ports.env({}, 41000, ["/usr/bin/server"], {})
    assert env["LD_PRELOAD"] == str(shim)
    assert env["KNSERVE_PORT_MAP"].startswith("8080=41000,keep=")


async def test_knserves_runtime_gets_the_map_without_a_preload(shim: Path) -> None:
    ports = ReplicaPorts(shim.parent)
    argv = [sys.executable, "-m", "knserve.runtime", "--http_port=8080"]
    env, note = await ports.env({}, 41000, argv, {})
    assert set(env) == {"KNSERVE_PORT_MAP"} and note is None


async def test_without_a_shim_the_replicas_log_says_it_must_listen_on_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CC", "no-such-cc")
    env, note = await ReplicaPorts(tmp_path).env(CONTAINER, 41000, ["/usr/bin/server"], {})
    assert set(env) == {"KNSERVE_PORT_MAP"}
    assert note is not None
    assert "knserve: ports are not mapped (no C compiler ('no-such-cc')" in note
    assert note.endswith("must listen on $PORT (41000), not on a fixed port such as 9000")


def test_nothing_is_written_to_a_descriptor_2_that_is_a_connection(shim: Path) -> None:
    """A daemon that closed stderr may hold a client's connection on descriptor 2."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        env = {**os.environ, "LD_PRELOAD": str(shim), "KNSERVE_PORT_MAP": "8080=0,keep=1-1"}
        done = subprocess.run(
            [sys.executable, "-c", BINDER, json.dumps([("AF_INET", "0.0.0.0", 8081, None)])],
            env=env,
            stdout=subprocess.PIPE,
            stderr=theirs.fileno(),
            timeout=30,
            check=True,
        )
        assert json.loads(done.stdout)[0][0] == "127.0.0.1"  # mapped all the same
        ours.setblocking(False)
        with pytest.raises(BlockingIOError):
            ours.recv(1)
