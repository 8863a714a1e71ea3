"""The broker ingress: CloudEvents over HTTP, into the event log, at ``/{namespace}/{broker}``.

A POST carries one event in binary mode (attributes in ``ce-*`` headers, the body as data) or
structured mode (``Content-Type: application/cloudevents+json``, one JSON envelope), or several in
batched mode (``application/cloudevents-batch+json``, a JSON array of envelopes). The answer is
202 only after the event is committed to the :class:`~knserve.eventing.eventlog.EventLog` --
durable, unlike Knative's in-memory broker -- and then ``on_accepted(namespace, broker)`` wakes
the dispatcher. Refusals carry ``{"error": message}`` that says what to fix:

* 400: a required attribute (``specversion``, ``id``, ``source``, ``type``) missing or malformed,
  a bad ``time``, an invalid attribute name, a body that is not the JSON it claims to be, or a
  ``knativebrokerttl`` that ran out; in a batch, ``event [i]:`` says which, and nothing is stored;
* 404: no such broker (``broker_exists`` decides) or a path that is not ``/{namespace}/{broker}``;
* 405 (with ``Allow: POST``): any other method; 413: a body over ``max_body_bytes``;
* 415: a structured or batched format other than JSON; 503: the log could not commit (retry).

What the ingress adds, as Knative's does (``pkg/broker/ingress``): ``knativearrivaltime``, the
RFC 3339 UTC time of acceptance (replacing any the sender set), and loop protection with
``knativebrokerttl``: absent, it is set to 255; present, it is decremented, and an event whose
TTL is then 0 or less is refused with 400. The dispatcher strips the TTL from what it sends to a
subscriber and puts the delivered event's TTL on the reply, so a reply loop dies after 255 hops.
An event that comes without CloudEvents' distributed-tracing extension gets it from the request
(`traceparent`, `tracestate`, or B3), so its deliveries continue the sender's trace; with tracing
on (`knserve.runtime.tracing`) the commit is an `ingress commit` span, the event's parent.
A duplicate (same ``source``, ``id`` and ``type`` within the log's retention window) is answered
202 but stored once. All attribute values are kept in their canonical string form (as binary mode
carries them), so trigger filters see strings whichever mode the event came in.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import orjson
from starlette.types import Receive, Scope, Send

from knserve.eventing.eventlog import EventLog
from knserve.eventing.group_commit import GroupCommit
from knserve.runtime.tracecontext import extract, traceparent
from knserve.runtime.tracing import Span, Tracer, tracer

__all__ = [
    "ARRIVAL_TIME",
    "BATCH",
    "DEFAULT_TTL",
    "MAX_BODY_BYTES",
    "STRUCTURED",
    "TTL",
    "Ingress",
    "Rejected",
    "Request",
    "decode",
]

logger = logging.getLogger(__name__)

# 4 MiB, gRPC's default message cap: an inference request (a 224×224×3 image as a JSON tensor is
# about 2 MB) fits, and a runaway sender cannot make the log store arbitrarily large rows.
MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_TTL = 255  # Knative's broker.TTLDefault
TTL = "knativebrokerttl"
ARRIVAL_TIME = "knativearrivaltime"
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
REQUIRED = ("specversion", "id", "source", "type")
# Attributes the CloudEvents spec types as strings (URI, Timestamp, String): never a JSON number.
STRING_ATTRIBUTES = {*REQUIRED, "datacontenttype", "dataschema", "subject", "time"}
_NAME = re.compile(r"[a-z0-9]+")  # CloudEvents 1.0: attribute names are lowercase a-z and 0-9
_VALID_NAMES: set[str] = set()  # ce-* names already checked against _NAME
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})"
)
_Group = tuple[str, str, Sequence[Mapping[str, Any]]]  # one request's events for the log
_JSON_TYPE = re.compile(r"(application|text)/([\w.+-]*\+)?json\s*(;.*)?", re.IGNORECASE)


class Rejected(Exception):
    """A request the ingress refuses: ``status`` is the HTTP status, ``message`` the fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True, slots=True)
class Request:
    """One request's events, decoded and stamped, on their way to the log."""

    namespace: str
    broker: str
    events: list[dict[str, Any]]
    span: Span | None  # the "ingress commit" span when tracing is on


class _Disconnected(Exception):
    """The client went away before sending its whole body: nothing to answer."""


# ---- decoding ----------------------------------------------------------------------------------


