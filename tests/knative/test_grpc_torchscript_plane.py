"""A TorchScript model as a `protocolVersion: grpc-v2` InferenceService on a real local plane, on
knserve's own PyTorch runtime, called over gRPC through the gateway with Triton's and KServe's
clients: a canary split between two revisions, their `latest` and `prev` tags, and bad requests
with the status codes KServe gives them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from model_fixtures import iris, train_torch_mlp
from plane_fixtures import LocalPlane, apply

pytest.importorskip("grpc")
torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow

DRIVER = Path(__file__).parents[1] / "support" / "grpc_client_driver.py"
NAME = "mlp-grpc"
HOST = f"{NAME}.default.localhost"


def isvc(storage: Path, **predictor: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": NAME, "namespace": "default"},
        "spec": {
            "predictor": {
                "minReplicas": 1,
                **predictor,
                "model": {
                    # KServe picks TorchServe for pytorch unless the runtime is named
                    "runtime": "knserve-pytorch",
                    "modelFormat": {"name": "pytorch"},
                    "protocolVersion": "grpc-v2",
                    "storageUri": f"file://{storage}",
                },
            }
        },
    }


def drive(kind: str, plane: LocalPlane, authority: str, rows: np.ndarray) -> Any:
    args = [sys.executable, str(DRIVER), kind, f"127.0.0.1:{plane.port}", NAME, authority]
    done = subprocess.run(
        args, input=json.dumps(rows.tolist()), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:] + plane.log()[-3000:]
    return json.loads(done.stdout)


def ready_at(plane: LocalPlane, generation: int) -> dict[str, Any]:
    def done(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        return status.get("observedGeneration") == generation and any(
            c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
        )

    return plane.wait_for("inferenceservices", NAME, done, timeout=180)


def requests(plane: LocalPlane, revisions: list[str]) -> dict[str, int]:
    metrics = plane.metrics()
    return {r: int(metrics.get(r, {}).get("requests_total", 0)) for r in revisions}


def output(answer: dict[str, Any]) -> np.ndarray:
    assert list(answer["outputs"]) == ["output-0"], answer
    return np.asarray(answer["outputs"]["output-0"], dtype=np.float32)


def test_torchscript_over_grpc_through_the_plane_split_tags_and_bad_requests(
    fast_plane: LocalPlane, tmp_path: Path, torch_dir: Path
) -> None:
    plane = fast_plane
    v1 = tmp_path / "v1"
    shutil.copytree(torch_dir, v1)
    apply(plane, tmp_path, isvc(v1))
    ready_at(plane, 1)
    ksvc = plane.get("services", f"{NAME}-predictor")
    ports = ksvc["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert ports == [{"name": "h2c", "containerPort": 8081, "protocol": "TCP"}]

    x, _ = iris()
    rows = x[::50].astype(np.float32)
    old_model, _ = train_torch_mlp(tmp_path / "scratch-v1")  # the same seed: v1's weights
    new_model, _ = train_torch_mlp(tmp_path / "v2", width=32)
    with torch.no_grad():
        old = old_model(torch.from_numpy(rows)).numpy()
        new = new_model(torch.from_numpy(rows)).numpy()
    assert not np.allclose(old, new, atol=1e-3)

    first = drive("triton", plane, HOST, rows)
    assert first["model_ready"] and first["raw"] is True
    np.testing.assert_allclose(output(first), old, atol=1e-5)
    assert first["metadata"]["platform"]  # ModelMetadata answered through the gateway
    # bad requests: the runtime's codes and messages arrive through the gateway's h2c proxy
    assert first["errors"]["unknown_model"][0] == "StatusCode.NOT_FOUND"
    assert "nope" in first["errors"]["unknown_model"][1]
    assert first["errors"]["bad_width"][0] == "StatusCode.INVALID_ARGUMENT", first["errors"]

    # a canary: a new TorchScript model takes 50 %, the rolled-out revision keeps 50 % as `prev`
    apply(plane, tmp_path, isvc(tmp_path / "v2", canaryTrafficPercent=50))
    status = ready_at(plane, 2)["status"]
    traffic = {t["tag"]: t for t in status["components"]["predictor"]["traffic"]}
    latest, prev = traffic["latest"]["revisionName"], traffic["prev"]["revisionName"]
    assert latest != prev and traffic["latest"]["percent"] == traffic["prev"]["percent"] == 50

    before = requests(plane, [latest, prev])
    split = [drive(kind, plane, HOST, rows) for kind in ("triton", "kserve", "triton")]
    after = requests(plane, [latest, prev])
    served = {r: after[r] - before[r] for r in (latest, prev)}
    # Triton's client makes 9 RPCs, KServe's 6: every stream is a request of one revision
    assert sum(served.values()) == 9 + 6 + 9 and min(served.values()) > 0, served
    for answer in split:
        got = output(answer)
        assert np.allclose(got, old, atol=1e-5) or np.allclose(got, new, atol=1e-5)

    # each tag's host reaches its own revision only, with both clients
    for tag, revision, expected in (("latest", latest, new), ("prev", prev, old)):
        tagged_host = f"{tag}-{NAME}-predictor.default.localhost"
        assert traffic[tag]["url"] == f"http://{tagged_host}"
        before = requests(plane, [latest, prev])
        triton = drive("triton", plane, tagged_host, rows)
        kserve = drive("kserve", plane, tagged_host, rows)
        after = requests(plane, [latest, prev])
        assert {r: after[r] - before[r] for r in (latest, prev)} == {
            latest: 15 if revision == latest else 0,
            prev: 15 if revision == prev else 0,
        }
        np.testing.assert_allclose(output(triton), expected, atol=1e-5)
        np.testing.assert_allclose(output(kserve), expected, atol=1e-5)
        assert kserve["id"] == "req-2"
        assert kserve["errors"]["unknown_model"][0] == "NOT_FOUND"
        assert kserve["errors"]["bad_shape"][0] == "INVALID_ARGUMENT"
