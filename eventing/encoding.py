"""CloudEvents on the wire, outbound: an event from the log as an HTTP request body and headers.

The inverse of :func:`knserve.eventing.ingress.decode`. An event is its attributes (strings, by
lowercase name) plus ``data``, the body bytes or None. Two modes, as the CloudEvents HTTP binding
defines them:

* binary (the default, as Knative's dispatcher sends): each attribute in a ``ce-{name}`` header,
  ``datacontenttype`` as ``Content-Type``, the data as the body, unchanged;
* structured (``spec.delivery.format: json``): one JSON envelope, ``application/cloudevents+json``,
  with JSON data inline, text data as a string and anything else as ``data_base64``.

Header values are percent-encoded as the binding requires: space, ``"``, ``%`` and everything
outside printable ASCII (so a UTF-8 subject survives proxies that only pass ASCII).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

__all__ = ["STRUCTURED", "is_cloudevent", "to_binary", "to_structured"]

STRUCTURED = "application/cloudevents+json"
# CloudEvents HTTP binding 3.1.3.2: printable ASCII except space, double quote and percent.
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
_UNSAFE = re.compile(r'[^\x21-\x7e]|["%]')  # what must be percent-encoded (most values: none)
_JSON_TYPE = re.compile(r"(application|text)/([\w.+-]*\+)?json\s*(;.*)?", re.IGNORECASE)


def to_binary(attributes: Mapping[str, Any], data: bytes | None) -> tuple[dict[str, str], bytes]:
    """Headers and body of a binary-mode message."""
    headers: dict[str, str] = {}
    for name, value in attributes.items():
        if name == "datacontenttype":
            headers["content-type"] = str(value)
        elif name != "data":
            text = str(value)
            headers[f"ce-{name}"] = quote(text, safe=_SAFE) if _UNSAFE.search(text) else text
    return headers, data or b""


def to_structured(
    attributes: Mapping[str, Any], data: bytes | None
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a structured-mode (JSON) message."""
    envelope: dict[str, Any] = {k: str(v) for k, v in attributes.items() if k != "data"}
    if data is not None:
        content_type = envelope.get("datacontenttype", "")
        inline: Any = None
        if _JSON_TYPE.fullmatch(content_type or "application/json"):
            try:
                inline = orjson.loads(data)
            except orjson.JSONDecodeError:
                inline = None
        elif content_type.lower().startswith("text/"):
            try:
                inline = data.decode()
            except UnicodeDecodeError:
                inline = None
        if inline is not None:
            envelope["data"] = inline
        else:
            envelope["data_base64"] = base64.b64encode(data).decode()
    return {"content-type": STRUCTURED}, orjson.dumps(envelope)


def is_cloudevent(headers: Mapping[str, str]) -> bool:
    """Whether an HTTP message (a subscriber's answer) claims to carry a CloudEvent: a
    ``ce-specversion`` header (binary) or a CloudEvents content type (structured or batched).
    Anything else is a plain body, not a reply."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if "ce-specversion" in lowered:
        return True
    media_type = lowered.get("content-type", "").split(";")[0].strip().lower()
    return media_type.startswith("application/cloudevents")
