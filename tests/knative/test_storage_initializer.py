"""The plane's storage initializer: /mnt/models mapped, KServe's S3 annotations, and the real
initializer process fetching an archive from a loopback HTTP server once per revision, with its
progress and its failures."""

from __future__ import annotations

import asyncio
import random
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from storage_fixtures import serve_handler, tar_gz

from knserve.knative.supervisor.storage_initializer import (
    Fetching,
    InitFailure,
    StorageInitializer,
    mounted_container,
    s3_env,
    substitute,
)

SOURCE = "internal.serving.kserve.io/storage-initializer-sourceuri"


def test_mnt_models_is_replaced_only_as_a_whole_path() -> None:
    folder = Path("/cache/abc")
    assert substitute("--model_dir=/mnt/models", folder) == "--model_dir=/cache/abc"
    assert substitute("/mnt/models/model.bin", folder) == "/cache/abc/model.bin"
    assert substitute("a:/mnt/models,b", folder) == "a:/cache/abc,b"
    for untouched in ("/mnt/models2", "/x/mnt/models", "/mnt/models.bak", "mnt/models"):
        assert substitute(untouched, folder) == untouched


def test_the_container_gets_the_folder_in_command_args_env_and_working_dir() -> None:
    container = {
        "name": "kserve-container",
        "command": ["serve", "/mnt/models/run.py"],
        "args": ["--model_dir=/mnt/models", "--http_port=8080"],
        "env": [
            {"name": "MLSERVER_MODEL_URI", "value": "/mnt/models"},
            {"name": "STORAGE_URI", "value": "s3://bucket/model"},
            {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ],
        "workingDir": "/mnt/models",
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready"}},
    }
    out = mounted_container(container, Path("/m"))
    assert out["command"] == ["serve", "/m/run.py"]
    assert out["args"] == ["--model_dir=/m", "--http_port=8080"]
    assert out["env"][:2] == [
        {"name": "MLSERVER_MODEL_URI", "value": "/m"},
        {"name": "STORAGE_URI", "value": "/m"},  # as KServe's webhook sets it to /mnt/models
    ]
    assert out["env"][2] == container["env"][2]
    assert out["workingDir"] == "/m"
    assert out["readinessProbe"] == container["readinessProbe"]
    assert container["args"][0] == "--model_dir=/mnt/models"  # the spec itself is not changed


def test_kserves_s3_annotations_become_its_environment() -> None:
    # BuildS3EnvVars: a scheme in the endpoint decides S3_USE_HTTPS and AWS_ENDPOINT_URL
    assert s3_env({"serving.kserve.io/s3-endpoint": "http://127.0.0.1:9000"}) == {
        "S3_ENDPOINT": "127.0.0.1:9000",
        "S3_USE_HTTPS": "0",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
    }
    assert s3_env(
        {
            "serving.kserve.io/s3-endpoint": "minio.local:9000",
            "serving.kserve.io/s3-usehttps": "0",
            "serving.kserve.io/s3-region": "eu-west-1",
            "serving.kserve.io/s3-verifyssl": "0",
            "unrelated": "x",
        }
    ) == {
        "S3_ENDPOINT": "minio.local:9000",
        "S3_USE_HTTPS": "0",
        "AWS_ENDPOINT_URL": "http://minio.local:9000",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "S3_VERIFY_SSL": "0",
    }
    assert s3_env({"serving.kserve.io/s3-endpoint": "s3.example.com"})["AWS_ENDPOINT_URL"] == (
        "https://s3.example.com"
    )


def test_progress_reads_as_a_condition_message() -> None:
    mib = 1 << 20
    assert Fetching("gs://b/m", 3 * mib, 8 * mib).message() == (
        "storage-initializer: fetching gs://b/m (3.0 of 8.0 MiB, 37%)"
    )
    assert Fetching("https://h/m.zip", mib // 2).message() == (
        "storage-initializer: fetching https://h/m.zip (0.5 MiB)"
    )


class _Archive(BaseHTTPRequestHandler):
    """Serves `body` at /model.tar.gz (counting requests); the second half waits for `release`."""

    body = b""
    requests = 0
    release = threading.Event()

    def do_GET(self) -> None:
        type(self).requests += 1
        if self.path != "/model.tar.gz":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        half = len(self.body) // 2
        self.wfile.write(self.body[:half])
        self.wfile.flush()
        self.release.wait(60)
        self.wfile.write(self.body[half:])

    def log_message(self, *args: Any) -> None:
        pass


def _env(tmp_path: Path) -> dict[str, str]:
    import os

    return {**os.environ, "KNSERVE_MODEL_CACHE": str(tmp_path / "cache")}


def test_a_revision_fetches_once_and_reports_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = random.Random(0).randbytes(2 << 20)  # 2 MiB that do not compress away
    monkeypatch.setattr(_Archive, "body", tar_gz({"model/weights.bin": payload}))
    monkeypatch.setattr(_Archive, "requests", 0)
    monkeypatch.setattr(_Archive, "release", threading.Event())
    container = {"args": ["--model_dir=/mnt/models"]}

    async def scenario(url: str) -> tuple[list[dict[str, Any]], list[Fetching]]:
        seen: list[Fetching] = []
        halfway = asyncio.Event()

        def on_progress(namespace: str, revision: str) -> None:
            fetching = init.progress(namespace, revision)
            if fetching is not None:
                seen.append(fetching)
                if fetching.total and 0 < fetching.done < fetching.total:
                    halfway.set()

        init = StorageInitializer(tmp_path / "logs", on_progress)
        annotations = {SOURCE: f"{url}/model.tar.gz"}
        replicas = [
            asyncio.create_task(init.container_for("ns", "r-1", container, annotations, env))
            for env in (_env(tmp_path), _env(tmp_path))
        ]
        await asyncio.wait_for(halfway.wait(), 60)
        _Archive.release.set()
        out = list(await asyncio.gather(*replicas))
        out.append(await init.container_for("ns", "r-1", container, annotations, _env(tmp_path)))
        assert init.progress("ns", "r-1") is None
        return out, seen

    with serve_handler(_Archive) as url:
        containers, seen = asyncio.run(scenario(url))
    assert _Archive.requests == 1  # two replicas starting together and a later one: one fetch
    folder = Path(containers[0]["args"][0].removeprefix("--model_dir="))
    assert all(c == containers[0] for c in containers)
    assert folder.is_relative_to(tmp_path / "cache")
    assert (folder / "weights.bin").read_bytes() == payload
    halfway = [f for f in seen if f.total and 0 < f.done < f.total]
    assert halfway and halfway[0].uri.endswith("/model.tar.gz")


def test_a_failed_fetch_says_why_and_the_next_attempt_fetches_again(tmp_path: Path) -> None:
    async def scenario(url: str) -> InitFailure:
        init = StorageInitializer(tmp_path / "logs", lambda ns, rev: None)
        annotations = {SOURCE: f"{url}/missing.tar.gz"}
        with pytest.raises(InitFailure) as first:
            await init.container_for("ns", "r-1", {}, annotations, _env(tmp_path))
        with pytest.raises(InitFailure):
            await init.container_for("ns", "r-1", {}, annotations, _env(tmp_path))
        return first.value

    _Archive.requests = 0
    with serve_handler(_Archive) as url:
        failure = asyncio.run(scenario(url))
    assert _Archive.requests == 2  # a failure is not remembered: each restart tries again
    assert failure.exit_code == 1
    assert failure.message == (
        f"storage-initializer: cannot fetch {url}/missing.tar.gz from HTTP: HTTP 404; "
        "check the path in storageUri"
    )
    log = (tmp_path / "logs" / "ns_r-1_storage-initializer.log").read_text()
    assert "cannot fetch" in log


def test_a_revision_without_a_storage_uri_starts_as_it_is(tmp_path: Path) -> None:
    init = StorageInitializer(tmp_path, lambda ns, rev: None)
    container = {"args": ["--model_dir=/mnt/models"]}
    out = asyncio.run(init.container_for("ns", "r", container, {}, {}))
    assert out == container


def test_a_local_path_is_used_in_place_and_a_missing_one_says_so(tmp_path: Path) -> None:
    init = StorageInitializer(tmp_path / "logs", lambda ns, rev: None)
    container = {"args": ["--model_dir=/mnt/models"]}
    out = asyncio.run(init.container_for("ns", "r", container, {SOURCE: f"file://{tmp_path}"}, {}))
    assert out["args"] == [f"--model_dir={tmp_path}"]
    with pytest.raises(InitFailure) as missing:
        asyncio.run(init.container_for("ns", "r2", container, {SOURCE: "/nowhere/model"}, {}))
    assert missing.value.message == (
        "storage-initializer: cannot fetch /nowhere/model from the local file system: "
        "/nowhere/model does not exist; check the path in storageUri"
    )
