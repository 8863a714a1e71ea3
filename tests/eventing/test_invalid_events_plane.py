"""Invalid events through a real `knserve up`'s broker ingress: each gets its status and a
message that says what to fix, and nothing refused is stored.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from broker_fixtures import Sink, broker, ready, trigger
from plane_fixtures import LocalPlane

pytestmark = pytest.mark.slow


# ---- (g) invalid events through the real ingress --------------------------------------------------

CE = {
    "ce-specversion": "1.0",
    "ce-id": "x1",
    "ce-source": "/test",
    "ce-type": "t",
    "content-type": "application/json",
}


def without(name: str) -> dict[str, str]:
    return {k: v for k, v in CE.items() if k != name}


INVALID: list[tuple[str, str, str, dict[str, str], bytes, int, str]] = [
    # what, method, path, headers, body, status, in the message
    (
        "no specversion",
        "POST",
        "/default/default",
        without("ce-specversion"),
        b"{}",
        400,
        'missing required attribute "specversion"',
    ),
    (
        "no id",
        "POST",
        "/default/default",
        without("ce-id"),
        b"{}",
        400,
        'missing required attribute "id" (header ce-id)',
    ),
    (
        "no source",
        "POST",
        "/default/default",
        without("ce-source"),
        b"{}",
        400,
        'missing required attribute "source" (header ce-source)',
    ),
    (
        "no type",
        "POST",
        "/default/default",
        without("ce-type"),
        b"{}",
        400,
        'missing required attribute "type" (header ce-type)',
    ),
    (
        "structured, no id",
        "POST",
        "/default/default",
        {"content-type": "application/cloudevents+json"},
        b'{"specversion": "1.0", "source": "/s", "type": "t"}',
        400,
        'missing required attribute "id" (member "id")',
    ),
    (
        "specversion 0.3",
        "POST",
        "/default/default",
        {**CE, "ce-specversion": "0.3"},
        b"{}",
        400,
        'specversion "0.3" is not supported',
    ),
    ("empty id", "POST", "/default/default", {**CE, "ce-id": ""}, b"{}", 400, '"id" is empty'),
    (
        "ttl spent",
        "POST",
        "/default/default",
        {**CE, "ce-knativebrokerttl": "1"},
        b"{}",
        400,
        "is spent",
    ),
    (
        "unknown broker",
        "POST",
        "/default/nope",
        CE,
        b"{}",
        404,
        'broker "nope" not found in namespace "default"',
    ),
    ("not a broker path", "POST", "/default", CE, b"{}", 404, "/{namespace}/{broker}"),
    ("GET", "GET", "/default/default", {}, b"", 405, "accepts only POST"),
    ("PUT", "PUT", "/default/default", CE, b"{}", 405, "accepts only POST"),
    (
        "too big",
        "POST",
        "/default/default",
        CE,
        b"[" + b"1," * (2 * 1024 * 1024) + b"1]",
        413,
        "over the broker's limit of 4194304 bytes",
    ),
    (
        "XML structured",
        "POST",
        "/default/default",
        {"content-type": "application/cloudevents+xml"},
        b"<e/>",
        415,
        "structured mode supports only application/cloudevents+json",
    ),
]


def test_every_invalid_event_gets_its_status_and_a_message_that_says_what_to_fix(
    plane: LocalPlane, tmp_path: Path, sink: Sink
) -> None:
    ready(plane, tmp_path, broker(), trigger("all", {"uri": sink.url("/all")}))
    wrong = []
    with httpx.Client(base_url=plane.broker) as client:
        for what, method, path, headers, body, status, message in INVALID:
            try:
                response = client.request(method, path, headers=headers, content=body)
            except httpx.TransportError as exc:  # the ingress must answer, not hang up
                wrong.append(f"{what}: no answer ({exc!r})")
                continue
            error = response.json().get("error", "") if response.content else ""
            if response.status_code != status or message not in error:
                wrong.append(
                    f"{what}: {response.status_code} {error!r}, wanted {status} {message!r}"
                )
            if status == 405 and response.headers.get("allow") != "POST":
                wrong.append(f"{what}: Allow is {response.headers.get('allow')!r}")
        assert not wrong, "\n".join(wrong)
        # nothing refused was stored; a valid event after them still goes through
        assert (
            client.post(
                "/default/default", headers={**CE, "ce-id": "ok"}, content=b"{}"
            ).status_code
            == 202
        )
    sink.wait(lambda got: len(got) >= 1, 10, "the valid event", plane)
    time.sleep(0.2)
    assert [r.id for r in sink.received] == ["ok"]