def decode(headers: Mapping[str, str], body: bytes) -> list[dict[str, Any]]:
    """The CloudEvents in one HTTP message (a request to the ingress, or a subscriber's reply),
    each as its attributes (strings) plus ``data`` (the body bytes, or None). Raises
    :class:`Rejected` (400 or 415) naming what is missing or malformed."""
    return _decode({k.lower(): v for k, v in headers.items()}, body)


def _decode(headers: Mapping[str, str], body: bytes) -> list[dict[str, Any]]:
    """:func:`decode` for header names already in lower case (the ingress's own)."""
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type.startswith("application/cloudevents-batch"):
        if media_type != BATCH:
            raise Rejected(415, f"batched mode supports only {BATCH}, not {media_type}")
        items = _json(body, "the batch")
        if not isinstance(items, list):
            raise Rejected(400, f"a {BATCH} body must be a JSON array of events")
        return [_structured(item, f"event [{i}]: ") for i, item in enumerate(items)]
    if media_type.startswith("application/cloudevents"):
        if media_type != STRUCTURED:
            raise Rejected(415, f"structured mode supports only {STRUCTURED}, not {media_type}")
        return [_structured(_json(body, "the event"), "")]
    if "ce-specversion" not in headers:
        raise Rejected(
            400,
            'missing required attribute "specversion": send a CloudEvent in binary mode (headers '
            f"ce-specversion, ce-id, ce-source, ce-type) or structured mode (Content-Type: {STRUCTURED})",
        )
    return [_binary(headers, body)]


