"""Triton's own HTTP client, with its defaults (binary tensors both ways), against a real server."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from model_fixtures import train_sklearn_iris

tritonclient_http = pytest.importorskip("tritonclient.http")

ECHO = """
from knserve.runtime import Model, InferResponse
from knserve.runtime.protocols.v2 import InferOutput

class Echo(Model):
    def predict(self, payload, headers=None):
        return InferResponse(self.name, [InferOutput(i.name + "_out", i.data) for i in payload.inputs])
"""


@pytest.fixture
def server(tmp_path: Path, spawn, port: int):  # type: ignore[no-untyped-def]
    repo = tmp_path / "repo"
    model, _ = train_sklearn_iris(repo / "iris")
    (repo / "echo").mkdir()
    (repo / "echo" / "model.py").write_text(ECHO)
    proc = spawn(
        [
            sys.executable,
            "-m",
            "knserve.runtime",
            "--model-repository",
            str(repo),
            "--http-port",
            str(port),
        ]
    )
    proc.wait_http(f"http://127.0.0.1:{port}/v2/health/ready")
    return f"127.0.0.1:{port}", model


@pytest.mark.slow
def test_triton_client_infers_with_binary_tensors(server) -> None:  # type: ignore[no-untyped-def]
    from sklearn.datasets import load_iris

    url, model = server
    x, _ = load_iris(return_X_y=True)
    client = tritonclient_http.InferenceServerClient(url=url)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("iris")
    meta = client.get_model_metadata("iris")
    assert meta["inputs"][0]["shape"] == [-1, 4]

    rows = x[::50].astype(np.float32)  # one of each class
    tensor = tritonclient_http.InferInput("input-0", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)  # binary_data=True by default
    wanted = tritonclient_http.InferRequestedOutput("predict")  # binary_data=True by default
    result = client.infer("iris", [tensor], outputs=[wanted], request_id="t-1")
    assert result.get_response()["id"] == "t-1"
    np.testing.assert_array_equal(result.as_numpy("predict"), model.predict(rows))

    # no outputs named: every default output comes back (KServe's output-0), binary by default
    result = client.infer("iris", [tensor])
    np.testing.assert_array_equal(result.as_numpy("output-0"), model.predict(rows))
    client.close()


@pytest.mark.slow
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_triton_client_round_trips_every_datatype(server, binary: bool) -> None:  # type: ignore[no-untyped-def]
    client = tritonclient_http.InferenceServerClient(url=server[0])
    arrays = {
        "BOOL": np.array([[True, False]]),
        "UINT8": np.array([[1, 255]], dtype=np.uint8),
        "INT16": np.array([[-3, 4]], dtype=np.int16),
        "INT64": np.array([[-(2**40), 2**40]], dtype=np.int64),
        "FP16": np.array([[0.5, 1.5]], dtype=np.float16),
        "FP32": np.array([[1.25, -2.5]], dtype=np.float32),
        "FP64": np.array([[1e-200, 3.5]], dtype=np.float64),
        "BYTES": np.array([[b"ab", b"\xc3\xa9"]], dtype=np.object_),
    }
    inputs, outputs = [], []
    for datatype, array in arrays.items():
        tensor = tritonclient_http.InferInput(datatype.lower(), list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
        outputs.append(
            tritonclient_http.InferRequestedOutput(datatype.lower() + "_out", binary_data=binary)
        )
    result = client.infer("echo", inputs, outputs=outputs)
    for datatype, array in arrays.items():
        got = result.as_numpy(datatype.lower() + "_out")
        if datatype == "BYTES":
            assert [
                bytes(v) if isinstance(v, bytes) else str(v).encode() for v in got.ravel()
            ] == list(array.ravel())
        else:
            np.testing.assert_array_equal(got, array)
            assert got.dtype == array.dtype
    client.close()
