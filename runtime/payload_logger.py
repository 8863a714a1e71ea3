"""KServe's payload logger, in process: each request and response as a CloudEvent to a sink.

KServe runs this in an agent sidecar that blocks the request when its 100-slot channel is full
and only logs failed sends. Here logging must never slow or fail the inference it records:
`log_request`/`log_response` only put an event on a bounded queue and return at once. When the
queue is full (the sink is slow or down) the event is dropped and counted; a few worker tasks
send events in CloudEvents binary mode, one attempt each, and count what failed. Nothing is
queued without bound and nothing is retried forever.

A sink that cannot be reached (refused, reset, timed out) is backed off from: each failed attempt
costs the server's loop about half a millisecond of CPU in httpx, twice per inference, so after one
the logger drops events (counted as dropped) without trying, for 50 ms, then lets one event through
as a probe; each failed probe doubles the pause, up to 2 s, and the first answer from the sink ends
it. A sink that answers with an error status is up, and is not backed off from.

Events follow KServe's: type `org.kubeflow.serving.inference.request` or `.response`, the
inference id as `ce-id` (the same for the request and its response), the raw body as data, and
the extensions `inferenceservicename`, `namespace`, `component`, `endpoint` plus `modelname`.
Each event carries the request's trace on: as HTTP headers (`traceparent`, B3, `x-request-id`,
`knserve.runtime.propagation`) and as CloudEvents' distributed-tracing extension attributes
(`ce-traceparent`, `ce-tracestate`), so a sink or a broker behind it continues the same trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from knserve.runtime.propagation import propagation_headers

log = logging.getLogger(__name__)

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
MODES = ("all", "request", "response")
# The pause after a sink could not be reached, doubled after each failed probe up to the cap.
BACKOFF_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 2.0


@dataclass(frozen=True)
class LoggerConfig:
    """Where and what to log; `mode` is KServe's all|request|response."""

    url: str
    mode: str = "all"
    inference_service: str = ""
    namespace: str = ""
    component: str = "predictor"
    endpoint: str = ""
    source: str = "knserve.runtime"
    # 1,000 events is a few seconds of traffic at full speed: enough to ride out a slow sink,
    # small enough that a dead one costs little memory.
    queue_size: int = 1000
    workers: int = 4
    timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"logger mode is {self.mode!r}, it must be one of {', '.join(MODES)}")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"logger url {self.url!r} must be an http:// or https:// URL")
        if self.queue_size < 1 or self.workers < 1:
            raise ValueError("logger queue_size and workers must be 1 or more")


@dataclass(frozen=True)
class LoggerStats:
    """What became of the events: each one offered is, in the end, sent, failed or dropped."""

    queued: int  # put on the queue
    sent: int
    dropped: int  # never tried: the queue was full, or the sink was being backed off from
    failed: int  # tried: the sink could not be reached, or answered with an error status


@dataclass(frozen=True)
class _Event:
    ce_type: str
    ce_id: str
    model: str
    body: bytes
    content_type: str
    time: str
    trace: dict[str, str]  # the request's propagation headers