def _binary(headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    event: dict[str, Any] = {}
    for header, value in headers.items():
        if not header.startswith("ce-"):
            continue
        name = header[3:]
        if name not in _VALID_NAMES:
            _attribute_name(name, f'header "{header}": ')
            if len(_VALID_NAMES) < 1024:  # remembered: most senders repeat a few names
                _VALID_NAMES.add(name)
        if "%" not in value:
            event[name] = value
            continue
        try:  # the HTTP binding percent-encodes what a header cannot carry
            event[name] = unquote(value, errors="strict")
        except UnicodeDecodeError:
            raise Rejected(400, f'header "{header}" is not percent-encoded UTF-8') from None
    if headers.get("content-type"):
        event["datacontenttype"] = headers["content-type"]
    _validate(event, "", lambda name: f"header ce-{name}")
    event["data"] = body or None
    return event


def _structured(envelope: Any, where: str) -> dict[str, Any]:
    if not isinstance(envelope, dict):
        raise Rejected(400, f"{where}a structured CloudEvent must be a JSON object")
    event: dict[str, Any] = {}
    for key, value in envelope.items():
        if key in ("data", "data_base64") or value is None:
            continue
        name = _attribute_name(key, where)
        if isinstance(value, str):
            event[name] = value
        elif name in STRING_ATTRIBUTES:
            raise Rejected(400, f'{where}attribute "{name}" must be a string, got {_show(value)}')
        elif isinstance(value, bool):
            event[name] = "true" if value else "false"
        elif isinstance(value, int):
            event[name] = str(value)
        else:
            raise Rejected(
                400,
                f'{where}attribute "{name}" must be a string, an integer or a boolean, got {_show(value)}',
            )
    _validate(event, where, lambda name: f'member "{name}"')
    data, data_base64 = envelope.get("data"), envelope.get("data_base64")
    if data is not None and data_base64 is not None:
        raise Rejected(400, f"{where}give data or data_base64, not both")
    if data_base64 is not None:
        try:
            event["data"] = base64.b64decode(str(data_base64), validate=True)
        except (binascii.Error, ValueError):
            raise Rejected(400, f"{where}data_base64 is not valid base64") from None
    elif data is None:
        event["data"] = None
    elif isinstance(data, str) and not _JSON_TYPE.fullmatch(
        event.get("datacontenttype", "application/json")
    ):
        event["data"] = data.encode()  # text data: the string itself is the body
    else:
        # JSON data (JSON is implied when datacontenttype is absent): the body is its encoding.
        event.setdefault("datacontenttype", "application/json")
        event["data"] = orjson.dumps(data)
    return event


def _attribute_name(name: str, where: str) -> str:
    if name == "data" or not _NAME.fullmatch(name):
        raise Rejected(
            400,
            f'{where}"{name}" is not a valid attribute name: CloudEvents attribute names are '
            'lowercase letters a-z and digits 0-9 (and not "data")',
        )
    return name


def _validate(event: Mapping[str, str], where: str, origin: Callable[[str], str]) -> None:
    missing = [name for name in REQUIRED if name not in event]
    if missing:
        names = ", ".join(f'"{n}"' for n in missing)
        places = ", ".join(origin(n) for n in missing)
        plural = "s" if len(missing) > 1 else ""
        raise Rejected(400, f"{where}missing required attribute{plural} {names} ({places})")
    if event["specversion"] != "1.0":
        raise Rejected(
            400,
            f'{where}specversion "{event["specversion"]}" is not supported; send CloudEvents 1.0 '
            '(specversion "1.0")',
        )
    for name in REQUIRED[1:]:
        if not event[name].strip():
            raise Rejected(
                400, f'{where}attribute "{name}" is empty; it must be a non-empty string'
            )
    if "time" in event and not _is_rfc3339(event["time"]):
        raise Rejected(
            400,
            f'{where}attribute "time" is "{event["time"]}", not an RFC 3339 timestamp such as '
            "2024-05-01T12:00:00Z",
        )


def _is_rfc3339(value: str) -> bool:
    match = _RFC3339.fullmatch(value)
    if match is None:
        return False
    date, clock, fraction, zone = match.groups()
    zone = "+00:00" if zone in ("Z", "z") else zone
    try:  # the shape is right; are the numbers a real date and time?
        datetime.fromisoformat(f"{date}T{clock}.{(fraction or '0')[:6]}{zone}")
    except ValueError:
        return False
    return True


def _json(body: bytes, what: str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Rejected(400, f"{what} is not valid JSON: {exc}") from None


def _show(value: Any) -> str:
    return orjson.dumps(value).decode()[:80]


# ---- the ASGI app --------------------------------------------------------------------------------


class Ingress:
    """The ingress as an ASGI app. ``broker_exists(namespace, name)`` says whether a broker is
    known (the plane's store); ``clock`` gives Unix time for ``knativearrivaltime``."""

    def __init__(
        self,
        log: EventLog,
        broker_exists: Callable[[str, str], bool],
        *,
        on_accepted: Callable[[str, str], None] | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.log, self.broker_exists, self.on_accepted = log, broker_exists, on_accepted
        self.max_body_bytes, self.clock = max_body_bytes, clock
        self.tracer: Tracer | None = tracer("knserve-broker")  # None unless OTEL_* ask for it
        self.accepted: dict[tuple[str, str], int] = {}  # (namespace, broker) -> events stored
        self._second, self._second_text = -1, ""  # the last second _arrival formatted
        self.group: GroupCommit[_Group, list[bool]] = GroupCommit(log.append_groups)

    def accept(self, namespace: str, broker: str, events: Sequence[dict[str, Any]]) -> int:
        """Stamp decoded events (TTL, arrival time) and store them in one transaction of their
        own; returns how many were new. Raises :class:`Rejected` (400) on a spent TTL, storing
        nothing. (Replies take this way; requests share commits through :meth:`submit`.)"""
        self._stamp(events)
        return self._stored(namespace, broker, self.log.append_many(namespace, broker, events))

    def _stamp(self, events: Sequence[dict[str, Any]]) -> None:
        arrival = self._arrival(self.clock())
        for i, event in enumerate(events):
            where = f"event [{i}]: " if len(events) > 1 else ""
            event[TTL] = str(_ttl(event.get(TTL), where))
            event[ARRIVAL_TIME] = arrival

    def _stored(self, namespace: str, broker: str, flags: list[bool]) -> int:
        stored = sum(flags)
        if stored:
            key = (namespace, broker)
            self.accepted[key] = self.accepted.get(key, 0) + stored
        if stored and self.on_accepted is not None:
            try:
                self.on_accepted(namespace, broker)
            except Exception:  # the events are stored: the 202 stands, the dispatcher will poll
                logger.exception("on_accepted failed for broker %s/%s", namespace, broker)
        return stored

    def _arrival(self, now: float) -> str:
        """``now`` in RFC 3339 UTC with microseconds; the date and time of day are formatted once
        per second (strftime was a visible share of an event's cost)."""
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._second_text}.{min(999999, round((now - second) * 1e6)):06d}Z"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        extra: list[tuple[bytes, bytes]] = []
        try:
            status, message = await self._handle(scope, receive)
        except Rejected as exc:
            status, message = exc.status, exc.message
            if status == 405:
                extra.append((b"allow", b"POST"))
        except _Disconnected:
            return
        body = orjson.dumps({"error": message}) if message else b""
        headers = [(b"content-length", str(len(body)).encode()), *extra]
        if body:
            headers.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, str]:
        headers = {
            k.decode("latin-1").lower(): header_value(v) for k, v in scope.get("headers", [])
        }
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        namespace, broker = self.admit(scope["method"], path, headers)
        request = self.prepare(namespace, broker, headers, await self._read(receive))
        future = self.submit(request)
        with contextlib.suppress(sqlite3.Error):  # settle() answers it with a 503
            await future
        return self.settle(request, future)

    # The steps of one request, for the ASGI app above and the ingress's own HTTP server
    # (:mod:`knserve.eventing.ingress_server`): admit (before the body), prepare, submit, settle.

    def admit(self, method: str, path: str, headers: Mapping[str, str]) -> tuple[str, str]:
        """The ``(namespace, broker)`` a request head is for; raises :class:`Rejected` (405,
        404, 413 by its Content-Length) before its body is read. ``headers`` has lowercase
        names."""
        if method != "POST":
            raise Rejected(
                405, f"the broker ingress accepts only POST (CloudEvents over HTTP), not {method}"
            )
        parts = path.strip("/").split("/")
        if len(parts) != 2 or not all(parts):
            raise Rejected(
                404, f'no broker at "{path}": the ingress path is /{{namespace}}/{{broker}}'
            )
        namespace, broker = parts
        if not self.broker_exists(namespace, broker):
            raise Rejected(
                404,
                f'broker "{broker}" not found in namespace "{namespace}"; create it with '
                f"`knserve broker create {broker} -n {namespace}` or check the URL",
            )
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise self.too_large(int(declared))
        return namespace, broker

    def prepare(
        self, namespace: str, broker: str, headers: Mapping[str, str], body: bytes
    ) -> Request:
        """The request's events, decoded and stamped, with the sender's trace; raises
        :class:`Rejected` (400, 415)."""
        events = _decode(headers, body)
        self._stamp(events)
        context = extract(headers.get)
        span = None
        if self.tracer is not None:
            attributes = {"messaging.destination.name": f"{namespace}/{broker}"}
            span, context = self.tracer.start(
                "ingress commit", context, kind="server", attributes=attributes
            )
        if context is not None:
            parent = traceparent(context.trace_id, context.span_id, context.sampled)
            for event in events:
                if "traceparent" not in event:
                    event["traceparent"] = parent
                    if context.state:
                        event["tracestate"] = context.state
        return Request(namespace, broker, events, span)

    def submit(self, request: Request) -> asyncio.Future[list[bool]]:
        """Commit the request's events with the others ready now (group commit): done when
        they are on disk."""
        return self.group.submit((request.namespace, request.broker, request.events))

    def settle(self, request: Request, committed: asyncio.Future[list[bool]]) -> tuple[int, str]:
        """The answer once ``committed`` (from :meth:`submit`) is done: 202, or 503 when the log
        could not store the events; counts them and wakes the dispatcher."""
        namespace, broker, span = request.namespace, request.broker, request.span
        try:
            flags = committed.result()
        except sqlite3.Error as exc:
            logger.exception("the event log could not store events for %s/%s", namespace, broker)
            if span is not None and self.tracer is not None:
                self.tracer.fail(span, f"the event log could not store the event: {exc}")
            return (
                503,
                f"the event log could not store the event ({exc}); it was not accepted, send it again",
            )
        finally:
            if span is not None:
                span.end()
        self._stored(namespace, broker, flags)
        return 202, ""

    async def _read(self, receive: Receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:  # stop reading: the limit holds without Content-Length
                raise self.too_large(None)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def too_large(self, size: int | None) -> Rejected:
        given = f"{size} bytes" if size is not None else "the request body"
        limit = self.max_body_bytes
        mib = f" ({limit / 1048576:g} MiB)" if limit >= 1048576 else ""
        return Rejected(
            413,
            f"{given} is over the broker's limit of {limit} bytes{mib}; send a large payload by "
            "reference (a URL in the event's data) or raise the ingress's max_body_bytes",
        )


def _ttl(raw: Any, where: str) -> int:
    """Knative's TTLDefaulter, then its check: absent -> 255; present -> one less; <= 0 -> 400."""
    if raw is None:
        return DEFAULT_TTL
    if not re.fullmatch(r"[+-]?\d+", str(raw).strip()):
        raise Rejected(400, f'{where}attribute "{TTL}" is "{raw}", not an integer; leave it out')
    ttl = int(str(raw).strip()) - 1
    if ttl <= 0:
        raise Rejected(
            400,
            f'{where}attribute "{TTL}" arrived as {raw} and is spent: the event has gone round '
            "through brokers too many times (a subscriber replying with the event it received?), "
            f"so it stops here; a new event must not carry {TTL}",
        )
    return ttl


def header_value(raw: bytes) -> str:
    try:  # percent-encoding is the rule, but raw UTF-8 is common and unambiguous
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("latin-1")


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
