"""Model URIs: local paths, file://, pvc:// mappings and http:// archives served by a real loopback
server; the cache's one-download-per-URI and its atomicity, with real processes."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from model_fixtures import train_sklearn_iris
from net_fixtures import eventually, model_server
from storage_fixtures import serve_handler, tar_gz, zip_bytes

from knserve.runtime.formats import detect_format
from knserve.runtime.storage import StorageError, resolve_model_uri


class Files(BaseHTTPRequestHandler):
    routes: dict[str, bytes] = {}

    def do_GET(self) -> None:
        body = self.routes.get(self.path)
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def file_server() -> Iterator[tuple[dict[str, bytes], str]]:
    routes: dict[str, bytes] = {}
    with serve_handler(type("Handler", (Files,), {"routes": routes})) as base:
        yield routes, base


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("m")
    train_sklearn_iris(folder)
    return (folder / "model.joblib").read_bytes()


def test_local_path_and_file_uri_are_used_in_place(tmp_path: Path, model_bytes: bytes) -> None:
    (tmp_path / "model.joblib").write_bytes(model_bytes)
    assert resolve_model_uri(str(tmp_path)) == tmp_path
    assert resolve_model_uri(f"file://{tmp_path}") == tmp_path
    assert resolve_model_uri(f"file://{tmp_path}/model.joblib") == tmp_path


@pytest.mark.parametrize(
    ("name", "pack"),
    [("model.tar.gz", tar_gz), ("model.tgz", tar_gz), ("model.zip", zip_bytes)],
)
def test_http_archives_are_downloaded_unpacked_and_cached(
    tmp_path: Path, file_server: tuple[dict[str, bytes], str], model_bytes: bytes, name: str, pack
) -> None:
    routes, base = file_server
    routes[f"/{name}"] = pack({"iris/model.joblib": model_bytes})
    folder = resolve_model_uri(f"{base}/{name}", cache_dir=tmp_path)
    assert (folder / "model.joblib").read_bytes() == model_bytes  # one top folder is flattened
    assert detect_format(folder) == "sklearn"
    del routes[f"/{name}"]  # the second resolve must come from the cache
    assert resolve_model_uri(f"{base}/{name}", cache_dir=tmp_path) == folder


def test_a_plain_http_file_is_kept_under_its_name(
    tmp_path: Path, file_server: tuple[dict[str, bytes], str], model_bytes: bytes
) -> None:
    routes, base = file_server
    routes["/models/model.joblib"] = model_bytes
    folder = resolve_model_uri(f"{base}/models/model.joblib", cache_dir=tmp_path)
    assert (folder / "model.joblib").read_bytes() == model_bytes


def test_http_404_is_reported_with_the_uri(tmp_path: Path, file_server: tuple[dict, str]) -> None:
    _, base = file_server
    with pytest.raises(
        StorageError,
        match=r"cannot fetch http://.*/missing.tar.gz from HTTP: "
        r"HTTP 404; check the path in storageUri$",
    ):
        resolve_model_uri(f"{base}/missing.tar.gz", cache_dir=tmp_path)
    assert [p for p in tmp_path.iterdir() if p.suffix != ".lock"] == []  # nothing half-written


def test_archive_members_outside_the_folder_are_refused(
    tmp_path: Path, file_server: tuple[dict[str, bytes], str]
) -> None:
    routes, base = file_server
    routes["/evil.tar.gz"] = tar_gz({"../../escape.txt": b"x"})
    with pytest.raises(StorageError, match="outside the model folder"):
        resolve_model_uri(f"{base}/evil.tar.gz", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "escape.txt").exists()


def test_a_corrupt_archive_is_reported(tmp_path: Path, file_server: tuple[dict, str]) -> None:
    routes, base = file_server
    routes["/broken.zip"] = b"not a zip"
    with pytest.raises(StorageError, match="not a readable zip archive"):
        resolve_model_uri(f"{base}/broken.zip", cache_dir=tmp_path)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (
            "ftp://host/model",
            "unsupported storage URI scheme 'ftp' in 'ftp://host/model'; use a "
            "local path, file://, pvc://, s3://, gs://, hf://, http:// or https://",
        ),
        (
            "/no/such/dir",
            "cannot fetch /no/such/dir from the local file system: /no/such/dir does "
            "not exist; check the path in storageUri",
        ),
        (
            "oci://registry/model:1",
            "cannot fetch oci://registry/model:1 from an OCI registry: OCI "
            "model images \\(KServe modelcars\\) cannot be pulled on the local plane",
        ),
    ],
)
def test_unsupported_or_missing_uris_say_what_is_supported(uri: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        resolve_model_uri(uri)


def test_an_unreachable_server_is_reported(tmp_path: Path) -> None:
    from net_fixtures import free_port

    with pytest.raises(
        StorageError,
        match=r"ConnectError: .*; check the host and port in "
        "storageUri and that it is reachable",
    ):
        resolve_model_uri(f"http://127.0.0.1:{free_port()}/m.tar.gz", cache_dir=tmp_path)


def test_pvc_claims_map_to_folders_by_setting(
    tmp_path: Path, model_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "claims" / "models-pvc" / "iris").mkdir(parents=True)
    (tmp_path / "claims" / "models-pvc" / "iris" / "model.joblib").write_bytes(model_bytes)
    (tmp_path / "own" / "iris").mkdir(parents=True)
    monkeypatch.delenv("KNSERVE_PVC_MODELS_PVC", raising=False)
    monkeypatch.setenv("KNSERVE_PVC_ROOT", str(tmp_path / "claims"))
    folder = resolve_model_uri("pvc://models-pvc/iris")
    assert folder == tmp_path / "claims" / "models-pvc" / "iris"  # in place, as a mount is
    assert resolve_model_uri("pvc://models-pvc/iris/model.joblib") == folder
    monkeypatch.setenv("KNSERVE_PVC_MODELS_PVC", str(tmp_path / "own"))  # the claim's own wins
    assert resolve_model_uri("pvc://models-pvc/iris") == tmp_path / "own" / "iris"


@pytest.mark.parametrize(
    ("env", "uri", "message"),
    [
        (
            {},
            "pvc://models-pvc/iris",
            "cannot fetch pvc://models-pvc/iris from a persistent volume claim: claim 'models-pvc' "
            "is not mapped to a local folder; set KNSERVE_PVC_MODELS_PVC=FOLDER, or KNSERVE_PVC_ROOT "
            "to a folder holding one folder per claim",
        ),
        (
            {"KNSERVE_PVC_ROOT": "{tmp}"},
            "pvc://models-pvc/nothing",
            "{tmp}/models-pvc/nothing does not exist \\(claim 'models-pvc' is {tmp}/models-pvc, from "
            "KNSERVE_PVC_ROOT\\); check the path in storageUri and the mapping",
        ),
        ({"KNSERVE_PVC_ROOT": "{tmp}"}, "pvc://models-pvc/../other", "leaves the claim's folder"),
    ],
)
def test_pvc_failures_name_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], uri: str, message: str
) -> None:
    (tmp_path / "models-pvc").mkdir()
    for name in ("KNSERVE_PVC_ROOT", "KNSERVE_PVC_MODELS_PVC"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    with pytest.raises(StorageError, match=message.format(tmp=tmp_path)):
        resolve_model_uri(uri)


class Gated(BaseHTTPRequestHandler):
    """Serves `body` at any path, counting requests; sends the first `hold_after` bytes, then
    holds the rest until the test sets `release` (bounded)."""

    body = b""
    hold_after = 0
    requests: list[str] = []
    held: threading.Event
    release: threading.Event

    def do_GET(self) -> None:
        self.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body[: self.hold_after])
        self.wfile.flush()
        self.held.set()
        self.release.wait(30)
        try:
            self.wfile.write(self.body[self.hold_after :])
        except OSError:  # the client was killed
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gated_server() -> Iterator[tuple[type[Gated], str]]:
    handler = type(
        "Handler",
        (Gated,),
        {"requests": [], "held": threading.Event(), "release": threading.Event()},
    )
    with serve_handler(handler) as base:
        yield handler, base
        handler.release.set()  # before the server stops: a held handler thread ends


RESOLVE = """
import logging, sys
from pathlib import Path
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
from knserve.runtime.storage import resolve_model_uri
print(resolve_model_uri(sys.argv[1], cache_dir=Path(sys.argv[2])), flush=True)
"""


def start_held_fetch(spawn, handler: type[Gated], uri: str, cache: Path):  # type: ignore[no-untyped-def]
    """A process resolving `uri`, once the server holds its download mid-body."""
    proc = spawn([sys.executable, "-c", RESOLVE, uri, str(cache)])
    assert handler.held.wait(60), proc.log()
    return proc


def test_two_processes_starting_on_one_uri_download_it_once(
    tmp_path: Path,
    gated_server: tuple[type[Gated], str],
    model_bytes: bytes,
    spawn,  # type: ignore[no-untyped-def]
) -> None:
    handler, base = gated_server
    handler.body = model_bytes
    uri, cache = f"{base}/shared/model.joblib", tmp_path / "cache"
    first = start_held_fetch(spawn, handler, uri, cache)
    second = spawn([sys.executable, "-c", RESOLVE, uri, str(cache)])
    eventually(
        lambda: "waiting for another process fetching" in second.log(),
        timeout=60,
        failure=lambda: second.log(),
    )
    handler.release.set()
    assert first.proc.wait(60) == 0, first.log()
    assert second.proc.wait(60) == 0, second.log()
    folders = {p.log().rstrip().splitlines()[-1] for p in (first, second)}
    assert len(folders) == 1 and handler.requests == ["/shared/model.joblib"]
    assert (Path(folders.pop()) / "model.joblib").read_bytes() == model_bytes


def test_a_killed_download_leaves_nothing_a_later_start_trusts(
    tmp_path: Path,
    gated_server: tuple[type[Gated], str],
    model_bytes: bytes,
    spawn,  # type: ignore[no-untyped-def]
) -> None:
    handler, base = gated_server
    handler.body, handler.hold_after = model_bytes, len(model_bytes) // 2
    uri, cache = f"{base}/killed/model.joblib", tmp_path / "cache"
    proc = start_held_fetch(spawn, handler, uri, cache)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-body, as an OOM kill or a node loss would
    proc.proc.wait(30)
    partial = [p for p in cache.iterdir() if ".partial-" in p.name]
    assert partial and not [p for p in cache.iterdir() if p.is_dir() and p not in partial]
    handler.hold_after = len(model_bytes)  # the next start gets the whole file at once
    folder = resolve_model_uri(uri, cache_dir=cache)
    assert (folder / "model.joblib").read_bytes() == model_bytes
    assert [p for p in cache.iterdir() if ".partial-" in p.name] == []  # the stale one is gone


def test_a_large_download_logs_its_progress(
    tmp_path: Path,
    file_server: tuple[dict[str, bytes], str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from knserve.runtime.storage import cache

    monkeypatch.setattr(cache, "PROGRESS_STEP", 1 << 20)
    routes, base = file_server
    routes["/big.bin"] = b"\0" * ((3 << 20) + 10)
    with caplog.at_level(logging.INFO, logger="knserve.runtime.storage"):
        resolve_model_uri(f"{base}/big.bin", cache_dir=tmp_path)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("fetching")]
    assert lines == [f"fetching {base}/big.bin: {n} MiB of 3 MiB" for n in (1, 2, 3)]


@pytest.mark.slow
def test_without_a_storage_initializer_mnt_models_falls_back_to_storage_uri(
    tmp_path: Path,
    sklearn_iris_dir: Path,
    spawn,  # type: ignore[no-untyped-def]
    port: int,
) -> None:
    # Knative without KServe's webhook: the args name /mnt/models, which nothing filled
    assert not Path("/mnt/models").exists()
    env = {"STORAGE_URI": f"file://{sklearn_iris_dir}"}
    proc = model_server(spawn, "iris", "/mnt/models", port, env)
    proc.wait_http(f"http://127.0.0.1:{port}/v2/models/iris/ready", timeout=90)
