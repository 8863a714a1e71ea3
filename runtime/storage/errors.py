"""The one error the storage layer raises, and the lazy import of each scheme's client.

A `StorageError`'s message becomes the replica's last line and so the InferenceService's
`modelStatus.lastFailureInfo.message`: it is one line that names the URI, the store it was
fetched from, what went wrong and what to change.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from urllib.parse import urlparse

# The store each scheme names, as the message says it.
STORES = {
    "s3": "S3",
    "gs": "Google Cloud Storage",
    "hf": "the Hugging Face hub",
    "http": "HTTP",
    "https": "HTTPS",
    "pvc": "a persistent volume claim",
    "oci": "an OCI registry",
    "file": "the local file system",
    "": "the local file system",
}


class StorageError(Exception):
    """A model URI cannot be resolved; the message names the URI, the store and the fix."""


def fetch_error(uri: str, problem: str, fix: str = "") -> StorageError:
    """`cannot fetch URI from STORE: PROBLEM; FIX` on one line."""
    store = STORES.get(urlparse(uri).scheme, urlparse(uri).scheme)
    text = f"cannot fetch {uri} from {store}: {one_line(problem)}"
    return StorageError(f"{text}; {fix}" if fix else text)


def nothing_at(uri: str, bucket: str, path: str) -> StorageError:
    """An object store holds neither the object `path` nor anything under `path/`."""
    under = path.rstrip("/") + "/" if path else ""
    return fetch_error(
        uri,
        f"no object {path!r} and nothing under {under!r} in bucket {bucket!r}",
        "check the path in storageUri",
    )


def one_line(text: object) -> str:
    """A client's exception text (often several lines) folded into one."""
    return " ".join(str(text).split())


def import_client(module: str, extra: str, uri: str) -> ModuleType:
    """Import a scheme's client library, or say which knserve extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise fetch_error(
            uri,
            f"the client library is not installed ({one_line(exc)})",
            f"install it with: pip install 'knserve[{extra}]'",
        ) from None
