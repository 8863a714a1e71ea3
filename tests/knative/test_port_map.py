"""The port map (pure): which port a replica's bind gets, from its container and its `$PORT`;
and knserve's runtime honouring it for its own `--http_port`."""

from __future__ import annotations

from typing import Any

import pytest

from knserve.knative.supervisor.port_map import (
    DEFAULT_EPHEMERAL,
    PortError,
    PortMap,
    declared_port,
    ephemeral_range,
)
from knserve.runtime.server import settings_from_args
from knserve.runtime.settings import plane_port, settings_from_env


@pytest.mark.parametrize(
    ("container", "port"),
    [
        ({}, 8080),
        ({"ports": []}, 8080),
        ({"ports": None}, 8080),
        ({"ports": [{"containerPort": 9000}]}, 9000),
        ({"ports": [{"name": "h2c", "containerPort": 8081}]}, 8081),
        ({"ports": [{"containerPort": 9000}, {"containerPort": 9001}]}, 9000),
        ({"ports": [{"name": "http1"}]}, 8080),  # Knative defaults a missing number to 8080
        ({"ports": [{"containerPort": 0}]}, 8080),
        ({"ports": [{"containerPort": 65535}]}, 65535),
    ],
)
def test_the_declared_port_is_the_first_container_port_else_knatives_8080(
    container: dict[str, Any], port: int
) -> None:
    assert declared_port(container) == port


@pytest.mark.parametrize("bad", [-1, 65536, "8080", 80.5, True])
def test_a_container_port_that_is_no_port_number_says_what_to_give(bad: object) -> None:
    with pytest.raises(PortError, match=r"ports\[0\]\.containerPort is .*; give a port number"):
        declared_port({"ports": [{"containerPort": bad}]})


MAP = PortMap(declared=8080, real=43123, keep=(32768, 60999))


@pytest.mark.parametrize(
    ("asked", "bound"),
    [
        (8080, 43123),  # the declared port is the replica's own port
        (43123, 43123),  # its $PORT, as plain Knative containers bind it
        (0, 0),  # a free port stays a free port
        (8081, 0),  # KServe's gRPC, the plane's API port: a free one instead
        (9000, 0),  # MLServer's gRPC
        (8082, 0),  # MLServer's metrics, the plane's broker port
        (80, 0),
        (32767, 0),  # just below the ephemeral range
        (32768, 32768),  # the range's ends are kept: the kernel hands those out
        (60999, 60999),
        (61000, 0),
        (65535, 0),
    ],
)
def test_binds_map_the_declared_port_keep_kernel_ports_and_free_the_rest(
    asked: int, bound: int
) -> None:
    assert MAP.target(asked) == bound


def test_a_declared_port_inside_the_ephemeral_range_still_maps_to_the_replicas_port() -> None:
    mapping = PortMap.for_container({"ports": [{"containerPort": 50000}]}, 40000)
    assert (mapping.target(50000), mapping.target(40000), mapping.target(45000)) == (
        40000,
        40000,
        45000,
    )


def test_the_environment_value_names_declared_real_and_the_kept_range() -> None:
    assert MAP.env_value() == "8080=43123,keep=32768-60999"
    mapping = PortMap.for_container({"ports": [{"containerPort": 9000}]}, 41000, (1024, 4999))
    assert mapping.env_value() == "9000=41000,keep=1024-4999"


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("32768\t60999\n", (32768, 60999)),
        ("1024 65535", (1024, 65535)),
        (None, DEFAULT_EPHEMERAL),
        ("", DEFAULT_EPHEMERAL),
        ("garbage", DEFAULT_EPHEMERAL),
        ("60999 32768", DEFAULT_EPHEMERAL),
        ("0 100", DEFAULT_EPHEMERAL),
        ("1 2 3", DEFAULT_EPHEMERAL),
    ],
)
def test_the_ephemeral_range_is_read_from_proc_or_linuxs_default(
    text: str | None, span: tuple[int, int]
) -> None:
    assert ephemeral_range(text) == span


@pytest.mark.parametrize(
    ("env", "asked", "port"),
    [
        ({"KNSERVE_PORT_MAP": "8080=43123,keep=32768-60999"}, 8080, 43123),
        ({"KNSERVE_PORT_MAP": "8080=43123,keep=32768-60999"}, 43123, 43123),
        ({"KNSERVE_PORT_MAP": "9000=43123,keep=32768-60999"}, 8080, 8080),
        ({"KNSERVE_PORT_MAP": "nonsense"}, 8080, 8080),
        ({}, 8080, 8080),
    ],
)
def test_the_runtime_serves_its_declared_port_on_the_replicas_port(
    env: dict[str, str], asked: int, port: int
) -> None:
    assert plane_port(asked, env) == port


def test_kserves_http_port_flag_on_the_plane_is_the_replicas_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PORT", "43123")
    monkeypatch.setenv("KNSERVE_PORT_MAP", "8080=43123,keep=32768-60999")
    args = ["--model_name=iris", "--model_dir=/models/iris", "--http_port=8080"]
    settings = settings_from_args(args)
    assert (settings.host, settings.port) == ("127.0.0.1", 43123)
    # on the plane only loopback, as every other replica's bind
    settings = settings_from_args([*args, "--host", "0.0.0.0"])
    assert (settings.host, settings.port) == ("127.0.0.1", 43123)
    assert settings_from_args([*args, "--host", "::1"]).host == "::1"


def test_without_the_plane_the_runtime_binds_what_it_is_told() -> None:
    settings = settings_from_env({"PORT": "9001"}, host="0.0.0.0", port=8080)
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)
    assert settings_from_env({"PORT": "9001"}).port == 9001
