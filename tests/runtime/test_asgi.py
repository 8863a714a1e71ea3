"""The ASGI pieces the model server and the function host share: bodies within a limit, whole
responses."""

from __future__ import annotations

from typing import Any

import pytest
from runtime_fixtures import serving

from knserve.runtime.asgi import read_body, send_json
from knserve.runtime.errors import PayloadTooLarge
from knserve.runtime.model import Model
from knserve.runtime.settings import RuntimeSettings


def chunks(*parts: bytes):  # type: ignore[no-untyped-def]
    messages = [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
        for i, p in enumerate(parts)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return receive


@pytest.mark.parametrize("parts", [(b"abcdef",), (b"ab", b"", b"cd", b"ef")])
async def test_the_whole_body_comes_back_however_it_was_sent(parts: tuple[bytes, ...]) -> None:
    assert await read_body(chunks(*parts), limit=6) == b"abcdef"


@pytest.mark.parametrize("parts", [(b"abcdefg",), (b"abc", b"defg", b"never read")])
async def test_a_body_past_the_limit_is_refused_as_soon_as_it_passes(
    parts: tuple[bytes, ...],
) -> None:
    receive = chunks(*parts)
    with pytest.raises(PayloadTooLarge, match="larger than 6 bytes") as refused:
        await read_body(receive, limit=6)
    assert refused.value.status == 413


async def test_a_json_response_carries_its_length() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await send_json(send, 201, {"a": 1}, [(b"x-extra", b"1")])
    assert sent[0]["status"] == 201
    assert sent[0]["headers"] == [
        (b"content-type", b"application/json"),
        (b"x-extra", b"1"),
        (b"content-length", b"7"),
    ]
    assert sent[1]["body"] == b'{"a":1}'


class Echo(Model):
    def predict(self, payload, headers=None):  # type: ignore[no-untyped-def]
        return {"predictions": payload["instances"]}


async def test_the_model_server_answers_413_with_the_limit() -> None:
    async with serving(RuntimeSettings(max_body_bytes=100), [Echo("echo")]) as (client, _):
        fits = await client.post("/v1/models/echo:predict", json={"instances": [1]})
        answer = await client.post("/v1/models/echo:predict", content=b"x" * 101)
    assert fits.status_code == 200
    assert answer.status_code == 413
    assert "larger than 100 bytes" in answer.json()["error"]
