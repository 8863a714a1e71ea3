"""The conditions Knative writes on Revisions and Routes (knative/serving/status.py), and a crashed
replica's termination message as the kubelet takes it from its log (knative/supervisor/replicas.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from knserve.knative.serving.status import (
    ContainerFailure,
    TrafficError,
    first_traffic_error,
    living_ready,
    missing_revision,
    revision_conditions,
    route_conditions,
    unready_configuration,
    unready_revision,
)
from knserve.knative.supervisor.replicas import termination


def shown(conditions: list[dict[str, Any]]) -> dict[str, tuple[str, str | None, str | None]]:
    return {c["type"]: (c["status"], c.get("reason"), c.get("message")) for c in conditions}


def test_living_ready_false_wins_over_unknown_and_carries_its_reason() -> None:
    unknown = {"type": "A", "status": "Unknown", "reason": "Deploying"}
    false = {"type": "B", "status": "False", "reason": "RevisionMissing", "message": "gone"}
    true = {"type": "C", "status": "True"}
    ready = living_ready([unknown, false, true], None)
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "RevisionMissing",
        "gone",
    )
    assert (
        living_ready([true, unknown], None)["status"],
        living_ready([true], None)["status"],
    ) == ("Unknown", "True")


def test_a_revision_scaled_to_zero_or_unrouted_stays_ready_and_inactive() -> None:
    conditions = revision_conditions(
        None, initialized=True, failure=None, active="False", active_reason="NoTraffic"
    )
    assert shown(conditions) == {
        "Ready": ("True", None, None),
        "ContainerHealthy": ("True", None, None),
        "ResourcesAvailable": ("True", None, None),
        "Active": ("False", "NoTraffic", "The target is not receiving traffic."),
    }
    assert conditions[0]["type"] == "Ready"  # first, where readers look for it


def test_a_revision_is_not_ready_before_its_initial_scale_is_reached() -> None:
    assert shown(
        revision_conditions(
            None, initialized=False, failure=None, active="Unknown", active_reason="Queued"
        )
    ) == {
        "Ready": ("Unknown", "Deploying", None),
        "ContainerHealthy": ("Unknown", "Deploying", None),
        "ResourcesAvailable": ("Unknown", "Deploying", None),
        "Active": (
            "Unknown",
            "Queued",
            "Requests to the target are being buffered as resources are provisioned.",
        ),
    }


@pytest.mark.parametrize(
    ("failure", "reason", "message"),
    [
        (
            ContainerFailure("cannot load model.joblib", 1),
            "ExitCode1",
            "Container failed with: cannot load model.joblib",
        ),
        (
            ContainerFailure("", 0),
            "ExitCode0",
            "Container failed with: container exited with no error",
        ),
        (ContainerFailure("Killed", 137), "ExitCode137", "Container failed with: Killed"),
        (
            ContainerFailure("cannot start 'x': No such file"),
            "ContainerFailed",
            "cannot start 'x': No such file",
        ),
    ],
)
def test_a_crashing_container_fails_the_revision_in_knatives_words(
    failure: ContainerFailure, reason: str, message: str
) -> None:
    conditions = shown(
        revision_conditions(None, initialized=True, failure=failure, active="Unknown")
    )
    assert conditions["ContainerHealthy"] == conditions["Ready"] == ("False", reason, message)


def test_an_activation_that_timed_out_never_reached_its_initial_scale() -> None:
    conditions = shown(
        revision_conditions(
            None, initialized=False, failure=None, active="False", active_reason="TimedOut"
        )
    )
    assert (
        conditions["ResourcesAvailable"]
        == conditions["Ready"]
        == (
            "False",
            "ProgressDeadlineExceeded",
            "Initial scale was never achieved",
        )
    )
    assert conditions["Active"] == ("False", "TimedOut", "The target could not be activated.")


def test_conditions_keep_their_transition_time_while_their_status_holds() -> None:
    first = revision_conditions(None, initialized=True, failure=None, active="True")
    for c in first:
        c["lastTransitionTime"] = "2026-01-01T00:00:00Z"
    again = revision_conditions(
        first, initialized=True, failure=None, active="False", active_reason="NoTraffic"
    )
    times = {c["type"]: c["lastTransitionTime"] for c in again}
    assert times["Ready"] == "2026-01-01T00:00:00Z"
    assert times["Active"] != "2026-01-01T00:00:00Z"


def test_route_traffic_errors_in_knatives_words_the_first_failure_first() -> None:
    assert missing_revision("echo-v2") == TrafficError(
        "False", "RevisionMissing", 'Revision "echo-v2" referenced in traffic not found.'
    )
    errors = [
        unready_revision("echo-00002", failed=False),
        unready_configuration("echo", failed=False),
        unready_revision("echo-00003", failed=True),
    ]
    assert [e.message for e in errors] == [
        'Revision "echo-00002" is not yet ready.',
        'Configuration "echo" is waiting for a Revision to become ready.',
        'Revision "echo-00003" failed to become ready.',
    ]
    assert first_traffic_error(errors) is errors[2]
    assert first_traffic_error(errors[:2]) is errors[0]
    assert (
        unready_configuration("echo", failed=True).message
        == 'Configuration "echo" does not have any ready Revision.'
    )
    assert first_traffic_error([]) is None


def test_route_conditions() -> None:
    ok = shown(route_conditions(None, None))
    assert ok == {
        "Ready": ("True", None, None),
        "AllTrafficAssigned": ("True", None, None),
        "IngressReady": ("True", None, None),
        "CertificateProvisioned": ("True", "TLSNotEnabled", "external-domain-tls is not enabled"),
    }
    missing = route_conditions(route_conditions(None, None), missing_revision("echo-v2"))
    assert (
        shown(missing)["Ready"]
        == shown(missing)["AllTrafficAssigned"]
        == (
            "False",
            "RevisionMissing",
            'Revision "echo-v2" referenced in traffic not found.',
        )
    )
    assert shown(missing)["IngressReady"] == ("True", None, None)  # the gateway keeps what it had
    fresh = shown(route_conditions(None, unready_configuration("echo", failed=False)))
    assert fresh["IngressReady"] == (
        "Unknown",
        "IngressNotConfigured",
        "Ingress has not yet been reconciled.",
    )
    assert fresh["Ready"][0] == "Unknown"


# --- the termination message (FallbackToLogsOnError) ------------------------------------------


def test_termination_message_is_the_last_80_lines_of_the_log(tmp_path: Path) -> None:
    log = tmp_path / "replica.log"
    log.write_text("".join(f"line {i}\n" for i in range(1, 101)))
    code, message = termination(1, log)
    assert code == 1
    assert message.splitlines() == [f"line {i}" for i in range(21, 101)]


def test_termination_message_is_at_most_its_last_2048_bytes(tmp_path: Path) -> None:
    log = tmp_path / "replica.log"
    log.write_bytes(b"x" * 5000 + b"\nTraceback: the end\n")
    _, message = termination(2, log)
    assert len(message.encode()) <= 2048
    assert message.endswith("Traceback: the end")
    assert message == ("x" * 5000 + "\nTraceback: the end\n")[-2048:].rstrip()


def test_termination_of_a_signal_and_of_a_clean_exit(tmp_path: Path) -> None:
    log = tmp_path / "replica.log"
    log.write_text("bye\n")
    assert termination(-9, log) == (137, "bye")  # as the kubelet reports a SIGKILL
    assert termination(0, log) == (0, "")  # no failure, no message from the log
    assert termination(3, tmp_path / "missing.log") == (3, "")
