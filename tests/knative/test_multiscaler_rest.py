"""A revision at rest at zero costs the multiscaler nothing per tick (a plane holding many idle
revisions stays idle), and the activator's request wakes it as before. Real supervisor, gateway
and replica process; the multiscaler's own loop."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

from knserve.knative.activator.gateway import Gateway, SupervisorEndpoints
from knserve.knative.autoscaler.kpa import AutoscalerConfig
from knserve.knative.autoscaler.multiscaler import Multiscaler
from knserve.knative.supervisor.launcher import Launcher
from knserve.knative.supervisor.replicas import RevisionProcessSpec, Supervisor

NS, REV = "default", "rest-00001"


async def until(condition: Callable[[], bool], limit: float = 60) -> None:
    async with asyncio.timeout(limit):
        while not condition():
            await asyncio.sleep(0.02)  # the multiscaler's loop has no event to await


async def test_a_revision_at_rest_at_zero_is_left_out_of_ticks_until_a_request_wakes_it(
    tmp_path: Path,
) -> None:
    supervisor = Supervisor(tmp_path / "logs", launcher=Launcher(tmp_path / "run", False))
    gateway = Gateway(SupervisorEndpoints(supervisor))
    config = AutoscalerConfig(allow_zero_initial_scale=True, tick_interval=1.0)
    scaler = Multiscaler(supervisor, gateway, config)
    command = [sys.executable, "-m", "http.server", "$(PORT)", "--bind", "127.0.0.1"]
    spec = RevisionProcessSpec(
        NS,
        "rest",
        "rest",
        REV,
        {"image": "python", "command": command},
        annotations={"autoscaling.knative.dev/initial-scale": "0"},
    )
    await scaler.track(spec)
    loop = asyncio.create_task(scaler.run())
    try:
        assert scaler.at_rest(NS, REV)
        rested = scaler.decision(NS, REV)
        assert rested is not None and (rested.desired_pods, rested.active) == (0, "False")
        ticks = scaler.ticks
        await until(lambda: scaler.ticks >= ticks + 2)
        # the ticks went by without deciding for it again: the decision is the same object
        assert scaler.decision(NS, REV) is rested and scaler.at_rest(NS, REV)
        scaler.on_demand(NS, REV)  # the activator holds a request for it
        assert not scaler.at_rest(NS, REV)
        await until(lambda: supervisor.status(NS, REV).ready == 1)
        woken = scaler.decision(NS, REV)
        assert woken is not None and woken.desired_pods == 1
        ticks = scaler.ticks
        await until(lambda: scaler.ticks >= ticks + 1)
        assert not scaler.at_rest(NS, REV)  # a running revision is ticked
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        await scaler.close()
        await supervisor.close()
