"""Every way a model cannot be had, on a real plane: no such bucket, access denied, a corrupt
archive, a file of the wrong format. Each reaches the Revision (not Ready, the storage error or the
server's last words), the InferenceService (`PredictorReady` False, `modelStatus` FailedToLoad /
BlockedByFailedLoad with `lastFailureInfo`) and `knserve isvc describe`; and a bucket that appears
later is picked up by the initializer's next attempt, as a restarted init container would."""

# ruff: noqa: F811 - the fixtures imported below are redefined as test parameters

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from plane_fixtures import LocalPlane
from storage_fixtures import gcs_emulator, s3_server, serve_handler  # noqa: F401 - fixtures
from storage_plane_fixtures import (  # noqa: F401 - fixtures
    answers_as_the_model,
    apply,
    delete,
    iris,
    isvc,
    storage_plane,
    stores,
)

pytestmark = pytest.mark.slow


def failed(plane: LocalPlane, name: str) -> dict[str, Any]:
    """The InferenceService once its predictor failed, checked for KServe's model status."""

    def predictor_failed(obj: dict[str, Any]) -> bool:
        conditions = (obj.get("status") or {}).get("conditions") or []
        return any(c["type"] == "PredictorReady" and c["status"] == "False" for c in conditions)

    obj = plane.wait_for("inferenceservices", name, predictor_failed, timeout=180)
    model = obj["status"]["modelStatus"]
    assert model["states"]["targetModelState"] == "FailedToLoad"
    assert model["transitionStatus"] == "BlockedByFailedLoad"
    assert model["lastFailureInfo"]["reason"] == "ModelLoadFailed"
    assert model["lastFailureInfo"]["exitCode"] == 1
    return obj


def predictor_ready(obj: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "PredictorReady")


def described(plane: LocalPlane, name: str) -> str:
    result = plane.knserve("isvc", "describe", name)
    assert result.returncode == 0, result.stderr
    return result.stdout


def assert_reported(plane: LocalPlane, name: str, message: str) -> None:
    """`message` is in the model's lastFailureInfo (the initializer's one line, or the model
    server's last log lines), in PredictorReady and the Revision's Ready, and `describe` prints
    it."""
    obj = failed(plane, name)
    assert message in obj["status"]["modelStatus"]["lastFailureInfo"]["message"]
    assert message in predictor_ready(obj)["message"]
    revision = obj["status"]["modelStatus"]["lastFailureInfo"]["location"]
    rev = plane.get("revisions", revision)
    ready = next(c for c in rev["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and message in ready["message"]
    out = described(plane, name)
    assert "FailedToLoad" in out and "ModelLoadFailed, exit code 1" in out
    assert message in out


def test_no_such_bucket_and_then_the_bucket_appears(
    storage_plane: LocalPlane, stores: dict[str, Any], iris: tuple[Any, bytes], tmp_path: Path
) -> None:
    apply(storage_plane, tmp_path, isvc("late", "gs://late-bucket/iris"), "--no-wait")
    info = failed(storage_plane, "late")["status"]["modelStatus"]["lastFailureInfo"]
    assert info["message"].startswith("storage-initializer: ")  # its one line, nothing more
    assert_reported(
        storage_plane,
        "late",
        "storage-initializer: cannot fetch gs://late-bucket/iris from Google Cloud Storage: "
        f"bucket 'late-bucket' does not exist at {stores['gcs']}",
    )
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    gcs = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=stores["gcs"]),
    )
    gcs.create_bucket("late-bucket").blob("iris/model.joblib").upload_from_string(iris[1])
    # the initializer's next attempt (its back-off doubles from 0.5 s) finds it
    storage_plane.wait_ready("inferenceservices", "late", timeout=180)
    answers_as_the_model(storage_plane, "late", iris[0])
    delete(storage_plane, "late")


def test_access_denied(storage_plane: LocalPlane, stores: dict[str, Any], tmp_path: Path) -> None:
    annotations = {"serving.kserve.io/s3-endpoint": stores["s3"].endpoint}
    apply(storage_plane, tmp_path, isvc("denied", "s3://secret/iris", **annotations), "--no-wait")
    assert_reported(
        storage_plane,
        "denied",
        "storage-initializer: cannot fetch s3://secret/iris from S3: access denied to bucket "
        "'secret'",
    )
    delete(storage_plane, "denied")


class _Corrupt(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"\x1f\x8b\x08\x00 this is no gzip stream"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_corrupt_archive(storage_plane: LocalPlane, tmp_path: Path) -> None:
    with serve_handler(_Corrupt) as url:
        uri = f"{url}/model.tar.gz"
        apply(storage_plane, tmp_path, isvc("corrupt", uri), "--no-wait")
        assert_reported(storage_plane, "corrupt", f"storage-initializer: cannot fetch {uri}")
        delete(storage_plane, "corrupt")


def test_a_corrupt_model_file(
    storage_plane: LocalPlane, stores: dict[str, Any], tmp_path: Path
) -> None:
    # fetched fine; the model server cannot load it and says so as its last words
    annotations = {"serving.kserve.io/s3-endpoint": stores["s3"].endpoint}
    obj = isvc("corrupt-file", "s3://models/not-sklearn", **annotations)
    apply(storage_plane, tmp_path, obj, "--no-wait")
    assert_reported(storage_plane, "corrupt-file", "model corrupt-file failed to load")
    delete(storage_plane, "corrupt-file")


def test_a_model_of_another_format(storage_plane: LocalPlane, tmp_path: Path) -> None:
    obj = isvc("wrong-format", "pvc://models/iris", fmt="xgboost")  # a sklearn model.joblib
    apply(storage_plane, tmp_path, obj, "--no-wait")
    assert_reported(storage_plane, "wrong-format", "model wrong-format failed to load")
    delete(storage_plane, "wrong-format")
