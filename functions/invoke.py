"""`knserve func invoke`: one HTTP request or CloudEvent to a function, and its answer.

Without `--data` the function's sample request is sent: `input.json` in its folder, which the
predictor and transformer templates ship (KServe's examples' `iris-input.json`), else `{}`.

With `--format http` the data is POSTed as JSON. A body with `instances` goes to the V1 predict
path of the model (`/v1/models/{name}:predict`) and one with `inputs` to the V2 infer path, so a
predictor answers without the caller spelling its path. With `--format cloudevent` the data is
sent as a binary-mode CloudEvent of the given type and source.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
import orjson

from knserve.functions.errors import FunctionError


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


SAMPLE = "input.json"


def read_data(data: str | None, folder: Path | None = None) -> bytes:
    """`--data`: JSON text, or @file to read it from a file; none: the function's sample."""
    if data is None:
        sample = Path(folder) / SAMPLE if folder is not None else None
        return sample.read_bytes() if sample is not None and sample.is_file() else b"{}"
    if data.startswith("@"):
        path = Path(data[1:])
        if not path.is_file():
            raise FunctionError(f"--data {data}: no such file")
        return path.read_bytes()
    return data.encode()


def target_url(url: str, body: bytes, model: str | None) -> str:
    if urlparse(url).path not in ("", "/") or model is None:
        return url
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return url
    if isinstance(payload, dict) and "instances" in payload:
        return f"{url.rstrip('/')}/v1/models/{model}:predict"
    if isinstance(payload, dict) and "inputs" in payload:
        return f"{url.rstrip('/')}/v2/models/{model}/infer"
    return url


def invoke(
    url: str,
    data: str | None = None,
    fmt: str = "http",
    ce_type: str = "knserve.invoke",
    ce_source: str = "knserve/cli",
    model: str | None = None,
    timeout: float = 60.0,
    folder: Path | None = None,
    proxy: str | None = None,
) -> Answer:
    """Send the function one request (`proxy`: the gateway, for a URL of the plane's domain)."""
    body = read_data(data, folder)
    if fmt not in ("http", "cloudevent"):
        raise FunctionError(f"--format is {fmt!r}, it must be http or cloudevent")
    headers = {"content-type": "application/json"}
    if fmt == "cloudevent":
        headers.update(
            {
                "ce-specversion": "1.0",
                "ce-id": str(uuid.uuid4()),
                "ce-type": ce_type,
                "ce-source": ce_source,
            }
        )
    else:
        url = target_url(url, body, model)
    try:
        # through the gateway the environment's proxies do not apply (as `event send`)
        with httpx.Client(proxy=proxy, trust_env=proxy is None, timeout=timeout) as http:
            response = http.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise FunctionError(f"cannot reach {url}: {exc}") from None
    return Answer(response.status_code, dict(response.headers), response.content)
