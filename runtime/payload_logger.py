"""KServe's payload logger, in process: each request and response as a CloudEvent to a sink.

KServe runs this in an agent sidecar that blocks the request when its 100-slot channel is full
and only logs failed sends. Here logging must never slow or fail the inference it records:
`log_request`/`log_response` only put an event on a bounded queue and return at once. When the
queue is full (the sink is slow or down) the event is dropped and counted; a few worker tasks
send events in CloudEvents binary mode, one attempt each, and count what failed. Nothing is
queued without bound and nothing is retried forever.

Events follow KServe's: type `org.kubeflow.serving.inference.request` or `.response`, the
inference id as `ce-id` (the same for the request and its response), the raw body as data, and
the extensions `inferenceservicename`, `namespace`, `component`, `endpoint` plus `modelname`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

log = logging.getLogger(__name__)

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
MODES = ("all", "request", "response")


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
    queued: int
    sent: int
    dropped: int  # the queue was full
    failed: int  # the sink refused or could not be reached


@dataclass(frozen=True)
class _Event:
    ce_type: str
    ce_id: str
    model: str
    body: bytes
    content_type: str
    time: str


class PayloadLogger:
    """Sends request/response CloudEvents to `config.url` in the background."""

    def __init__(self, config: LoggerConfig, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._client = client
        self._own_client = client is None
        self._queue: asyncio.Queue[_Event] = asyncio.Queue(maxsize=config.queue_size)
        self._workers: list[asyncio.Task[None]] = []
        self._queued = self._sent = self._dropped = self._failed = 0

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
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        try:
            self._queue.put_nowait(_Event(ce_type, ce_id, model, body, content_type, now))
        except asyncio.QueueFull:
            self._dropped += 1
            return
        self._queued += 1

    async def _work(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._send(event)
            finally:
                self._queue.task_done()

    async def _send(self, event: _Event) -> None:
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
        }
        assert self._client is not None  # set in start()
        try:
            response = await self._client.post(cfg.url, content=event.body, headers=headers)
        except httpx.HTTPError as exc:
            self._failed += 1
            log.debug("payload logger: %s unreachable: %s", cfg.url, exc)
            return
        if response.is_success:
            self._sent += 1
        else:
            self._failed += 1
            log.debug("payload logger: %s answered %s", cfg.url, response.status_code)

    async def close(self, grace: float = 2.0) -> None:
        """Send what is queued for up to `grace` seconds, then stop the workers."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), grace)
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None
