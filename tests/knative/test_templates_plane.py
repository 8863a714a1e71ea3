"""Warm per-revision templates on a real plane (knserve.knative.supervisor.templates): made
beside a revision's first replica, the next replica after scale to zero forked from it with the
model (or the function's environment) in memory, dropped with the revision, and never more than
the memory budget the plane reports on /metrics."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from isvc_fixtures import iris
from net_fixtures import ServerProcess, eventually
from plane_fixtures import FAST_AUTOSCALER, LocalPlane, apply

from knserve.knative.supervisor.templates import Held, to_drop

VERSICOLOR = {"instances": [[6.8, 2.8, 4.8, 1.4]]}
ISVC = "iris-predictor-00001"


def iris_at_zero(model_dir: Path) -> dict[str, Any]:
    model = {"modelFormat": {"name": "sklearn"}, "storageUri": f"file://{model_dir}"}
    return iris(minReplicas=0, model=model)


def templates(plane: LocalPlane) -> tuple[dict[str, float], float]:
    """(USS bytes per revision holding a template, the budget in bytes) from /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    uss: dict[str, float] = {}
    budget = -1.0
    for family in text_string_to_metric_families(plane.client.http.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "knserve_template_uss_bytes":
                uss[sample.labels["revision"]] = sample.value
            elif sample.name == "knserve_template_budget_bytes":
                budget = sample.value
    return uss, budget


def replica_pids(plane: LocalPlane, revision: str) -> list[int]:
    found = re.findall(rf"revision default/{revision} replica \d+: pid (\d+)", plane.log())
    return [int(pid) for pid in found]


def template_pid(plane: LocalPlane, revision: str) -> int:
    found = re.search(rf"template of default/{revision} ready \(pid (\d+)", plane.log())
    assert found, plane.log()[-3000:]
    return int(found.group(1))


def zygote_pid(plane: LocalPlane) -> int:
    found = re.search(r"zygote ready \(pid (\d+)\)", plane.log())
    assert found, plane.log()[-3000:]
    return int(found.group(1))


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def first_request_at_zero(plane: LocalPlane, revision: str) -> int:
    """Scale the revision to zero, wake it with a request; the pid of the replica that answered."""
    plane.wait_scaled_to_zero(revision)
    before = len(replica_pids(plane, revision))
    if revision == ISVC:
        answer = plane.call(
            "iris.default.localhost", "/v1/models/iris:predict", "POST", json=VERSICOLOR
        )
        assert answer.status_code == 200, answer.text + plane.log()[-3000:]
        assert answer.json() == {"predictions": [1]}
    else:
        answer = plane.call(f"{revision.rsplit('-', 1)[0]}.default.localhost", "/")
        assert answer.status_code == 200, answer.text + plane.log()[-3000:]
    return replica_pids(plane, revision)[before]


def template_of(plane: LocalPlane, revision: str) -> tuple[dict[str, float], float]:
    """Once the revision has a template: (USS per template, budget) from /metrics."""
    return eventually(
        lambda: (found := templates(plane))[0].get(revision) and found,
        90,
        lambda: f"no template for {revision}: {templates(plane)}\n{plane.log()[-3000:]}",
    )


def test_room_is_made_by_dropping_the_least_recently_used_idle_templates() -> None:
    held = [
        Held(("default", "a"), 40, last_used=1.0, busy=False),
        Held(("default", "b"), 40, last_used=0.5, busy=True),
        Held(("default", "c"), 40, last_used=2.0, busy=False),
    ]
    assert to_drop(held, budget=200, incoming=40) == []
    assert to_drop(held, budget=130, incoming=40) == [("default", "a")]
    assert to_drop(held, budget=90, incoming=40) == [("default", "a"), ("default", "c")]
    # the busy one is never dropped: its replicas would die with it
    assert to_drop(held, budget=50, incoming=40) is None


@pytest.mark.slow
def test_a_revisions_replicas_fork_from_its_template_which_goes_with_the_revision(
    fast_plane: LocalPlane, tmp_path: Path, sklearn_iris_dir: Path
) -> None:
    plane = fast_plane
    apply(plane, tmp_path, iris_at_zero(sklearn_iris_dir))
    plane.wait_ready("inferenceservices", "iris", timeout=120)
    # made beside the first replica, within the budget the plane reports
    uss, budget = template_of(plane, ISVC)
    assert 0 < uss[ISVC] <= budget == 512 * 2**20
    template = template_pid(plane, ISVC)
    assert parent_of(template) == zygote_pid(plane)

    # used: each scale from zero forks the replica from the template, the model in its memory
    for _ in range(2):
        replica = first_request_at_zero(plane, ISVC)
        assert parent_of(replica) == template

    # dropped with its revision
    deleted = plane.knserve("delete", "-f", str(tmp_path / "objects.yaml"))
    assert deleted.returncode == 0, deleted.stderr
    eventually(lambda: not alive(template), 30, lambda: plane.log()[-3000:])
    assert ISVC not in templates(plane)[0]
    assert f"template of default/{ISVC} dropped" in plane.log()


@pytest.mark.slow
def test_a_template_over_the_budget_is_not_kept_and_replicas_fork_from_the_zygote(
    spawn: Callable[..., ServerProcess], tmp_path: Path, sklearn_iris_dir: Path
) -> None:
    plane = LocalPlane(spawn, tmp_path / "plane", [*FAST_AUTOSCALER, "--template-budget-mib", "1"])
    try:
        apply(plane, tmp_path, iris_at_zero(sklearn_iris_dir))
        plane.wait_ready("inferenceservices", "iris", timeout=120)
        eventually(
            lambda: "does not fit the budget of 1 MiB" in plane.log(),
            60,
            lambda: plane.log()[-3000:],
        )
        assert templates(plane) == ({}, 2**20)
        replica = first_request_at_zero(plane, ISVC)
        assert parent_of(replica) == zygote_pid(plane)
        assert templates(plane) == ({}, 2**20)
    finally:
        plane.close()


@pytest.mark.slow
def test_a_function_with_its_own_environment_forks_from_a_template_in_that_environment(
    functions_home: Path, fast_plane: LocalPlane, tmp_path: Path
) -> None:
    plane = fast_plane
    folder = tmp_path / "hello"
    created = plane.knserve("func", "create", "-t", "http", "hello", "--path", str(folder))
    assert created.returncode == 0, created.stderr
    deployed = plane.knserve("func", "deploy", "--path", str(folder), timeout=300)
    assert deployed.returncode == 0, deployed.stderr + plane.log()[-3000:]
    revision = "hello-00001"
    template_of(plane, revision)
    template = template_pid(plane, revision)
    # exec'd with the environment's interpreter, which the plane's zygote cannot fork
    interpreter = Path(f"/proc/{template}/cmdline").read_bytes().split(b"\0")[0].decode()
    assert interpreter.startswith(str(functions_home)) and interpreter.endswith("/bin/python")

    replica = first_request_at_zero(plane, revision)
    assert parent_of(replica) == template

    deleted = plane.knserve("service", "delete", "hello")
    assert deleted.returncode == 0, deleted.stderr
    eventually(lambda: not alive(template), 30, lambda: plane.log()[-3000:])
    assert revision not in templates(plane)[0]
