"""Where synchronous predicts run: the pure policy, and a slow model that must not stall others."""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from knserve.runtime.metrics import Metrics
from knserve.runtime.model import Model
from knserve.runtime.offload import (
    AlwaysInline,
    AlwaysThread,
    CallClock,
    OffloadPolicy,
    call_cost,
)
from knserve.runtime.repository import ServedModel
from knserve.runtime.settings import RuntimeSettings


def test_a_fast_model_moves_inline_after_the_probe_calls() -> None:
    policy = OffloadPolicy(threshold=0.001, probe_calls=3)
    for _ in range(2):
        policy.record(0.0001)
        assert not policy.inline
    policy.record(0.0001)
    assert policy.inline


def test_one_slow_call_moves_an_inline_model_off_the_loop() -> None:
    policy = OffloadPolicy(threshold=0.001, probe_calls=1)
    policy.record(0.0001)
    assert policy.inline
    policy.record(0.005)
    assert not policy.inline


def test_a_slow_model_never_runs_inline_and_a_model_that_speeds_up_does() -> None:
    policy = OffloadPolicy(threshold=0.001, probe_calls=3, alpha=0.5)
    for _ in range(20):
        policy.record(0.01)
        assert not policy.inline
    calls = 0
    while not policy.inline:
        policy.record(0.00001)
        calls += 1
        assert calls < 20
    assert policy.average is not None and policy.average < 0.001 / 2


def test_borderline_average_does_not_flap() -> None:
    # an average between threshold/2 and 3/4 of it keeps whichever mode the model is in
    policy = OffloadPolicy(threshold=0.001, probe_calls=1, alpha=1.0)
    policy.record(0.0001)
    assert policy.inline
    policy.record(0.0006)
    assert policy.inline
    policy.record(0.0008)
    assert not policy.inline
    policy.record(0.0006)
    assert not policy.inline
    policy.record(0.0004)
    assert policy.inline


def pool_calls_until_inline(policy: OffloadPolicy) -> int:
    calls = 0
    while not policy.inline:
        policy.record(0.00001)  # on the pool a waiting model's CPU time is tiny
        calls += 1
        assert calls < 10_000
    return calls


def test_a_model_that_waits_inline_is_tried_inline_ever_more_rarely() -> None:
    policy = OffloadPolicy(threshold=0.001, probe_calls=3, alpha=1.0)
    assert pool_calls_until_inline(policy) == 3
    stalls = []
    for _ in range(4):
        policy.record(0.005, waited=True)  # e.g. a predict that calls another service
        assert not policy.inline
        stalls.append(pool_calls_until_inline(policy))
    assert stalls == [6, 12, 24, 48]


def test_a_rare_wait_does_not_keep_a_model_off_the_loop() -> None:
    policy = OffloadPolicy(threshold=0.001, probe_calls=3, alpha=1.0)
    pool_calls_until_inline(policy)
    policy.record(0.005, waited=True)
    assert pool_calls_until_inline(policy) == 6
    for _ in range(3):
        for _ in range(100):  # a long run inline, then one wait (another thread held the GIL)
            policy.record(0.0001)
        policy.record(0.005, waited=True)
        assert pool_calls_until_inline(policy) == 3


def test_a_slow_call_on_the_cpu_is_retried_after_the_probe_calls() -> None:
    policy = OffloadPolicy(threshold=0.001, probe_calls=3, alpha=1.0)
    pool_calls_until_inline(policy)
    for _ in range(3):
        policy.record(0.005)  # a garbage collection inside predict: the CPU, not a wait
        assert not policy.inline
        assert pool_calls_until_inline(policy) == 3


def test_a_call_is_charged_its_cpu_time_unless_it_waited_inline() -> None:
    # preempted inline (no voluntary switch): the busy machine's share is not the model's
    assert call_cost(wall=0.004, cpu=0.0002, switches=0, alone=True) == (0.0002, False)
    # gave up the CPU inline: it held the loop for the whole wait
    assert call_cost(wall=0.004, cpu=0.0002, switches=2, alone=True) == (0.004, True)
    # on the pool (or beside calls on it) a switch may be a wait for the GIL: the CPU time decides
    assert call_cost(wall=0.004, cpu=0.0002, switches=2, alone=False) == (0.0002, False)


linux_only = pytest.mark.skipif(
    not hasattr(resource, "RUSAGE_THREAD"), reason="per-thread usage is Linux's"
)


@linux_only
def test_the_clock_charges_a_sleep_its_wall_time() -> None:
    clock = CallClock()
    time.sleep(0.02)
    seconds, waited = clock.cost(alone=True)
    assert waited and seconds >= 0.02


@linux_only
def test_the_clock_charges_a_preempted_call_its_cpu_time() -> None:
    # This thread and a spinning process share one CPU, as on a busy machine: the call's wall
    # time is about twice its CPU time, and preemption is no wait, so the CPU time is charged.
    cpu = min(os.sched_getaffinity(0))
    spinner = subprocess.Popen(
        [sys.executable, "-c", SPIN, str(cpu)], stdout=subprocess.PIPE, text=True
    )
    mask = os.sched_getaffinity(0)
    try:
        assert spinner.stdout is not None and spinner.stdout.readline() == "spinning\n"
        os.sched_setaffinity(0, {cpu})  # this thread only
        clock = CallClock()
        start, wall_start = time.thread_time(), time.perf_counter()
        while time.thread_time() - start < 0.1:
            pass
        seconds, waited = clock.cost(alone=True)
        wall = time.perf_counter() - wall_start
    finally:
        os.sched_setaffinity(0, mask)
        spinner.kill()
        spinner.wait()
    assert wall > 1.3 * seconds, f"the CPU was not shared: {wall=} {seconds=}"
    assert not waited and 0.1 <= seconds < 0.12


