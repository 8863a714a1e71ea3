"""hf:// model URIs through huggingface_hub's real `snapshot_download`, pointed by `HF_ENDPOINT` at
a small loopback server that speaks the part of the hub's API it uses: the revision lookup, the
recursive tree listing and `resolve/{commit}/{file}` downloads (HEAD and GET)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
from model_fixtures import train_sklearn_iris
from storage_fixtures import serve_handler

from knserve.runtime.formats import detect_format
from knserve.runtime.storage import StorageError, resolve_model_uri

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Hub(BaseHTTPRequestHandler):
    """One public repository `acme/iris` at `main` = COMMIT, and `acme/private` needing a token."""

    files: dict[str, bytes] = {}
    token = "hf_test_token"
    seen_auth: list[str] = []

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    def _answer(self, head: bool) -> None:
        path = unquote(urlparse(self.path).path)
        self.seen_auth.append(self.headers.get("authorization", ""))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"]:
            repo, rest = "/".join(parts[2:4]), parts[4:]
            if not self._allowed(repo):
                return self._error(404, "RepoNotFound")
            if rest[:1] == ["revision"]:
                if rest[1] not in ("main", COMMIT):
                    return self._error(404, "RevisionNotFound")
                siblings = [{"rfilename": name} for name in self.files]
                return self._json({"id": repo, "sha": COMMIT, "siblings": siblings}, head)
            if rest[:1] == ["tree"]:
                tree = [
                    {
                        "type": "file",
                        "path": name,
                        "size": len(body),
                        "oid": hashlib.sha1(body).hexdigest(),
                    }
                    for name, body in self.files.items()
                ]
                return self._json(tree, head)
        if len(parts) > 4 and parts[2] == "resolve":
            repo, name = "/".join(parts[:2]), "/".join(parts[4:])
            if not self._allowed(repo):
                return self._error(404, "RepoNotFound")
            body = self.files.get(name)
            if body is None:
                return self._error(404, "EntryNotFound")
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", f'"{hashlib.sha1(body).hexdigest()}"')
            self.send_header("X-Repo-Commit", COMMIT)
            self.end_headers()
            if not head:
                self.wfile.write(body)
            return None
        return self._error(404, "EntryNotFound")

    def _allowed(self, repo: str) -> bool:
        if repo == "acme/iris":
            return True
        return (
            repo == "acme/private" and self.headers.get("authorization") == f"Bearer {self.token}"
        )

    def _json(self, value: Any, head: bool) -> None:
        body = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: int, code: str) -> None:
        body = json.dumps({"error": code}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, bytes]:
    folder = tmp_path_factory.mktemp("iris")
    trained, _ = train_sklearn_iris(folder)
    return trained, (folder / "model.joblib").read_bytes()


@pytest.fixture
def hub(
    model: tuple[Any, bytes], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[type[Hub]]:
    files = {"model.joblib": model[1], "config/notes.txt": b"trained in the test"}
    handler = type("Handler", (Hub,), {"files": files, "seen_auth": []})
    with serve_handler(handler) as base:
        monkeypatch.setenv("HF_ENDPOINT", base)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # nothing from the machine
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield handler


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("uri", ["hf://acme/iris", f"hf://acme/iris:{COMMIT}"])
def test_a_repository_snapshot_is_fetched_from_hf_endpoint(
    tmp_path: Path, hub: type[Hub], model: tuple[Any, bytes], uri: str
) -> None:
    folder = resolve_model_uri(uri, cache_dir=tmp_path / "cache")
    assert files_under(folder) == {"model.joblib", "config/notes.txt"}  # no hub bookkeeping
    assert (folder / "model.joblib").read_bytes() == model[1]
    assert detect_format(folder) == "sklearn"
    assert not (tmp_path / "hf-home").exists()  # the hub client's cache went with the staging


def test_hf_token_opens_a_private_repository(
    tmp_path: Path, hub: type[Hub], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(
        StorageError,
        match=r"cannot fetch hf://acme/private from the Hugging Face "
        r"hub: repository acme/private not found at http://127\.0\.0\.1:\d+, or it "
        r"is private; check the name in storageUri, or set HF_TOKEN",
    ):
        resolve_model_uri("hf://acme/private", cache_dir=tmp_path / "cache")
    monkeypatch.setenv("HF_TOKEN", hub.token)
    folder = resolve_model_uri("hf://acme/private", cache_dir=tmp_path / "cache")
    assert (folder / "model.joblib").is_file()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (
            "hf://acme/iris:v9",
            r"acme/iris has no revision 'v9' at http://127\.0\.0\.1:\d+; check "
            r"the revision after ':' in storageUri",
        ),
        ("hf://acme", r"the URI is not hf://ORG/MODEL\[:REVISION\]"),
    ],
)
def test_failures_say_what_to_fix(tmp_path: Path, hub: type[Hub], uri: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        resolve_model_uri(uri, cache_dir=tmp_path / "cache")
    assert [p for p in (tmp_path / "cache").iterdir() if p.suffix != ".lock"] == []
