"""KServe's default `predict` for a transformer: the request sent on to `--predictor_host`.

A KServe transformer overrides `preprocess`/`postprocess` only; `kserve.Model.predict` then posts
what `preprocess` returned to the predictor named by KServe's `--predictor_host`, over the
protocol of `--predictor_protocol` (KServe's `PredictorConfig`), and hands the answer to
`postprocess`. knserve's runtime does that call itself, on its event loop with one pooled HTTP
client, the way KServe's `InferenceRESTClient` does it:

* V1: `POST http://{host}/v1/models/{name}:predict` with the JSON object; the answer is the
  predictor's JSON object;
* V2: `POST http://{host}/v2/models/{name}/infer` with KServe's `InferRequest.to_rest()` (JSON,
  or JSON plus binary tensors with `Inference-Header-Content-Length`); the answer is KServe's
  `InferResponse.from_bytes` of the reply, so `postprocess` gets the object KServe gives it;
* the request's `x-request-id`, `x-b3-traceid` and `authorization` go along (KServe's list).

A predictor that cannot be reached or answers an error is a 502 naming it. `grpc-v2` stays with
KServe's own gRPC client (the model's own `predict`).
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from knserve.runtime.errors import UpstreamError

_NOT_FORWARDED = frozenset({"content-length", "transfer-encoding", "connection"})


class PredictorClient:
    """`predict(payload, headers, response_headers=None)` against one predictor."""

    def __init__(
        self,
        model_name: str,
        host: str,
        protocol: str = "v1",
        use_ssl: bool = False,
        timeout_s: float = 600.0,
        retries: int = 0,
    ) -> None:
        if protocol not in ("v1", "v2"):
            raise ValueError(f"the predictor protocol is {protocol!r}; knserve forwards v1 or v2")
        scheme = "https" if use_ssl else "http"
        base = host if "://" in host else f"{scheme}://{host}"
        base = base.rstrip("/")
        self.protocol = protocol
        self.url = (
            f"{base}/v1/models/{model_name}:predict"
            if protocol == "v1"
            else f"{base}/v2/models/{model_name}/infer"
        )
        self._timeout = timeout_s
        self._retries = retries
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_config(cls, model_name: str, config: Any) -> PredictorClient | None:
        """The client for KServe's `PredictorConfig`; None without a predictor host or on gRPC."""
        if config is None or not config.predictor_host or config.protocol == "grpc-v2":
            return None
        return cls(
            model_name,
            config.predictor_host,
            config.protocol,
            bool(config.predictor_use_ssl),
            float(config.predictor_request_timeout_seconds),
            int(config.predictor_request_retries),
        )

    def _http(self) -> httpx.AsyncClient:
        # Made on first use: an AsyncClient belongs to the event loop that serves the requests.
        # No transport of its own, so $HTTP_PROXY holds: on the plane it routes the predictor's
        # `{isvc}-predictor.{namespace}.localhost` through the gateway.
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        return self._client

    async def _post(self, data: bytes, headers: dict[str, str]) -> httpx.Response:
        # KServe's `predictor_request_retries`: connection failures are retried, answers are not
        for attempt in range(self._retries + 1):
            try:
                return await self._http().post(self.url, content=data, headers=headers)
            except httpx.TransportError as exc:
                if attempt == self._retries:
                    raise UpstreamError(
                        f"cannot reach the predictor at {self.url}: {exc!r}"
                    ) from None
        raise AssertionError("unreachable")

    async def predict(
        self,
        payload: Any,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Any:
        from kserve import InferRequest, InferResponse
        from kserve.model import append_forwardable_headers

        out = append_forwardable_headers(headers, {"content-type": "application/json"})
        data = payload
        if isinstance(data, InferRequest):
            data, json_length = data.to_rest()
            if json_length:
                out["inference-header-content-length"] = str(json_length)
                out["content-type"] = "application/octet-stream"
        if not isinstance(data, bytes):
            data = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)
        response = await self._post(data, out)
        if not response.is_success:
            raise UpstreamError(
                f"the predictor at {self.url} answered {response.status_code}: "
                f"{response.text[:300]}"
            )
        if response_headers is not None:
            response_headers.update(
                (k, v) for k, v in response.headers.items() if k.lower() not in _NOT_FORWARDED
            )
        if self.protocol == "v2":
            length = response.headers.get("inference-header-content-length")
            content = response.content
            return InferResponse.from_bytes(content, int(length) if length else len(content))
        return orjson.loads(response.content)
