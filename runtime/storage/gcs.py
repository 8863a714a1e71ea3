"""`gs://bucket/path` through google-cloud-storage, as KServe's storage initializer fetches it.

Credentials are Google's application default credentials: a service account key file named by
`GOOGLE_APPLICATION_CREDENTIALS` (KServe mounts one from the `gcloud-application-credentials`
secret), or the environment's own; without any, an anonymous client reads public buckets
(KServe's quick-start models live in one). `STORAGE_EMULATOR_HOST` points the client at an
emulator, anonymously, and `API_ENDPOINT_OVERRIDE` at another endpoint with credentials: both
as Google's clients read them.

The path is a folder or an object: every blob under `path/` is fetched with its relative name;
when there is none, the blob named `path` exactly is fetched alone (and unpacked when it is an
archive).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from knserve.runtime.storage.archives import bucket_and_path, object_target, unpack_in_place
from knserve.runtime.storage.cache import Progress
from knserve.runtime.storage.errors import fetch_error, import_client, nothing_at, one_line

CREDENTIALS_FIX = (
    "set GOOGLE_APPLICATION_CREDENTIALS to a service account key file that may read the "
    "bucket (roles/storage.objectViewer), or make the bucket public"
)


def _where() -> str:
    return (
        os.environ.get("STORAGE_EMULATOR_HOST")
        or os.environ.get("API_ENDPOINT_OVERRIDE")
        or "storage.googleapis.com"
    )


def _client(uri: str) -> Any:
    storage = import_client("google.cloud.storage", "gcs", uri)
    from google.auth.exceptions import DefaultCredentialsError

    key_file = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if key_file and not Path(key_file).is_file():
        raise fetch_error(
            uri,
            f"GOOGLE_APPLICATION_CREDENTIALS names {key_file}, which is not a file",
            f"{CREDENTIALS_FIX}; unset it for a public bucket",
        )
    try:
        return storage.Client()
    except DefaultCredentialsError as exc:
        if key_file:  # a key file that does not load is a mistake to report, not a public bucket
            raise fetch_error(
                uri, f"the key file {key_file} does not load ({one_line(exc)})", CREDENTIALS_FIX
            ) from None
        return storage.Client.create_anonymous_client()


def fetch_gcs(uri: str, folder: Path) -> None:
    """Fetch the folder or object `uri` names into `folder`."""
    bucket_name, path = bucket_and_path(uri)
    client = _client(uri)
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    try:
        bucket = client.bucket(bucket_name)
        prefix = path.rstrip("/") + "/" if path else ""
        blobs = [b for b in bucket.list_blobs(prefix=prefix) if not b.name.endswith("/")]
        if not blobs and path:
            single = bucket.get_blob(path)
            blobs = [single] if single is not None else []
        if not blobs:
            raise nothing_at(uri, bucket_name, path)
        progress = Progress(uri, sum(b.size or 0 for b in blobs))
        files: list[Path] = []
        for blob in blobs:
            target = object_target(folder, blob.name, path, uri)
            with target.open("wb") as fh:
                blob.download_to_file(_Counted(fh, progress))
            files.append(target)
    except api.NotFound:
        raise fetch_error(
            uri,
            f"bucket {bucket_name!r} does not exist at {_where()}",
            "check the bucket in storageUri (and STORAGE_EMULATOR_HOST if you use an emulator)",
        ) from None
    except (api.Forbidden, api.Unauthorized) as exc:
        raise fetch_error(uri, f"access denied ({_message(exc)})", CREDENTIALS_FIX) from None
    except auth.GoogleAuthError as exc:
        raise fetch_error(
            uri, f"the credentials were refused ({one_line(exc)})", CREDENTIALS_FIX
        ) from None
    except (api.GoogleAPIError, OSError) as exc:  # OSError: requests' connection errors
        raise fetch_error(
            uri, f"{type(exc).__name__}: {exc}", f"check that {_where()} is reachable"
        ) from None
    if len(files) == 1:
        unpack_in_place(files[0], uri)


def _message(exc: Any) -> str:
    return one_line(getattr(exc, "message", None) or exc)


class _Counted:
    """A file the client writes a blob into, counting each chunk as it arrives (progress
    within one large blob, not only between blobs)."""

    def __init__(self, fh: Any, progress: Progress) -> None:
        self._fh = fh
        self._progress = progress

    def write(self, data: bytes) -> int:
        written = self._fh.write(data)
        self._progress.add(len(data))
        return int(written)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)
