"""Warm per-revision templates on a real plane (knserve.knative.supervisor.templates): made
beside a revision's first replica, the next replica after scale to zero forked from it with the
model (or the function's environment) in memory, dropped with the revision, and never more than
the memory budget the plane reports on /metrics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from net_fixtures import ServerProcess, eventually
from plane_fixtures import FAST_AUTOSCALER, LocalPlane, apply
from template_fixtures import (
    ISVC,
    alive,
    first_request_at_zero,
    iris_at_zero,
    parent_of,
    template_of,
    template_pid,
    templates,
    zygote_pid,
)

from knserve.knative.supervisor.templates import Held, to_drop


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
