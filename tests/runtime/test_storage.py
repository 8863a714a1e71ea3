"""Model URIs: local paths, file:// and http:// archives served by a real loopback server."""

from __future__ import annotations

import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from model_fixtures import train_sklearn_iris

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
    handler = type("Handler", (Files,), {"routes": routes})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield routes, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


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
    with pytest.raises(StorageError, match=r"downloading .*/missing.tar.gz failed: HTTP 404"):
        resolve_model_uri(f"{base}/missing.tar.gz", cache_dir=tmp_path)
    assert [p for p in tmp_path.iterdir()] == []  # nothing half-written is left


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
        ("s3://bucket/model", "unsupported storage URI scheme 's3'"),
        ("/no/such/dir", "does not exist"),
    ],
)
def test_unsupported_or_missing_uris_say_what_is_supported(uri: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        resolve_model_uri(uri)


def test_an_unreachable_server_is_reported(tmp_path: Path) -> None:
    from net_fixtures import free_port

    with pytest.raises(StorageError, match="failed"):
        resolve_model_uri(f"http://127.0.0.1:{free_port()}/m.tar.gz", cache_dir=tmp_path)
