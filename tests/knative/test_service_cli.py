"""`knserve service create|update|list` with kn's flags, against the real control API (in process)."""

from __future__ import annotations

import random
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from knserve.knative.apiserver.client import Client
from knserve.knative.apiserver.kinds import by_name
from knserve.knative.cli import root
from knserve.knative.cli.configuration_flags import container_port, revision_name, scale_bounds

SERVICES = by_name("services")
SCALE = "autoscaling.knative.dev/"


@pytest.fixture
def api(control_api: Client) -> Client:
    return control_api


def kn(api: Client, *args: str) -> Result:
    """The CLI in process, pointed at the test's control API, without waiting for a controller."""
    wait = ("--no-wait",) if args[:2] in (("service", "create"), ("service", "update")) else ()
    return CliRunner().invoke(root, [*args, *wait], env={"KNSERVE_API": api.base_url})


def service(api: Client, name: str = "hello") -> dict[str, Any]:
    return api.get(SERVICES, "default", name)


def test_create_puts_each_flag_where_kn_puts_it(api: Client) -> None:
    result = kn(
        api,
        "service",
        "create",
        "hello",
        "--image",
        "python",
        "--cmd",
        "python3",
        "--cmd",
        "-c",
        "--arg",
        "import sys; print(sys.argv)",
        "--arg",
        "two words",
        "--port",
        "h2c:8080",
        "--scale",
        "2..5",
        "--scale-init",
        "3",
        "--scale-activation",
        "2",
        "--scale-metric",
        "rps",
        "--cluster-local",
        "--label",
        "team=ml",
        "--label-revision",
        "tier=gold",
        "--annotation",
        "owner=ada",
        "--annotation",
        f"{SCALE}window=60s",
        "--annotation-service",
        "note=on-the-service",
        "--annotation-revision",
        "owner=bob",
        "--revision-name",
        "v5",
    )
    assert result.exit_code == 0, result.output
    svc = service(api)
    assert svc["metadata"]["labels"] == {
        "team": "ml",
        "networking.knative.dev/visibility": "cluster-local",
    }
    # an autoscaling annotation stays off the Service; --annotation-revision wins on the revision
    assert svc["metadata"]["annotations"] == {"owner": "ada", "note": "on-the-service"}
    template = svc["spec"]["template"]
    assert template["metadata"] == {
        "name": "hello-v5",
        "labels": {"team": "ml", "tier": "gold"},
        "annotations": {
            f"{SCALE}min-scale": "2",
            f"{SCALE}max-scale": "5",
            f"{SCALE}metric": "rps",
            f"{SCALE}activation-scale": "2",
            f"{SCALE}initial-scale": "3",
            f"{SCALE}window": "60s",
            "owner": "bob",
        },
    }
    [container] = template["spec"]["containers"]
    assert container["command"] == ["python3", "-c"]
    assert container["args"] == ["import sys; print(sys.argv)", "two words"]
    assert container["ports"] == [{"name": "h2c", "containerPort": 8080}]


def test_update_edits_only_what_the_flags_name(api: Client) -> None:
    assert (
        kn(
            api,
            "service",
            "create",
            "hello",
            "--cmd",
            "python3 -m http.server $(PORT)",
            "--label",
            "team=ml",
            "--annotation",
            "owner=ada",
            "--cluster-local",
        ).exit_code
        == 0
    )
    # one --cmd is shell-split, as the README writes it
    assert service(api)["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "python3",
        "-m",
        "http.server",
        "$(PORT)",
    ]
    result = kn(
        api,
        "service",
        "update",
        "hello",
        "--scale",
        "4",
        "--port",
        "9000",
        "--annotation",
        "owner-",
        "--no-cluster-local",
        "--revision-name",
        "{{.Service}}-g{{.Generation}}",
    )
    assert result.exit_code == 0, result.output
    svc = service(api)
    assert svc["metadata"]["labels"] == {"team": "ml"}
    assert "annotations" not in svc["metadata"]
    template = svc["spec"]["template"]
    assert template["metadata"] == {
        "name": "hello-g2",
        "labels": {"team": "ml"},
        "annotations": {f"{SCALE}min-scale": "4", f"{SCALE}max-scale": "4"},
    }
    assert template["spec"]["containers"][0]["ports"] == [{"containerPort": 9000}]

    # --scale 2.. moves only the minimum; a changed template without a new name gets a generated one
    assert kn(api, "service", "update", "hello", "--scale", "2..").exit_code == 0
    template = service(api)["spec"]["template"]
    assert "name" not in template["metadata"]
    assert template["metadata"]["annotations"] == {
        f"{SCALE}min-scale": "2",
        f"{SCALE}max-scale": "4",
    }

    # no flag, no change: the generation stays
    generation = service(api)["metadata"]["generation"]
    assert kn(api, "service", "update", "hello").exit_code == 0
    assert service(api)["metadata"]["generation"] == generation


def test_list_shows_the_latest_ready_revision(api: Client) -> None:
    assert kn(api, "service", "create", "hello", "--image", "python").exit_code == 0
    svc = service(api)
    svc["status"] = {
        "url": "http://hello.default.localhost",
        "latestCreatedRevisionName": "hello-00002",
        "latestReadyRevisionName": "hello-00001",
        "observedGeneration": 1,
    }
    api.http.put("/apis/serving.knative.dev/v1/namespaces/default/services/hello/status", json=svc)
    listed = kn(api, "service", "list")
    assert listed.exit_code == 0, listed.output
    header, row = listed.output.splitlines()
    assert header.split()[:3] == ["NAME", "URL", "LATEST"]
    assert row.split()[:3] == ["hello", "http://hello.default.localhost", "hello-00001"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--scale", "two"], "scale must be of the format x..y or x"),
        (["--scale", "2", "--scale-max", "3"], "only --scale or --scale-max can be specified"),
        (["--annotation-service", f"{SCALE}min-scale=1"], "--annotation-revision"),
        (["--port", "h2c:"], "write it as 8080 or h2c:8080"),
        (
            ["--scale-init", "1", "--annotation", f"{SCALE}initial-scale=2"],
            "only one of --scale-init",
        ),
        (["--revision-name", "{{.Name}}"], "the template knows {{.Service}}"),
    ],
)
def test_flags_kn_refuses_are_refused_with_the_fix(
    api: Client, flags: list[str], message: str
) -> None:
    result = kn(api, "service", "create", "hello", "--image", "python", *flags)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert api.list(SERVICES, "default") == []


@pytest.mark.parametrize(
    ("value", "bounds"), [("3", (3, 3)), ("1..5", (1, 5)), ("2..", (2, None)), ("..7", (None, 7))]
)
def test_scale_is_a_value_or_a_range(value: str, bounds: tuple[int | None, int | None]) -> None:
    assert scale_bounds(value) == bounds


@pytest.mark.parametrize(
    ("template", "name"),
    [
        ("v5", "hello-v5"),
        ("hello-v5", "hello-v5"),
        ("{{.Service}}-{{.Generation}}", "hello-7"),
        ("g{{ .Generation }}", "hello-g7"),
        ("{{.Service}}-{{.Random 4}}", "hello-gxdl"),
        ("", ""),
    ],
)
def test_revision_names_are_expanded_and_prefixed_as_kn_does(template: str, name: str) -> None:
    assert revision_name(template, "hello", 7, random.Random(1)) == name


def test_a_port_may_be_named() -> None:
    assert container_port("8080") == {"containerPort": 8080}
    assert container_port("http1:8081") == {"name": "http1", "containerPort": 8081}
    with pytest.raises(click.BadParameter):
        container_port("70000")