SPIN = """
import os, sys
os.sched_setaffinity(0, {int(sys.argv[1])})
print("spinning", flush=True)
while True:
    pass
"""


class Recorder(Model):
    """Notes the thread of each predict; sleeps `pause` seconds in it (a call to a service)."""

    def __init__(self, pause: float) -> None:
        super().__init__("recorder")
        self.pause = pause
        self.threads: list[int] = []

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        self.threads.append(threading.get_ident())
        if self.pause:
            time.sleep(self.pause)
        return payload


# 20 calls: three probes on the pool then inline; a waiting model is moved off by its first
# inline call and tried again after six more on the pool (calls 4 and 11 inline)
@pytest.mark.parametrize(("pause", "inline_calls"), [(0.0, 17), (0.005, 2)])
async def test_a_fast_model_runs_inline_and_a_waiting_one_stalls_the_loop_rarely(
    pause: float, inline_calls: int
) -> None:
    model = Recorder(pause)
    served = ServedModel(model, RuntimeSettings(), Metrics().model("recorder"))
    try:
        for _ in range(20):
            await served.predict({"instances": [1]}, None)
    finally:
        await served.close()
    loop_thread = threading.get_ident()
    assert sum(t == loop_thread for t in model.threads) == inline_calls
    assert model.threads[:3] == [t for t in model.threads[:3] if t != loop_thread]


class Held(Model):
    """Holds a call until released, or pauses in it (a wait of its own): the payload says."""

    def __init__(self) -> None:
        super().__init__("held")
        self.release = threading.Event()

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        if payload.get("hold"):
            self.release.wait(30)
        time.sleep(payload.get("pause", 0))
        return payload


async def test_a_wait_beside_calls_still_on_the_pool_is_not_held_against_the_model() -> None:
    # Inline calls made while calls started earlier still run on the pool may wait for the GIL
    # those hold: such a wait is charged as CPU time, so the model stays inline.
    model = Held()
    served = ServedModel(model, RuntimeSettings(), Metrics().model("held"))
    try:
        held = asyncio.create_task(served.predict({"hold": True}, None))
        await asyncio.gather(*(served.predict({}, None) for _ in range(3)))
        assert served.policy.inline and not held.done()
        await served.predict({"pause": 0.005}, None)
        assert served.policy.inline
        model.release.set()
        await held
        await served.predict({"pause": 0.005}, None)  # alone now: its own wait
        assert not served.policy.inline
    finally:
        model.release.set()
        await served.close()


def test_fixed_policies_and_invalid_settings() -> None:
    thread, inline = AlwaysThread(), AlwaysInline()
    for _ in range(10):
        thread.record(0.0)
        inline.record(1.0)
    assert not thread.inline and inline.inline
    with pytest.raises(ValueError, match="threshold is 0"):
        OffloadPolicy(threshold=0)
    with pytest.raises(ValueError, match="alpha is 2"):
        OffloadPolicy(alpha=2)


SLOW = """
import os, time, uuid
from pathlib import Path
from knserve.runtime import Model

MARKS = Path(os.environ["SLOW_MARKS"])

class Slow(Model):
    def predict(self, payload, headers=None):
        (MARKS / uuid.uuid4().hex).touch()  # this call has started and now holds its thread
        deadline = time.monotonic() + 30
        while not (MARKS.parent / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return {"predictions": [1]}
"""

FAST = """
from knserve.runtime import Model

class Fast(Model):
    def predict(self, payload, headers=None):
        return {"predictions": payload["instances"]}
"""


@pytest.mark.slow
async def test_a_slow_sync_predict_does_not_stall_probes_or_other_models(
    tmp_path: Path, spawn, port: int
) -> None:  # type: ignore[no-untyped-def]
    models, marks = tmp_path / "models", tmp_path / "marks"
    marks.mkdir()
    for name, source in (("slow", SLOW), ("fast", FAST)):
        (models / name).mkdir(parents=True)
        (models / name / "model.py").write_text(source)
    proc = spawn(
        [
            sys.executable,
            "-m",
            "knserve.runtime",
            "--model-repository",
            str(models),
            "--http-port",
            str(port),
        ],
        env={"SLOW_MARKS": str(marks)},
    )
    base = f"http://127.0.0.1:{port}"
    proc.wait_http(f"{base}/v2/health/ready")
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        slow = [
            asyncio.create_task(client.post("/v1/models/slow:predict", json={"instances": [1]}))
            for _ in range(3)
        ]
        try:
            # The three slow calls hold their threads until the test releases them, so whatever
            # answers meanwhile was not stuck behind them: no clock in the assertion.
            async with asyncio.timeout(20):  # a model stuck on the loop starts one call only
                while len(list(marks.iterdir())) < 3:
                    await asyncio.sleep(0.01)  # another process's files: polling is the only signal
            live = await client.get("/v2/health/live")
            fast = await client.post("/v1/models/fast:predict", json={"instances": [7]})
            assert live.status_code == 200 and fast.json() == {"predictions": [7]}
            assert not any(task.done() for task in slow), "a slow call ended before its release"
        finally:
            (tmp_path / "release").touch()
        assert all(r.status_code == 200 for r in await asyncio.gather(*slow))
