"""`s3://bucket/path` through boto3, configured by the environment names KServe's storage
initializer reads (and its controller sets from a secret's `serving.kserve.io/s3-*` annotations).

- `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_DEFAULT_REGION`
  (or `AWS_REGION`), `AWS_CA_BUNDLE`: read by boto3 itself, as in KServe.
- `AWS_ENDPOINT_URL`: the endpoint (a MinIO, Ceph or emulator URL). Without it, `S3_ENDPOINT`
  (the annotation's `host:port`, or a full URL) with `S3_USE_HTTPS` (`0` for http; default 1).
- `S3_VERIFY_SSL=0`: do not verify the endpoint's certificate.
- `awsAnonymousCredential=true`: unsigned requests, for public buckets.
- `S3_USER_VIRTUAL_BUCKET=true`, `S3_USE_ACCELERATE=true`: virtual-hosted addressing and transfer
  acceleration; the legacy global endpoint with a non-us-east-1 region uses virtual addressing.

The path is an object or a folder: an object whose key is the path exactly is fetched alone
(and unpacked when it is an archive); otherwise every object under `path/` is fetched with its
relative key. KServe matches the path as a bare key prefix, which also fetches a sibling
`path-old/…`; knserve takes it as a folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from knserve.runtime.storage.archives import bucket_and_path, object_target, unpack_in_place
from knserve.runtime.storage.cache import Progress
from knserve.runtime.storage.errors import (
    StorageError,
    fetch_error,
    import_client,
    nothing_at,
    one_line,
)

CREDENTIALS_FIX = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to a key that may read the bucket "
    "(or awsAnonymousCredential=true for a public bucket)"
)
ENDPOINT_FIX = "check the endpoint in AWS_ENDPOINT_URL (or S3_ENDPOINT and S3_USE_HTTPS)"


def endpoint_url() -> str | None:
    """The S3 endpoint KServe's environment names, or None for AWS itself."""
    if os.environ.get("AWS_ENDPOINT_URL"):
        return os.environ["AWS_ENDPOINT_URL"]
    host = os.environ.get("S3_ENDPOINT")
    if not host:
        return None
    if "://" in host:
        return host
    use_https = os.environ.get("S3_USE_HTTPS", "1").lower() not in ("0", "false")
    return f"{'https' if use_https else 'http'}://{host}"


def _flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() == "true"


def _client(uri: str) -> Any:
    boto3 = import_client("boto3", "s3", uri)
    from botocore import UNSIGNED
    from botocore.config import Config

    s3_options: dict[str, Any] = {}
    endpoint = endpoint_url()
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    if _flag("S3_USER_VIRTUAL_BUCKET") or (
        endpoint == "https://s3.amazonaws.com" and region not in (None, "us-east-1")
    ):
        s3_options["addressing_style"] = "virtual"
    if _flag("S3_USE_ACCELERATE"):
        s3_options["use_accelerate_endpoint"] = True
    config = Config(
        s3=s3_options or None,
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=10,
        signature_version=UNSIGNED if _flag("awsAnonymousCredential") else None,
    )
    kwargs: dict[str, Any] = {"config": config}
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    verify = os.environ.get("S3_VERIFY_SSL")
    if verify:
        kwargs["verify"] = verify.lower() not in ("0", "false")
    try:
        # A session of its own: boto3's default one keeps the first credentials it read.
        return boto3.session.Session().client("s3", **kwargs)
    except ValueError as exc:  # a malformed endpoint URL
        raise fetch_error(uri, one_line(exc), ENDPOINT_FIX) from None


def fetch_s3(uri: str, folder: Path) -> None:
    """Fetch the object or folder `uri` names into `folder`."""
    bucket, path = bucket_and_path(uri)
    client = _client(uri)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        objects = _list(client, bucket, path)
        if not objects:
            raise nothing_at(uri, bucket, path)
        progress = Progress(uri, sum(size for _, size in objects))
        files: list[Path] = []
        for key, _ in objects:
            target = object_target(folder, key, path, uri)
            client.download_file(bucket, key, str(target), Callback=progress.add)
            files.append(target)
    except ClientError as exc:
        raise _client_error(uri, bucket, exc) from None
    except BotoCoreError as exc:
        raise _botocore_error(uri, exc) from None
    if len(files) == 1:
        unpack_in_place(files[0], uri)


def _list(client: Any, bucket: str, path: str) -> list[tuple[str, int]]:
    """(key, size) of the object `path` alone if it exists, else of every object under `path/`."""
    folder = path.rstrip("/") + "/" if path else ""
    found: list[tuple[str, int]] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=path):
        for obj in page.get("Contents", ()):
            key = obj["Key"]
            if key == path and not key.endswith("/"):
                return [(key, obj["Size"])]
            if key.startswith(folder) and not key.endswith("/"):  # "/" keys are folder markers
                found.append((key, obj["Size"]))
    return found


def _client_error(uri: str, bucket: str, exc: Any) -> StorageError:
    error = exc.response.get("Error", {})
    code, message = error.get("Code", ""), error.get("Message", "")
    where = endpoint_url() or "AWS"
    if code == "NoSuchBucket":
        return fetch_error(
            uri,
            f"bucket {bucket!r} does not exist at {where}",
            f"check the bucket in storageUri; {ENDPOINT_FIX}",
        )
    if code == "InvalidAccessKeyId":
        key_id = os.environ.get("AWS_ACCESS_KEY_ID", "")
        return fetch_error(
            uri, f"access key {key_id!r} is not known at {where} ({code})", CREDENTIALS_FIX
        )
    if code == "SignatureDoesNotMatch":
        return fetch_error(
            uri,
            f"the secret key does not match the access key ({code})",
            "check AWS_SECRET_ACCESS_KEY",
        )
    if code in ("AccessDenied", "403", "AllAccessDisabled"):
        return fetch_error(
            uri,
            f"access denied to bucket {bucket!r} ({code}: {message})",
            f"grant s3:ListBucket and s3:GetObject on it, or {CREDENTIALS_FIX}",
        )
    return fetch_error(uri, f"{code}: {message}" if message else str(exc), ENDPOINT_FIX)


def _botocore_error(uri: str, exc: Exception) -> StorageError:
    from botocore.exceptions import NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return fetch_error(uri, "no credentials were found", CREDENTIALS_FIX)
    return fetch_error(uri, f"{type(exc).__name__}: {exc}", ENDPOINT_FIX)
