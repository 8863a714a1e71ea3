"""The supervisor probes ready replicas as the kubelet does and replaces one whose readiness (or
liveness) probe keeps failing: real processes (tests/support/flaky_server.py) on loopback."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from knserve.knative.supervisor.probes import Probe
from knserve.knative.supervisor.replicas import ReplicaStatus, RevisionProcessSpec, Supervisor

FLAKY = str(Path(__file__).parents[1] / "support" / "flaky_server.py")


def spec(state: Path, **probes: Any) -> RevisionProcessSpec:
    container = {
        "image": "python",
        "command": [sys.executable, FLAKY],
        "args": ["$(PORT)", str(state)],
        **probes,
    }
    return RevisionProcessSpec("default", "flaky", "flaky", "flaky-00001", container)


def test_probe_settings_have_kubernetes_defaults() -> None:
    assert Probe.of({}, "readiness") == Probe("readiness", None, 10.0, 1.0, 3)
    assert Probe.of({}, "liveness") is None
    probe = Probe.of(
        {"livenessProbe": {"httpGet": {"port": 8080}, "periodSeconds": 2, "failureThreshold": 5}},
        "liveness",
    )
    assert probe == Probe("liveness", "/", 2.0, 1.0, 5)
    assert probe.failure() == (
        "liveness probe failed 5 times in a row (failureThreshold 5, periodSeconds 2) after the "
        "replica was ready; it was replaced"
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["readiness", "liveness"])
async def test_a_replica_failing_its_probe_after_it_was_ready_is_replaced(
    tmp_path: Path, kind: str
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    probe = {"httpGet": {"path": "/healthz"}, "periodSeconds": 1, "failureThreshold": 2}
    supervisor = Supervisor(tmp_path / "logs", grace_seconds=2.0)
    seen: list[ReplicaStatus] = []
    changed = asyncio.Event()

    def notified(namespace: str, revision: str) -> None:
        seen.append(supervisor.status(namespace, revision))
        changed.set()

    async def until(predicate: Any, timeout: float) -> ReplicaStatus:
        async with asyncio.timeout(timeout):
            while not predicate(status := supervisor.status("default", "flaky-00001")):
                changed.clear()
                await changed.wait()
        return status

    supervisor.subscribe(notified)
    try:
        await supervisor.ensure(spec(state, **{f"{kind}Probe": probe}), 1)
        first = await until(lambda s: s.ready == 1, 30)
        (pid,) = supervisor.pids("default", "flaky-00001")
        await asyncio.sleep(1.5)  # a few probes pass: a healthy replica stays
        assert supervisor.status("default", "flaky-00001").endpoints == first.endpoints
        (state / f"sick-{pid}").touch()
        sick_at = time.monotonic()
        await until(lambda s: s.ready == 0, 10)
        left = time.monotonic() - sick_at
        assert 0.9 <= left < 5.0, left  # two failures, one period apart
        replaced = await until(lambda s: s.ready == 1, 30)
        assert replaced.endpoints != first.endpoints
        assert supervisor.pids("default", "flaky-00001") != [pid]
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        reasons = [s.failure for s in seen if s.failure]
        assert any(
            r.startswith(
                f"{kind} probe failed 2 times in a row (failureThreshold 2, periodSeconds 1)"
            )
            for r in reasons
        ), reasons
    finally:
        await supervisor.close()
