"""`http://` and `https://` model URIs: one file, unpacked when it is an archive (KServe's
catch-all `https?://host/path` download)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx

from knserve.runtime.storage.archives import unpack_in_place
from knserve.runtime.storage.cache import Progress
from knserve.runtime.storage.errors import fetch_error


def fetch_http(uri: str, folder: Path) -> None:
    """Download the file `uri` names into `folder` and unpack it if it is an archive."""
    name = Path(unquote(urlparse(uri).path)).name or "model"
    target = folder / name
    try:
        with httpx.stream("GET", uri, follow_redirects=True, timeout=60.0) as response:
            if response.status_code != 200:
                raise fetch_error(uri, f"HTTP {response.status_code}", _fix(response.status_code))
            length = response.headers.get("content-length")
            progress = Progress(uri, int(length) if length and length.isdigit() else None)
            with target.open("wb") as fh:
                for chunk in response.iter_bytes(1 << 20):
                    fh.write(chunk)
                    progress.add(len(chunk))
    except httpx.HTTPError as exc:
        raise fetch_error(
            uri,
            f"{type(exc).__name__}: {exc}",
            "check the host and port in storageUri and that it is reachable",
        ) from None
    unpack_in_place(target, uri)


def _fix(status: int) -> str:
    if status in (401, 403):
        return "the server refused access; use a URL that needs no credentials"
    if status == 404:
        return "check the path in storageUri"
    return "check the server"
