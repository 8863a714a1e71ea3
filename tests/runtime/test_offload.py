"""Where synchronous predicts run: the pure policy, and a slow model that must not stall others."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

from knserve.runtime.offload import AlwaysInline, AlwaysThread, OffloadPolicy


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
    assert policy.average is not None and policy.average < 0.001 / 4


def test_borderline_average_does_not_flap() -> None:
    # an average between threshold/4 and threshold/2 keeps whichever mode the model is in
    policy = OffloadPolicy(threshold=0.001, probe_calls=1, alpha=1.0)
    policy.record(0.0001)
    assert policy.inline
    policy.record(0.0004)
    assert policy.inline
    policy.record(0.0006)
    assert not policy.inline
    policy.record(0.0004)
    assert not policy.inline


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
