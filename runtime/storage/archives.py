"""Where fetched objects land in the model folder, and unpacking a fetched archive there, as
KServe's storage initializer does.

An object store's path names one object (kept under its own name) or a folder (each object under
it kept at its relative key); nothing is ever written outside the model folder. A single `.tar.gz`/`.tgz`/`.tar` or `.zip` file is unpacked (members that would land outside the
folder, and links, are refused); an archive that wraps everything in one top folder is
flattened so the model's files sit at the top. Any other file stays as it is.
"""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from knserve.runtime.storage.errors import fetch_error

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def bucket_and_path(uri: str) -> tuple[str, str]:
    """(bucket, path) of an object store URI such as `s3://bucket/path`."""
    parsed = urlparse(uri)
    if not parsed.netloc:
        raise fetch_error(uri, "no bucket in the URI", f"write it as {parsed.scheme}://BUCKET/PATH")
    return parsed.netloc, parsed.path.lstrip("/")


def object_target(folder: Path, key: str, path: str, uri: str) -> Path:
    """Where the object `key`, fetched for the store path `path`, goes in `folder` (its parent
    folder made): under its own name when it is `path` itself, else at its key below `path/`."""
    relative = Path(key).name if key == path else key[len(path.rstrip("/")) :].lstrip("/")
    target = _inside(folder, relative, uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def unpack_in_place(archive: Path, uri: str) -> None:
    """Replace `archive` (inside the model folder) by its content, if it is an archive."""
    if not is_archive(archive.name):
        return
    dest = archive.parent
    if archive.name.lower().endswith(".zip"):
        try:
            with zipfile.ZipFile(archive) as zf:
                for member_name in zf.namelist():
                    _inside(dest, member_name, uri)
                zf.extractall(dest)
        except zipfile.BadZipFile as exc:
            raise fetch_error(
                uri, f"not a readable zip archive ({exc})", "check the file at that location"
            ) from None
    else:
        try:
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():
                    _inside(dest, member.name, uri)
                    if member.issym() or member.islnk():
                        raise fetch_error(
                            uri,
                            f"archive member {member.name!r} is a link",
                            "pack the files themselves",
                        )
                tar.extractall(dest, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise fetch_error(
                uri, f"not a readable tar archive ({exc})", "check the file at that location"
            ) from None
    archive.unlink()
    _flatten_single_folder(dest)


def _inside(dest: Path, name: str, uri: str) -> Path:
    resolved = (dest / name).resolve()
    if not resolved.is_relative_to(dest.resolve()):
        raise fetch_error(
            uri,
            f"{name!r} would be written outside the model folder",
            "name files by paths inside the model folder",
        )
    return resolved


def _flatten_single_folder(dest: Path) -> None:
    # Archives often wrap the model in one top folder (model/model.joblib): serve its content.
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        inner = entries[0]
        for child in inner.iterdir():
            child.rename(dest / child.name)
        inner.rmdir()
