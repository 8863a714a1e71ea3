"""The multiscaler: one KPA decider per revision, fed by the gateway, acting through the supervisor.

Knative splits this across the activator, queue-proxy, the autoscaler's metric collector and the
KPA reconciler; on one machine it is one loop. Every second it samples each tracked revision's
traffic from the gateway (average concurrency over that second, from the gateway's
concurrency integral, or requests per second), and every `tick_interval` it asks the revision's
`Autoscaler` for a replica count and tells the supervisor. The gateway holds requests for a
revision with no ready replica (the activator's job) and calls `on_demand`, which scales a
revision at zero up at once instead of waiting for the next tick. When a revision's ready replicas
change between ticks (the supervisor says so), its PodAutoscaler status — Active and whether
initial-scale was reached — is brought up to date at once, as the KPA reconciles on every
endpoints change, so a Revision becomes Ready when its pods do, not at the next tick.

A revision of Knative's HPA class (`autoscaling.knative.dev/class: hpa.autoscaling.knative.dev`)
gets an `HPAScaler` instead of the KPA: every second its replicas' CPU and memory are read from
/proc (`ResourceSampler`, the metrics-server's part), and every tick Kubernetes' HPA algorithm
decides on them; it never scales to zero. Every tracked revision's CPU and memory are sampled, so
`/metrics` shows them for either class.

Decisions are kept for status and `/metrics`: desired replicas, panic, the observed stable and
panic values, excess burst capacity, whether the activator is in the path, Active and
initialization; `ticks` counts decision rounds, so a test can wait for the autoscaler to have
looked again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from knserve.knative.activator.port import TrafficStats
from knserve.knative.autoscaler.hpa_scaler import HPAScaler
from knserve.knative.autoscaler.hpa_spec import hpa_spec, is_hpa_class
from knserve.knative.autoscaler.kpa import Autoscaler, AutoscalerConfig, ScaleDecision
from knserve.knative.autoscaler.resource_usage import ResourceSampler, requests
from knserve.knative.supervisor.replicas import RevisionProcessSpec, Supervisor

log = logging.getLogger(__name__)

SAMPLE_INTERVAL = 1.0  # the KPA's metric windows are bucketed per second


@dataclass(frozen=True)
class ResourceUsage:
    """A revision's replicas' CPU (millicores, summed) and memory (RSS bytes, summed) now."""

    cpu: float = 0.0
    memory: float = 0.0


@dataclass
class _Tracked:
    spec: RevisionProcessSpec
    autoscaler: Autoscaler | HPAScaler
    decision: ScaleDecision | None = None
    last_total: int = 0
    last_integral: float = 0.0
    last_sample: float = 0.0
    sampler: ResourceSampler = field(default_factory=ResourceSampler)
    usage: ResourceUsage = field(default_factory=ResourceUsage)
    dormant: bool = False  # at rest at zero: left out of samples and ticks until woken


class Multiscaler:
    """Scales tracked revisions (see the module docstring)."""

    def __init__(
        self,
        supervisor: Supervisor,
        gateway: TrafficStats,
        config: AutoscalerConfig,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.supervisor = supervisor
        self.gateway = gateway
        self.config = config
        self.clock = clock
        self._tracked: dict[tuple[str, str], _Tracked] = {}
        self._subscribers: list[Callable[[str, str], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.ticks = 0  # decision rounds run by `run`
        supervisor.subscribe(self._replicas_changed)

    def subscribe(self, callback: Callable[[str, str], None]) -> None:
        """`callback(namespace, revision)` whenever a revision's desired count, panic mode, Active
        condition or initialization changes."""
        self._subscribers.append(callback)

    # ---- what to scale (called by the controller) --------------------------------------------

    async def track(self, spec: RevisionProcessSpec) -> None:
        """Scale `spec`'s revision from now on; the first call starts it at its initial scale."""
        key = (spec.namespace, spec.revision)
        tracked = self._tracked.get(key)
        if tracked is not None:
            tracked.spec = spec
            self._wake(tracked)
            return
        config = AutoscalerConfig.from_annotations(
            spec.annotations, self.config, spec.container_concurrency
        )
        requests(spec.container)  # a bad resources quantity fails here, on the Service's status
        scaler: Autoscaler | HPAScaler
        if is_hpa_class(spec.annotations, self.config):
            hpa = hpa_spec(spec.annotations, self.config)
            scaler = HPAScaler(hpa, self.clock, config.initial_scale)
        else:
            scaler = Autoscaler(config, self.clock)
        stats = self.gateway.stats(spec.namespace, spec.revision)
        tracked = _Tracked(
            spec,
            scaler,
            last_total=stats.requests_total,
            last_integral=stats.concurrency_seconds,
            last_sample=self.clock(),
        )
        self._tracked[key] = tracked
        await self._apply(tracked, self._decide(tracked))

    async def untrack(self, namespace: str, revision: str) -> None:
        """Stop scaling the revision (it gets no traffic) and stop its replicas."""
        tracked = self._tracked.pop((namespace, revision), None)
        if tracked is not None:
            await self.supervisor.ensure(tracked.spec, 0)

    def forget(self, namespace: str, revision: str) -> None:
        """Stop scaling a deleted revision at once (its replicas are the caller's to remove): no
        tick or held request may start it again."""
        self._tracked.pop((namespace, revision), None)

    def decision(self, namespace: str, revision: str) -> ScaleDecision | None:
        tracked = self._tracked.get((namespace, revision))
        return tracked.decision if tracked else None

    def usage(self, namespace: str, revision: str) -> ResourceUsage:
        """The revision's CPU and memory at the last sample (zero when not tracked)."""
        tracked = self._tracked.get((namespace, revision))
        return tracked.usage if tracked else ResourceUsage()

    def at_rest(self, namespace: str, revision: str) -> bool:
        """Whether the revision rests at zero: no sample or tick runs for it until it is woken."""
        tracked = self._tracked.get((namespace, revision))
        return tracked is not None and tracked.dormant

    def hpa(self, namespace: str, revision: str) -> HPAScaler | None:
        """The revision's HPA, when it is of the HPA class."""
        tracked = self._tracked.get((namespace, revision))
        scaler = tracked.autoscaler if tracked else None
        return scaler if isinstance(scaler, HPAScaler) else None

    def decisions(self) -> dict[tuple[str, str], ScaleDecision]:
        return {k: t.decision for k, t in self._tracked.items() if t.decision is not None}

    # ---- the activator's call ----------------------------------------------------------------

    def on_demand(self, namespace: str, revision: str) -> None:
        """A request waits for a revision with no ready replica: scale it up now if it is at zero."""
        tracked = self._tracked.get((namespace, revision))
        if tracked is None or isinstance(tracked.autoscaler, HPAScaler):
            return  # an HPA never scales to zero: its replicas are starting already
        self._wake(tracked)
        if self.supervisor.status(namespace, revision).desired > 0:
            return  # already starting: the held request goes to the first ready replica
        stats = self.gateway.stats(namespace, revision)
        tracked.autoscaler.record(max(1.0, float(stats.in_flight)))
        task = asyncio.get_running_loop().create_task(self._apply(tracked, self._decide(tracked)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Sample every second, decide every tick, until cancelled."""
        next_tick = self.clock() + self.config.tick_interval
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL)  # a periodic loop: the interval is the event
            for tracked in [t for t in self._tracked.values() if not t.dormant]:
                try:
                    self._sample(tracked)
                except Exception:  # one revision's bad sample must not stop the others' scaling
                    log.exception(
                        "sampling %s/%s failed", tracked.spec.namespace, tracked.spec.revision
                    )
            if self.clock() >= next_tick:
                next_tick += self.config.tick_interval
                self.ticks += 1
                for tracked in [t for t in self._tracked.values() if not t.dormant]:
                    try:
                        await self._apply(tracked, self._decide(tracked))
                    except Exception:
                        log.exception(
                            "scaling %s/%s failed", tracked.spec.namespace, tracked.spec.revision
                        )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _sample(self, tracked: _Tracked) -> None:
        spec = tracked.spec
        stats = self.gateway.stats(spec.namespace, spec.revision)
        now = self.clock()
        replicas = self.supervisor.replica_states(spec.namespace, spec.revision)
        pods = tracked.sampler.sample(replicas, spec.container, now)
        tracked.usage = ResourceUsage(
            sum(p.usage or 0.0 for p in pods["cpu"]), sum(p.usage or 0.0 for p in pods["memory"])
        )
        if isinstance(tracked.autoscaler, HPAScaler):
            tracked.autoscaler.pods = pods[tracked.autoscaler.resource]
            return
        elapsed = max(now - tracked.last_sample, 1e-6)
        if tracked.autoscaler.config.metric == "rps":
            value = (stats.requests_total - tracked.last_total) / elapsed
        else:
            # the average concurrency over the second, not an instant reading that misses bursts
            value = max(0.0, stats.concurrency_seconds - tracked.last_integral) / elapsed
        tracked.last_total, tracked.last_integral, tracked.last_sample = (
            stats.requests_total,
            stats.concurrency_seconds,
            now,
        )
        tracked.autoscaler.record(value, now)

    def _replicas_changed(self, namespace: str, revision: str) -> None:
        tracked = self._tracked.get((namespace, revision))
        if tracked is None or tracked.decision is None:
            return
        self._wake(tracked)
        ready = self.supervisor.status(namespace, revision).ready
        self._record(tracked, tracked.autoscaler.observe(ready))

    def _decide(self, tracked: _Tracked) -> ScaleDecision:
        spec = tracked.spec
        ready = self.supervisor.status(spec.namespace, spec.revision).ready
        return tracked.autoscaler.scale(ready)

    async def _apply(self, tracked: _Tracked, decision: ScaleDecision) -> None:
        spec = tracked.spec
        if self._tracked.get((spec.namespace, spec.revision)) is not tracked:
            return  # untracked meanwhile
        previous = tracked.decision
        if previous is None or decision.desired_pods != previous.desired_pods:
            log.info(
                "revision %s/%s: %d replicas (%s)",
                spec.namespace,
                spec.revision,
                decision.desired_pods,
                decision.reason,
            )
        self._record(tracked, decision)
        await self.supervisor.ensure(spec, decision.desired_pods)
        tracked.dormant = self._at_rest(tracked, decision)

    def _at_rest(self, tracked: _Tracked, decision: ScaleDecision) -> bool:
        """Scaled to zero, inactive, nothing running or in flight, empty windows: every tick would
        decide the same until a request (`on_demand`), a new spec or a replica changes it, so
        none is run (a plane holding many idle revisions costs nothing per tick for them)."""
        spec = tracked.spec
        if (
            isinstance(tracked.autoscaler, HPAScaler)
            or decision.desired_pods
            or decision.active != "False"
        ):
            return False
        if decision.stable_value or decision.panic_value:
            return False
        status = self.supervisor.status(spec.namespace, spec.revision)
        stats = self.gateway.stats(spec.namespace, spec.revision)
        return not (status.desired or status.ready or stats.in_flight)

    def _wake(self, tracked: _Tracked) -> None:
        """A dormant revision is sampled and decided again; its next sample covers from now."""
        if tracked.dormant:
            tracked.dormant = False
            stats = self.gateway.stats(tracked.spec.namespace, tracked.spec.revision)
            tracked.last_total, tracked.last_integral, tracked.last_sample = (
                stats.requests_total,
                stats.concurrency_seconds,
                self.clock(),
            )

    def _record(self, tracked: _Tracked, decision: ScaleDecision) -> None:
        """Keep the decision; tell subscribers if what the Revision's status shows changed."""
        previous, tracked.decision = tracked.decision, decision
        if previous is None or _shown(previous) != _shown(decision):
            for callback in list(self._subscribers):
                callback(tracked.spec.namespace, tracked.spec.revision)


def _shown(decision: ScaleDecision) -> tuple[Any, ...]:
    """What of a decision the Revision's status shows."""
    return (
        decision.desired_pods,
        decision.in_panic,
        decision.active,
        decision.active_reason,
        decision.initialized,
    )
