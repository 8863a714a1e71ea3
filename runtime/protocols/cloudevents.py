"""CloudEvents in and out, on the same predict and infer paths (KServe's CloudEvents support).

A request is a CloudEvent when it carries `ce-specversion` (binary mode: attributes in `ce-*`
headers, the V1 or V2 body as data) or has the content type `application/cloudevents+json`
(structured mode: one JSON envelope). The event's data is the inference request; the answer is a
CloudEvent in the same mode, of type `io.kserve.inference.response` and source
`io.kserve.inference.{model}` (KServe's defaults), linked to its request:

* `kserverequestid` and `kserverequestsource` carry the request's `id` and `source`, so a caller
  (or a trigger filter) pairs an answer with its question; the request's `subject`, if it has
  one, is kept (what the inference is about, e.g. which image);
* the reply's own `id` is derived from the request's `source` and `id` (a UUID 5): unique per
  request, as CloudEvents asks of (`source`, `id`), so two producers that both number their
  requests 1, 2, 3 … do not get answers a broker would take for duplicates; and stable, so a
  request delivered twice (at-least-once) yields the same reply id and a broker stores it once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from knserve.runtime.errors import InvalidInput
from knserve.runtime.protocols.cloudevents_sdk import (
    CloudEvent,
    GenericException,
    from_http,
    to_binary,
    to_structured,
)

RESPONSE_TYPE = "io.kserve.inference.response"
REQUEST_ID, REQUEST_SOURCE = "kserverequestid", "kserverequestsource"
_REPLY_IDS = uuid.UUID("5f0c6f0e-2d1b-5b7e-9a43-6b6e73657276")  # the UUID-5 namespace of reply ids
STRUCTURED = "application/cloudevents+json"


@dataclass(frozen=True)
class EventContext:
    id: str
    source: str
    type: str
    structured: bool
    data: Any  # the parsed JSON request (dict) or raw bytes
    subject: str | None = None


def is_cloudevent(headers: dict[str, str]) -> bool:
    return "ce-specversion" in headers or headers.get("content-type", "").startswith(STRUCTURED)


def decode(headers: dict[str, str], body: bytes) -> EventContext:
    """Parse a CloudEvent request; missing or malformed attributes are a 400 that names them."""
    structured = headers.get("content-type", "").startswith(STRUCTURED)
    if not structured:
        missing = [a for a in ("ce-id", "ce-source", "ce-type") if not headers.get(a)]
        if missing:
            raise InvalidInput(
                f"the CloudEvent is missing the required header(s) {', '.join(missing)}"
            )
    try:
        event = from_http(headers, body, data_unmarshaller=_unmarshal)
    except GenericException as exc:
        raise InvalidInput(f"invalid CloudEvent: {exc}") from None
    data = event.data
    if isinstance(data, bytes | str):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise InvalidInput("the CloudEvent's data is not a JSON inference request") from None
    if not isinstance(data, dict):
        raise InvalidInput("the CloudEvent's data must be a JSON object (a V1 or V2 request)")
    return EventContext(
        event["id"], event["source"], event["type"], structured, data, event.get("subject")
    )


def reply_id(source: str, event_id: str) -> str:
    """The id of the reply to the request (`source`, `event_id`): see the module docstring."""
    return str(uuid.uuid5(_REPLY_IDS, f"{source}\n{event_id}"))


def _unmarshal(raw: Any) -> Any:
    if isinstance(raw, bytes | str) and raw:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw
    return raw


def encode_reply(
    ctx: EventContext, model: str, answer: tuple[bytes, list[Any]]
) -> tuple[bytes, list[Any]]:
    """The inference answer as a CloudEvent in the request's mode."""
    body, _ = answer
    attributes = {
        "id": reply_id(ctx.source, ctx.id),
        "source": f"io.kserve.inference.{model}",
        "type": RESPONSE_TYPE,
        "specversion": "1.0",
        "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        REQUEST_ID: ctx.id,
        REQUEST_SOURCE: ctx.source,
    }
    if ctx.subject:
        attributes["subject"] = ctx.subject
    event = CloudEvent(attributes, orjson.loads(body))
    headers, data = (to_structured if ctx.structured else to_binary)(
        event, data_marshaller=orjson.dumps
    )
    pairs = [(k.lower().encode(), str(v).encode()) for k, v in headers.items()]
    if not any(k == b"content-type" for k, _ in pairs):
        pairs.append((b"content-type", b"application/json"))
    return (data if isinstance(data, bytes) else str(data).encode()), pairs
