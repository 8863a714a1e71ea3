"""Model storage on a real plane: KServe's quick-start YAML against the GCS emulator, S3 through
moto with KServe's annotations, an HTTP archive and a pvc mapping each serve the model trained
here, answering as the model itself does; `--wait` shows the fetch's progress.

One plane serves the module, each test its own InferenceService (tests/support/
storage_plane_fixtures.py)."""

# ruff: noqa: F811 - the fixtures imported below are redefined as test parameters

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import yaml
from plane_fixtures import LocalPlane
from storage_fixtures import gcs_emulator, s3_server, serve_handler, tar_gz, zip_bytes  # noqa: F401
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

QUICK_START = Path(__file__).parents[2] / "knative" / "deploy" / "sklearn-iris.yaml"


def test_kserves_quick_start_yaml_serves_from_the_gcs_emulator_unchanged(
    storage_plane: LocalPlane, iris: tuple[Any, bytes]
) -> None:
    result = storage_plane.knserve("apply", "-f", str(QUICK_START))
    assert result.returncode == 0, result.stderr
    ready = storage_plane.wait_ready("inferenceservices", "sklearn-iris", timeout=180)
    answers_as_the_model(storage_plane, "sklearn-iris", iris[0])
    assert ready["status"]["modelStatus"]["states"]["targetModelState"] == "Loaded"
    ksvc = storage_plane.get("ksvc", "sklearn-iris-predictor")
    template = ksvc["spec"]["template"]
    assert template["metadata"]["annotations"][
        "internal.serving.kserve.io/storage-initializer-sourceuri"
    ] == ("gs://kfserving-examples/models/sklearn/1.0/model")
    assert "--model_dir=/mnt/models" in template["spec"]["containers"][0]["args"]
    assert not any("storage_uri" in a for a in template["spec"]["containers"][0]["args"])
    delete(storage_plane, "sklearn-iris")


def test_a_serving_runtime_with_kserves_stock_args_gets_the_model_at_mnt_models(
    storage_plane: LocalPlane, iris: tuple[Any, bytes], tmp_path: Path
) -> None:
    # KServe's kserve-sklearnserver container as its stock YAML has it, as a ServingRuntime
    runtime = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": "stock-sklearnserver", "namespace": "default"},
        "spec": {
            "supportedModelFormats": [{"name": "sklearn", "version": "1", "autoSelect": False}],
            "protocolVersions": ["v1", "v2"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "kserve/sklearnserver:latest",
                    "args": [
                        "--model_name={{.Name}}",
                        "--model_dir=/mnt/models",
                        "--http_port=8080",
                    ],
                }
            ],
        },
    }
    obj = isvc("iris-stock", "pvc://models/iris")
    obj["spec"]["predictor"]["model"]["runtime"] = "stock-sklearnserver"
    path = tmp_path / "stock.yaml"
    path.write_text(yaml.safe_dump_all([runtime, obj]))
    result = storage_plane.knserve("apply", "-f", str(path))
    assert result.returncode == 0, result.stderr
    storage_plane.wait_ready("inferenceservices", "iris-stock", timeout=180)
    answers_as_the_model(storage_plane, "iris-stock", iris[0])
    args = storage_plane.get("ksvc", "iris-stock-predictor")["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    assert args == ["--model_name=iris-stock", "--model_dir=/mnt/models", "--http_port=8080"]
    delete(storage_plane, "iris-stock")


def test_s3_through_moto_with_kserves_endpoint_annotations(
    storage_plane: LocalPlane, stores: dict[str, Any], iris: tuple[Any, bytes], tmp_path: Path
) -> None:
    endpoint = stores["s3"].endpoint  # http://127.0.0.1:PORT: the annotation's scheme decides
    obj = isvc(
        "iris-s3",
        "s3://models/iris",
        **{"serving.kserve.io/s3-endpoint": endpoint, "serving.kserve.io/s3-region": "us-east-1"},
    )
    apply(storage_plane, tmp_path, obj)
    answers_as_the_model(storage_plane, "iris-s3", iris[0])
    delete(storage_plane, "iris-s3")


class _Slow(BaseHTTPRequestHandler):
    """Archives by name; `iris.tar.gz` sends its first half, then waits for `release`."""

    files: dict[str, bytes] = {}
    release = threading.Event()

    def do_GET(self) -> None:
        body = self.files.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        half = len(body) // 2 if self.path == "/iris.tar.gz" else len(body)
        self.wfile.write(body[:half])
        self.wfile.flush()
        if half < len(body):
            self.release.wait(120)
            self.wfile.write(body[half:])

    def log_message(self, *args: Any) -> None:
        pass


def test_http_archives_serve_and_wait_shows_the_fetch_progress(
    storage_plane: LocalPlane, iris: tuple[Any, bytes], tmp_path: Path
) -> None:
    import random

    padding = random.Random(0).randbytes(3 << 20)  # enough to watch it arrive in MiB
    _Slow.files = {
        "iris.tar.gz": tar_gz({"iris/model.joblib": iris[1], "iris/padding.bin": padding}),
        "iris.zip": zip_bytes({"model.joblib": iris[1]}),
    }
    _Slow.release = threading.Event()
    with serve_handler(_Slow) as url:
        path = tmp_path / "iris-tgz.yaml"
        path.write_text(yaml.safe_dump(isvc("iris-tgz", f"{url}/iris.tar.gz")))
        cli = subprocess.Popen(
            [sys.executable, "-m", "knserve.knative.cli", "isvc", "apply", "-f", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "KNSERVE_API": storage_plane.api},
        )
        try:
            assert cli.stderr is not None
            progress = ""
            for line in cli.stderr:  # the CLI's own lines, each as it comes
                if "storage-initializer: fetching" in line and "MiB," in line:
                    progress = line
                    break
            assert progress, "no progress line"
            # Halfway: the isvc says how far it got, as --wait printed it.
            described = storage_plane.knserve("isvc", "describe", "iris-tgz").stdout
            assert f"storage-initializer: fetching {url}/iris.tar.gz (" in described
            _Slow.release.set()
            out, err = cli.communicate(timeout=300)
        finally:
            _Slow.release.set()
            if cli.poll() is None:
                cli.kill()
                cli.wait()
        assert cli.returncode == 0, err + storage_plane.log()
        assert "is ready at URL" in out
        answers_as_the_model(storage_plane, "iris-tgz", iris[0])
        apply(storage_plane, tmp_path, isvc("iris-zip", f"{url}/iris.zip"))
        answers_as_the_model(storage_plane, "iris-zip", iris[0])
    delete(storage_plane, "iris-tgz")
    delete(storage_plane, "iris-zip")


def test_a_pvc_claim_maps_to_the_folder_up_was_given(
    storage_plane: LocalPlane, iris: tuple[Any, bytes], tmp_path: Path
) -> None:
    apply(storage_plane, tmp_path, isvc("iris-pvc", "pvc://models/iris"))
    answers_as_the_model(storage_plane, "iris-pvc", iris[0])
    delete(storage_plane, "iris-pvc")


def test_up_refuses_a_pvc_mapping_it_cannot_use(tmp_path: Path) -> None:
    for flag, why in (
        ("models", "write CLAIM=DIR"),
        (f"models={tmp_path / 'absent'}", "is not a folder"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "knserve.knative.cli", "up", "--pvc", flag],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        assert why in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
