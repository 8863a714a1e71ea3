"""The few ASGI pieces the model server and the function host both speak: reading a request body
within a size limit, and sending a whole response.

Kept apart from `app.py` so that the function host, which serves plain functions too, does not
import the model server (and NumPy) to read a body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from knserve.runtime.errors import PayloadTooLarge

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Larger bodies get 413; 64 MiB fits image batches and stops a runaway upload.
MAX_BODY_BYTES = 64 * 1024 * 1024

_JSON = [(b"content-type", b"application/json")]


async def read_body(receive: Receive, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole request body; `PayloadTooLarge` (413) as soon as it passes `limit` bytes."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        if len(body) > limit:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def send_body(send: Send, status: int, body: bytes, headers: Sequence[Any] = ()) -> None:
    """A whole response; JSON unless `headers` name a content-type."""
    # A content-length spares the client chunked framing (the whole body is known here).
    length = (b"content-length", str(len(body)).encode())
    if not headers:
        out = [*_JSON, length]
    elif any(k == b"content-type" for k, _ in headers):
        out = [*headers, length]
    else:
        out = [*_JSON, *headers, length]
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, payload: Any, headers: Sequence[Any] = ()) -> None:
    """`payload` as a JSON response."""
    await send_body(send, status, orjson.dumps(payload), headers)
