"""The CloudEvents wire format the dispatcher sends: structured mode inlines JSON and text and
base64-encodes the rest; binary mode percent-encodes what a header cannot carry.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from knserve.eventing.encoding import to_binary, to_structured
from knserve.eventing.ingress import STRUCTURED, decode

# ---- the wire format -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "data", "member"),
    [
        pytest.param("application/json", b'{"a":1}', {"data": {"a": 1}}, id="json-inline"),
        pytest.param("application/cloudevents+json", b"[1]", {"data": [1]}, id="json-suffix"),
        pytest.param("text/plain", "café".encode(), {"data": "café"}, id="text-inline"),
        pytest.param(
            "application/octet-stream", b"\x00\xff", {"data_base64": "AP8="}, id="bytes-base64"
        ),
        pytest.param(
            "application/json", b"{oops", {"data_base64": "e29vcHM="}, id="bad-json-base64"
        ),
    ],
)
def test_structured_mode_inlines_json_and_text_and_base64_encodes_the_rest(
    content_type: str, data: bytes, member: dict[str, Any]
) -> None:
    attributes = {
        "specversion": "1.0",
        "id": "1",
        "source": "/s",
        "type": "t",
        "datacontenttype": content_type,
    }
    headers, body = to_structured(attributes, data)
    assert headers == {"content-type": STRUCTURED}
    assert orjson.loads(body) == {**attributes, **member}
    assert (
        decode(headers, body)[0]["data"] == data
    )  # what the ingress reads back (JSON as orjson writes it)


def test_binary_mode_percent_encodes_what_a_header_cannot_carry() -> None:
    headers, body = to_binary(
        {"id": "1", "subject": 'a "b" 100% é', "datacontenttype": "text/plain"}, None
    )
    assert headers == {
        "ce-id": "1",
        "ce-subject": "a%20%22b%22%20100%25%20%C3%A9",
        "content-type": "text/plain",
    }
    assert body == b""
