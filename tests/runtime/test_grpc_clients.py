"""The V2 protocol over gRPC: Triton's and KServe's own gRPC clients against a real runtime
process (`--grpc-port`), for a scikit-learn and a TorchScript model, and the status codes of bad
requests. Each client runs in its own process (tests/support/grpc_client_driver.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from model_fixtures import train_sklearn_iris, train_torch_mlp
from net_fixtures import free_port

pytest.importorskip("grpc")
DRIVER = Path(__file__).parents[1] / "support" / "grpc_client_driver.py"


def drive(kind: str, address: str, model: str, rows: np.ndarray, authority: str = "") -> Any:
    args = [sys.executable, str(DRIVER), kind, address, model, *([authority] if authority else [])]
    done = subprocess.run(
        args, input=json.dumps(rows.tolist()), capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture
def served(tmp_path: Path, spawn, port: int):  # type: ignore[no-untyped-def]
    repo = tmp_path / "repo"
    sk_model, _ = train_sklearn_iris(repo / "iris")
    torch_model, _ = train_torch_mlp(repo / "mlp")
    grpc_port = free_port()
    proc = spawn(
        [
            sys.executable,
            "-m",
            "knserve.runtime",
            "--model-repository",
            str(repo),
            "--http-port",
            str(port),
            "--grpc_port",
            str(grpc_port),  # KServe's spelling
        ]
    )
    proc.wait_http(f"http://127.0.0.1:{port}/v2/health/ready", timeout=60)
    return f"127.0.0.1:{grpc_port}", sk_model, torch_model, port


def _rows() -> np.ndarray:
    from sklearn.datasets import load_iris

    x, _ = load_iris(return_X_y=True)
    return x[::50].astype(np.float32)  # one of each class


@pytest.mark.slow
def test_triton_grpc_client_sklearn_raw_tensors(served) -> None:  # type: ignore[no-untyped-def]
    address, sk_model, _, _ = served
    rows = _rows()
    got = drive("triton", address, "iris", rows)
    assert got["live"] and got["ready"] and got["model_ready"]
    assert got["metadata"]["name"] == "iris"
    assert got["metadata"]["inputs"][0]["shape"] == ["-1", "4"]  # int64 in proto JSON
    assert got["server"]["name"] == "knserve"
    assert {m["name"]: m["state"] for m in got["index"]["models"]} == {
        "iris": "READY",
        "mlp": "READY",
    }
    assert got["id"] == "req-1"
    assert got["raw"] is True  # raw inputs get raw outputs, as KServe answers
    # KServe's sklearnserver names its one output output-0
    assert got["outputs"] == {"output-0": sk_model.predict(rows).tolist()}
    assert got["errors"]["unknown_model"][0] == "StatusCode.NOT_FOUND"
    assert "model nope is not served here" in got["errors"]["unknown_model"][1]
    status, message = got["errors"]["bad_width"]
    assert status == "StatusCode.INVALID_ARGUMENT"
    assert "has shape [1, 3]; the model expects [-1, 4]" in message


@pytest.mark.slow
def test_kserve_grpc_client_sklearn_and_torchscript_typed_contents(served) -> None:  # type: ignore[no-untyped-def]
    import torch

    address, sk_model, torch_model, _ = served
    rows = _rows()
    got = drive("kserve", address, "iris", rows)
    assert got["live"] and got["ready"] and got["model_ready"]
    assert got["id"] == "req-2"
    assert got["outputs"] == {"output-0": sk_model.predict(rows).tolist()}
    assert got["errors"]["unknown_model"][0] == "NOT_FOUND"
    code, message = got["errors"]["bad_shape"]
    assert code == "INVALID_ARGUMENT"
    assert (
        message
        == "input 'input-0' has shape [1, 3] (3 elements) but 2 data elements in contents.fp32_contents"
    )

    scripted = drive("kserve", address, "mlp", rows)
    (name,) = scripted["outputs"]
    expected = torch_model(torch.tensor(rows)).detach().numpy()
    np.testing.assert_allclose(scripted["outputs"][name], expected, rtol=1e-5, atol=1e-6)
    triton = drive("triton", address, "mlp", rows)
    np.testing.assert_allclose(triton["outputs"][name], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_triton_grpc_client_unloads_and_loads_a_model(served) -> None:  # type: ignore[no-untyped-def]
    address, *_ = served
    # Triton's load/unload requests carry the model's name where KServe's do not (field 2)
    answer = drive("triton-repository", address, "iris", _rows())
    assert answer["after_unload"] is False and answer["after_load"] is True
    assert answer["load_unknown"][0] == "StatusCode.NOT_FOUND"
    assert "model nope is not served here" in answer["load_unknown"][1]


def test_grpc_calls_are_counted_in_the_runtime_metrics(served) -> None:  # type: ignore[no-untyped-def]
    import httpx

    address, _, _, port = served
    drive("triton", address, "iris", _rows())
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert 'knserve_requests_total{code="200",model_name="iris",protocol="grpc"} 1.0' in text
    assert 'knserve_requests_total{code="400",model_name="iris",protocol="grpc"} 1.0' in text


@pytest.mark.slow
def test_grpc_health_v1_says_serving_once_models_are_ready(served) -> None:  # type: ignore[no-untyped-def]
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    address, _, _, _ = served
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_grpc_port_under_the_plane_port_map() -> None:
    from knserve.runtime.settings import settings_from_env

    # a grpc-v2 predictor declares 8081 (named h2c): gRPC is served on the replica's port and
    # KServe's --http_port=8080 moves to a free one
    h2c = {"KNSERVE_PORT_MAP": "8081=40001,keep=32768-60999"}
    s = settings_from_env(h2c, port=8080)
    assert (s.grpc_port, s.port) == (40001, 0)
    # an HTTP revision: no gRPC unless asked, and an asked-for fixed gRPC port gets a free one
    http = {"KNSERVE_PORT_MAP": "8080=40002,keep=32768-60999"}
    assert settings_from_env(http, port=8080).grpc_port is None
    assert settings_from_env(http, port=8080, grpc_port=8081).grpc_port == 0
    # outside the plane: exactly what was asked
    assert settings_from_env({}, grpc_port=9000).grpc_port == 9000
