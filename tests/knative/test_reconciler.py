"""The reconciler base (knative/apiserver/reconciler.py): what a reconcile cannot handle goes onto the object
as Ready=False, InternalError, is logged once, and is retried with a work queue's back-off."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest
from plane_fixtures import echo_service

from knserve.knative.apiserver.kinds import by_name
from knserve.knative.apiserver.reconciler import WorkQueue, mark_failed, retry_delay
from knserve.knative.apiserver.store import Store

SERVICES = by_name("services")
KEY = ("default", "echo")


def test_retry_delay_doubles_from_5_ms_to_1000_s_as_client_gos_rate_limiter() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 4)] == [0.005, 0.01, 0.02, 0.04]
    assert retry_delay(18) == 655.36
    assert retry_delay(19) == retry_delay(10_000) == 1000.0


def test_mark_failed_writes_ready_false_keeping_the_other_conditions() -> None:
    store = Store()
    svc = store.create(SERVICES, echo_service())
    before = {
        "observedGeneration": 0,
        "conditions": [
            {"type": "Ready", "status": "Unknown", "lastTransitionTime": "t0"},
            {"type": "RoutesReady", "status": "True", "lastTransitionTime": "t0"},
        ],
    }
    store.write_status(SERVICES, svc, before)
    mark_failed(store, SERVICES, *KEY, "cannot read x")
    status = store.get(SERVICES, *KEY)["status"]
    ready, routes = status["conditions"]
    assert (ready["type"], ready["status"], ready["reason"], ready["message"]) == (
        "Ready",
        "False",
        "InternalError",
        "cannot read x",
    )
    assert routes == {"type": "RoutesReady", "status": "True", "lastTransitionTime": "t0"}
    assert status["observedGeneration"] == 1  # processed, though it failed
    mark_failed(store, SERVICES, "default", "gone", "whatever")  # deleted meanwhile: nothing to do
    store.close()


async def test_a_failing_reconcile_goes_onto_the_object_is_logged_once_and_retried_with_back_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = Store()
    store.create(SERVICES, echo_service())
    loop = asyncio.get_running_loop()
    attempts: list[float] = []
    succeeded = asyncio.Event()

    async def reconcile(key: tuple[str, str]) -> None:
        attempts.append(loop.time())
        if len(attempts) <= 3:
            raise ValueError('autoscaling.knative.dev/window "5s" is below 6s')
        succeeded.set()

    queue: WorkQueue[tuple[str, str]] = WorkQueue(base_delay=0.05)
    caplog.set_level(logging.DEBUG, "knserve.knative.apiserver.reconciler")
    task = asyncio.create_task(
        queue.run(
            reconcile, "service", lambda key, message: mark_failed(store, SERVICES, *key, message)
        )
    )
    try:
        queue.mark(KEY)
        await asyncio.wait_for(succeeded.wait(), 10)
    finally:
        task.cancel()
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    # each retry waits at least its back-off: 50 ms, doubling (the loop's timers never fire early)
    assert all(g >= d - 1e-3 for g, d in zip(gaps, (0.05, 0.1, 0.2), strict=True)), gaps
    ready = store.get(SERVICES, *KEY)["status"]["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "InternalError")
    assert ready["message"] == 'autoscaling.knative.dev/window "5s" is below 6s'
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None  # the traceback once
    assert sum("failed again" in r.getMessage() for r in caplog.records) == 2
    store.close()


async def test_a_conflict_is_read_again_at_once_and_is_no_failure() -> None:
    from knserve.knative.apiserver.errors import Conflict

    store = Store()
    store.create(SERVICES, echo_service())
    calls: list[str] = []
    done = asyncio.Event()

    async def reconcile(key: tuple[str, str]) -> None:
        calls.append("call")
        if len(calls) == 1:
            raise Conflict("the object has been modified")
        done.set()

    queue: WorkQueue[tuple[str, str]] = WorkQueue(base_delay=60.0)  # a back-off would time out
    task = asyncio.create_task(
        queue.run(reconcile, "service", lambda *_: pytest.fail("not a failure"))
    )
    try:
        queue.mark(KEY)
        await asyncio.wait_for(done.wait(), 5)
    finally:
        task.cancel()
    assert "status" not in store.get(SERVICES, *KEY)
    store.close()
