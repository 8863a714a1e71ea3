"""`python -m knserve.runtime` as a real process: flags, KServe spellings, $PORT, the example."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from model_fixtures import train_sklearn_iris

IRIS_ROW = {"instances": [[6.8, 2.8, 4.8, 1.4]]}


@pytest.mark.slow
def test_kserve_spellings_and_an_explicit_format(tmp_path: Path, spawn, port: int) -> None:  # type: ignore[no-untyped-def]
    model, _ = train_sklearn_iris(tmp_path)
    proc = spawn(
        [
            sys.executable,
            "-m",
            "knserve.runtime",
            "--model_name",
            "iris",
            "--model_dir",
            f"file://{tmp_path}",
            "--model_format",
            "sklearn",
            "--http_port",
            str(port),
            "--workers",
            "1",
        ]
    )  # --workers: a KServe flag we ignore
    proc.wait_http(f"http://127.0.0.1:{port}/v1/models/iris")
    response = httpx.post(f"http://127.0.0.1:{port}/v1/models/iris:predict", json=IRIS_ROW)
    assert response.json() == {"predictions": model.predict(IRIS_ROW["instances"]).tolist()}


@pytest.mark.slow
def test_port_comes_from_the_environment_as_knative_sets_it(
    tmp_path: Path, spawn, port: int
) -> None:  # type: ignore[no-untyped-def]
    train_sklearn_iris(tmp_path)
    proc = spawn(
        [
            sys.executable,
            "-m",
            "knserve.runtime",
            "--model-name",
            "iris",
            "--model-dir",
            str(tmp_path),
        ],
        env={"PORT": str(port)},
    )
    proc.wait_http(f"http://127.0.0.1:{port}/v2/models/iris/ready")


@pytest.mark.slow
def test_a_model_that_fails_to_load_at_start_exits_1_with_the_reason_as_its_last_line(
    tmp_path: Path, spawn, port: int
) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "model.onnx").write_bytes(b"garbage")
    proc = spawn(
        [
            sys.executable,
            "-m",
            "knserve.runtime",
            "--model-name",
            "bad",
            "--model-dir",
            str(tmp_path),
            "--http-port",
            str(port),
            "--log-level",
            "info",
        ]
    )
    assert proc.proc.wait(60) == 1, proc.log()
    last = proc.log().rstrip().splitlines()[-1]  # a container's last words: its termination message
    assert last.startswith("knserve.runtime: model bad failed to load: ")
    assert "model.onnx" in last


def test_missing_arguments_are_explained() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "knserve.runtime"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "--model-name and --model-dir, --model-repository, or --kserve-model" in result.stderr


@pytest.mark.slow
def test_the_example_serves_iris_and_prints_curl(tmp_path: Path, spawn, port: int) -> None:  # type: ignore[no-untyped-def]
    proc = spawn(
        [
            sys.executable,
            "-m",
            "knserve.runtime.example",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path),
        ]
    )
    proc.wait_http(f"http://127.0.0.1:{port}/v2/health/ready")
    response = httpx.post(f"http://127.0.0.1:{port}/v1/models/iris:predict", json=IRIS_ROW)
    assert response.json() == {"predictions": [1]}
    assert f"curl -s http://127.0.0.1:{port}/v1/models/iris:predict" in proc.log()
