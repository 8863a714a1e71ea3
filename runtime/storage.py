"""Model URIs: where a model's files come from.

`resolve_model_uri` turns a storage URI into a local folder the formats can read:

- a local path or `file://` URI is used in place (a single file is served from its folder);
- an `http://` or `https://` URI is downloaded once into a cache folder keyed by a digest of the
  URI, and unpacked when it is a `.tar.gz`/`.tgz`/`.tar` or `.zip` archive (refusing members
  that would land outside the folder); any other file is kept under its own name.

A download goes to a temporary folder that is renamed into place only when complete, so an
interrupted download is never mistaken for a model.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx


class StorageError(Exception):
    """A model URI cannot be resolved; the message names the URI and the reason."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "knserve" / "models"


def resolve_model_uri(uri: str, cache_dir: Path | None = None) -> Path:
    """A local folder holding the model that `uri` names."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = Path(unquote(parsed.path) if parsed.scheme == "file" else uri).expanduser()
        if not path.exists():
            raise StorageError(f"model path {path} does not exist (from {uri!r})")
        return path if path.is_dir() else path.parent
    if parsed.scheme in ("http", "https"):
        return _download(uri, cache_dir or default_cache_dir())
    raise StorageError(
        f"unsupported storage URI scheme {parsed.scheme!r} in {uri!r}; use a local path, "
        "file://, http:// or https://"
    )


def _download(uri: str, cache_dir: Path) -> Path:
    target = cache_dir / hashlib.sha256(uri.encode()).hexdigest()[:24]
    if target.is_dir():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    name = Path(unquote(urlparse(uri).path)).name or "model"
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=cache_dir))
    try:
        archive = staging / name
        try:
            with httpx.stream("GET", uri, follow_redirects=True, timeout=60.0) as response:
                if response.status_code != 200:
                    raise StorageError(f"downloading {uri} failed: HTTP {response.status_code}")
                with archive.open("wb") as fh:
                    for chunk in response.iter_bytes(1 << 20):
                        fh.write(chunk)
        except httpx.HTTPError as exc:
            raise StorageError(f"downloading {uri} failed: {exc}") from None
        content = staging / "content"
        content.mkdir()
        _unpack(archive, content, uri)
        try:
            content.rename(target)
        except OSError:
            if not target.is_dir():  # another process may have won the race; that is fine
                raise
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unpack(archive: Path, dest: Path, uri: str) -> None:
    lower = archive.name.lower()
    if lower.endswith((".tar.gz", ".tgz", ".tar")):
        try:
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():
                    _check_member(member.name, dest, uri)
                    if member.issym() or member.islnk():
                        raise StorageError(f"{uri}: archive member {member.name!r} is a link")
                tar.extractall(dest, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise StorageError(f"{uri} is not a readable tar archive: {exc}") from None
    elif lower.endswith(".zip"):
        try:
            with zipfile.ZipFile(archive) as zf:
                for member_name in zf.namelist():
                    _check_member(member_name, dest, uri)
                zf.extractall(dest)
        except zipfile.BadZipFile as exc:
            raise StorageError(f"{uri} is not a readable zip archive: {exc}") from None
    else:
        shutil.move(str(archive), dest / archive.name)
        return
    _flatten_single_folder(dest)


def _check_member(name: str, dest: Path, uri: str) -> None:
    resolved = (dest / name).resolve()
    if not resolved.is_relative_to(dest.resolve()):
        raise StorageError(
            f"{uri}: archive member {name!r} would be written outside the model folder"
        )


def _flatten_single_folder(dest: Path) -> None:
    # Archives often wrap the model in one top folder (model/model.joblib): serve its content.
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        inner = entries[0]
        for child in inner.iterdir():
            child.rename(dest / child.name)
        inner.rmdir()