class PayloadLogger:
    """Sends request/response CloudEvents to `config.url` in the background."""

    def __init__(
        self,
        config: LoggerConfig,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._client = client
        self._own_client = client is None
        self._clock = clock
        self._queue: asyncio.Queue[_Event] = asyncio.Queue(maxsize=config.queue_size)
        self._workers: list[asyncio.Task[None]] = []
        self._queued = self._sent = self._dropped = self._failed = 0
        self._backoff = 0.0  # the current pause; 0 while the sink is reachable
        self._resume_at = 0.0  # when (on `clock`) the next probe may go
        self._probing = False  # a probe is on its way: the other events wait no more than it

    def _backing_off(self) -> bool:
        """The sink could not be reached and its pause, or the probe that ends it, is not over."""
        return self._probing or self._clock() < self._resume_at

    @property
    def stats(self) -> LoggerStats:
        return LoggerStats(self._queued, self._sent, self._dropped, self._failed)

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.config.timeout)
        for index in range(self.config.workers):
            task = asyncio.create_task(self._work(), name=f"payload-logger-{index}")
            self._workers.append(task)

    def log_request(self, inference_id: str, model: str, body: bytes, content_type: str) -> None:
        """Queue the request event (mode all or request); never blocks."""
        if self.config.mode in ("all", "request"):
            self._put(REQUEST_TYPE, inference_id, model, body, content_type)

    def log_response(self, inference_id: str, model: str, body: bytes, content_type: str) -> None:
        """Queue the response event (mode all or response); never blocks."""
        if self.config.mode in ("all", "response"):
            self._put(RESPONSE_TYPE, inference_id, model, body, content_type)

    def _put(self, ce_type: str, ce_id: str, model: str, body: bytes, content_type: str) -> None:
        if self._backoff and self._backing_off():
            self._dropped += 1  # cheaper than building and queueing an event that would be dropped
            return
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        try:
            event = _Event(ce_type, ce_id, model, body, content_type, now, propagation_headers())
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._dropped += 1
            return
        self._queued += 1

    async def _work(self) -> None:
        while True:
            event = await self._queue.get()
            probe = False
            try:
                if self._backoff:
                    if self._backing_off():
                        self._dropped += 1  # queued before the sink was found unreachable
                        continue
                    self._probing = probe = True
                reached = await self._send(event)
                if not reached:
                    self._back_off(probe)
                elif self._backoff:
                    log.info("payload logger: %s answers again; sending events", self.config.url)
                    self._backoff = 0.0
            finally:
                if probe:
                    self._probing = False
                self._queue.task_done()

    async def _send(self, event: _Event) -> bool:
        """Send one event; whether the sink was reached (an error status counts as reached)."""
        cfg = self.config
        headers = {
            "ce-specversion": "1.0",
            "ce-id": event.ce_id,
            "ce-type": event.ce_type,
            "ce-source": cfg.source,
            "ce-time": event.time,
            "ce-inferenceservicename": cfg.inference_service,
            "ce-namespace": cfg.namespace,
            "ce-component": cfg.component,
            "ce-endpoint": cfg.endpoint,
            "ce-modelname": event.model,
            "content-type": event.content_type or "application/json",
            **event.trace,
        }
        for name in ("traceparent", "tracestate"):
            if name in event.trace:
                headers[f"ce-{name}"] = event.trace[name]
        assert self._client is not None  # set in start()
        try:
            response = await self._client.post(cfg.url, content=event.body, headers=headers)
        except httpx.HTTPError as exc:
            self._failed += 1
            log.debug("payload logger: %s unreachable: %r", cfg.url, exc)
            return False
        if response.is_success:
            self._sent += 1
        else:
            self._failed += 1
            log.debug("payload logger: %s answered %s", cfg.url, response.status_code)
        return True

    def _back_off(self, probe: bool) -> None:
        """The sink could not be reached: pause sends, longer after each failed probe."""
        if self._backoff and not probe:
            return  # an attempt already under way when the pause began: no news about the sink
        if not self._backoff:
            log.warning(
                "payload logger: %s unreachable; dropping events, trying again after a pause "
                "growing from %gs to %gs",
                self.config.url,
                BACKOFF_SECONDS,
                BACKOFF_CAP_SECONDS,
            )
        self._backoff = min(BACKOFF_CAP_SECONDS, max(BACKOFF_SECONDS, self._backoff * 2))
        self._resume_at = self._clock() + self._backoff

    async def drain(self) -> None:
        """Wait until every queued event has been sent, has failed or has been dropped."""
        await self._queue.join()

    async def close(self, grace: float = 2.0) -> None:
        """Send what is queued for up to `grace` seconds, then stop the workers."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drain(), grace)
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None
