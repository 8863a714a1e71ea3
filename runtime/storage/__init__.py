"""Model URIs: where a model's files come from (KServe's storage initializer, in-process).

`resolve_model_uri` turns a `storageUri` into a local folder the formats can read:

- a local path or `file://` URI is used in place (a single file is served from its folder);
- `pvc://{claim}/{path}` is used in place too, from the folder the claim is mapped to:
  `$KNSERVE_PVC_{CLAIM}` (the claim's name upper-cased, `-` and `.` as `_`) names that claim's
  folder, else `$KNSERVE_PVC_ROOT/{claim}`. The plane sets these where a cluster would mount
  the volume;
- `s3://` (`s3.py`, extra `s3`), `gs://` (`gcs.py`, extra `gcs`), `hf://` (`hf.py`, extra `hf`)
  and `http(s)://` (`http.py`) are fetched once into the content-addressed cache (`cache.py`:
  `$KNSERVE_MODEL_CACHE`, default `~/.cache/knserve/models`), atomically, and shared by every
  replica and revision on the machine that names the same URI; a single archive is unpacked;
- `oci://` (KServe's modelcars) is refused: there is no image store to pull from here.

Every failure is a `StorageError` whose one-line message names the URI, the store and the fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

from knserve.runtime.storage.cache import default_cache_dir, fetch_once
from knserve.runtime.storage.errors import StorageError, fetch_error

__all__ = ["StorageError", "default_cache_dir", "resolve_model_uri"]

SUPPORTED = "a local path, file://, pvc://, s3://, gs://, hf://, http:// or https://"


def resolve_model_uri(uri: str, cache_dir: Path | None = None) -> Path:
    """A local folder holding the model that `uri` names."""
    scheme = urlparse(uri).scheme
    if scheme in ("", "file"):
        return _local(uri)
    if scheme == "pvc":
        return _pvc(uri)
    if scheme == "oci" or scheme.startswith("oci+"):
        raise fetch_error(
            uri,
            "OCI model images (KServe modelcars) cannot be pulled on the local plane",
            f"copy the model to {SUPPORTED} and name that",
        )
    fetch = _fetcher(scheme)
    if fetch is None:
        raise StorageError(f"unsupported storage URI scheme {scheme!r} in {uri!r}; use {SUPPORTED}")
    return fetch_once(uri, cache_dir or default_cache_dir(), lambda folder: fetch(uri, folder))


def _fetcher(scheme: str) -> Callable[[str, Path], None] | None:
    # Imported on use: each brings its client library only when its scheme is named.
    if scheme in ("http", "https"):
        from knserve.runtime.storage.http import fetch_http

        return fetch_http
    if scheme == "s3":
        from knserve.runtime.storage.s3 import fetch_s3

        return fetch_s3
    if scheme == "gs":
        from knserve.runtime.storage.gcs import fetch_gcs

        return fetch_gcs
    if scheme == "hf":
        from knserve.runtime.storage.hf import fetch_hf

        return fetch_hf
    return None


def _local(uri: str) -> Path:
    parsed = urlparse(uri)
    path = Path(unquote(parsed.path) if parsed.scheme == "file" else uri).expanduser()
    if not path.exists():
        raise fetch_error(uri, f"{path} does not exist", "check the path in storageUri")
    return path if path.is_dir() else path.parent


def pvc_env_name(claim: str) -> str:
    """`KNSERVE_PVC_{CLAIM}`: the setting that maps one claim to a folder."""
    return "KNSERVE_PVC_" + re.sub(r"[^A-Za-z0-9]", "_", claim).upper()


def _pvc(uri: str) -> Path:
    parsed = urlparse(uri)
    claim, sub = parsed.netloc, unquote(parsed.path).lstrip("/")
    if not claim:
        raise fetch_error(uri, "no claim in the URI", "write it as pvc://CLAIM/PATH")
    own, root = os.environ.get(pvc_env_name(claim)), os.environ.get("KNSERVE_PVC_ROOT")
    if not own and not root:
        raise fetch_error(
            uri,
            f"claim {claim!r} is not mapped to a local folder",
            f"set {pvc_env_name(claim)}=FOLDER, or KNSERVE_PVC_ROOT to a folder "
            f"holding one folder per claim",
        )
    base = Path(own) if own else Path(root or "") / claim
    path = (base / sub).resolve()
    if not path.is_relative_to(base.resolve()):
        raise fetch_error(uri, f"{sub!r} leaves the claim's folder", "use a path inside the claim")
    if not path.exists():
        setting = pvc_env_name(claim) if own else "KNSERVE_PVC_ROOT"
        raise fetch_error(
            uri,
            f"{path} does not exist (claim {claim!r} is {base}, from {setting})",
            "check the path in storageUri and the mapping",
        )
    return path if path.is_dir() else path.parent
