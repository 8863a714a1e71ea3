"""Drive a real gRPC client (Triton's or KServe's) against an Open Inference Protocol server.

Run as a process: `python grpc_client_driver.py triton|kserve|triton-repository ADDRESS MODEL
[AUTHORITY]`, with a JSON list of rows on stdin; prints one JSON object of what the server answered. A process per
client because `tritonclient.grpc` and `kserve` register the same protobuf names
(`inference.ServerLiveRequest`, …) from different files, which one process refuses.
`AUTHORITY` is the `:authority` (Host) the gateway routes on.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import numpy as np


def _triton(address: str, model: str, rows: np.ndarray, authority: str | None) -> dict[str, Any]:
    import grpc
    import tritonclient.grpc as tc
    from tritonclient.utils import InferenceServerException

    args = [("grpc.default_authority", authority)] if authority else None
    client = tc.InferenceServerClient(url=address, channel_args=args)
    out: dict[str, Any] = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model),
        "metadata": client.get_model_metadata(model, as_json=True),
        "server": client.get_server_metadata(as_json=True),
        "index": client.get_model_repository_index(as_json=True),
    }
    tensor = tc.InferInput("input-0", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)  # raw_input_contents, as tritonclient always sends
    result = client.infer(model, [tensor], request_id="req-1")
    response = result.get_response(as_json=True)
    out["id"] = response.get("id")
    out["outputs"] = {o["name"]: result.as_numpy(o["name"]).tolist() for o in response["outputs"]}
    out["raw"] = bool(result.get_response().raw_output_contents)
    errors: dict[str, Any] = {}
    for case, call in {
        "unknown_model": lambda: client.infer("nope", [tensor]),
        "bad_width": lambda: client.infer(model, [_bad_width(tc)]),
    }.items():
        try:
            call()
            errors[case] = None
        except InferenceServerException as exc:
            errors[case] = [exc.status(), exc.message()]
    out["errors"] = errors
    _ = grpc
    return out


def _triton_repository(address: str, model: str) -> dict[str, Any]:
    """Unload and load `model` with Triton's client (its requests name the model in field 2)."""
    import tritonclient.grpc as tc
    from tritonclient.utils import InferenceServerException

    client = tc.InferenceServerClient(url=address)
    client.unload_model(model)
    out: dict[str, Any] = {"after_unload": client.is_model_ready(model)}
    client.load_model(model)
    out["after_load"] = client.is_model_ready(model)
    try:
        client.load_model("nope")
        out["load_unknown"] = None
    except InferenceServerException as exc:
        out["load_unknown"] = [exc.status(), exc.message()]
    return out


def _bad_width(tc: Any) -> Any:
    wrong = np.zeros((1, 3), dtype=np.float32)
    tensor = tc.InferInput("input-0", [1, 3], "FP32")
    tensor.set_data_from_numpy(wrong)
    return tensor


async def _kserve(
    address: str, model: str, rows: np.ndarray, authority: str | None
) -> dict[str, Any]:
    import grpc
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    args = [("grpc.default_authority", authority)] if authority else None
    client = InferenceGRPCClient(address, channel_args=args)
    out: dict[str, Any] = {
        "live": await client.is_server_live(),
        "ready": await client.is_server_ready(),
        "model_ready": await client.is_model_ready(model),
    }
    # typed contents: KServe's InferInput without binary data sends fp32_contents
    tensor = InferInput("input-0", list(rows.shape), "FP32", data=rows.ravel().tolist())
    response = await client.infer(InferRequest(model, [tensor], request_id="req-2"))
    out["id"] = response.id
    out["outputs"] = {o.name: o.as_numpy().tolist() for o in response.outputs}
    errors: dict[str, Any] = {}
    bad = InferInput("input-0", [1, 3], "FP32", data=[0.0, 0.0])  # 3 declared, 2 sent
    for case, request in {
        "unknown_model": InferRequest("nope", [tensor]),
        "bad_shape": InferRequest(model, [bad]),
    }.items():
        try:
            await client.infer(request)
            errors[case] = None
        except grpc.aio.AioRpcError as exc:
            errors[case] = [exc.code().name, exc.details()]
    out["errors"] = errors
    await client.close()
    return out


def main() -> None:
    kind, address, model = sys.argv[1:4]
    authority = sys.argv[4] if len(sys.argv) > 4 else None
    rows = np.asarray(json.loads(sys.stdin.read()), dtype=np.float32)
    if kind == "triton-repository":
        result = _triton_repository(address, model)
    elif kind == "triton":
        result = _triton(address, model, rows, authority)
    else:
        result = asyncio.run(_kserve(address, model, rows, authority))
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
