"""Object stores as real loopback processes for the storage tests: moto's S3 server (with IAM
checks on, so keys are verified and a policy can deny) and gcp-storage-emulator for GCS. Each
binds 127.0.0.1 on a free port and is stopped by its process group at the end of the module.
Also: a stdlib HTTP handler served from a thread, and archives built in memory."""

from __future__ import annotations

import io
import json
import socket
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from net_fixtures import ServerProcess, eventually, free_port

BIN = Path(sys.executable).parent
# The IAM calls that make the two users below; moto checks every request after these.
_SETUP_ACTIONS = 6
_DENY_SECRET = {
    "Effect": "Deny",
    "Action": "s3:*",
    "Resource": ["arn:aws:s3:::secret", "arn:aws:s3:::secret/*"],
}


@dataclass
class S3Server:
    """A moto S3 server with an `admin` key (everything) and a `reader` key that may not touch
    the bucket `secret`."""

    endpoint: str
    keys: dict[str, tuple[str, str]]
    process: ServerProcess

    def client(self, user: str = "admin") -> Any:
        import boto3

        key_id, secret = self.keys[user]
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
        )

    def env(self, user: str = "reader") -> dict[str, str]:
        """KServe's environment names for this server and user."""
        key_id, secret = self.keys[user]
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": key_id,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def _listening(port: int) -> bool:
    # A TCP connect, not a request: moto counts requests against its unauthenticated allowance.
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2.0).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    import boto3

    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = ServerProcess(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        log,
        env={"INITIAL_NO_AUTH_ACTION_COUNT": str(_SETUP_ACTIONS)},
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        eventually(lambda: _listening(port), timeout=60, failure=lambda: proc.log())
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )
        keys: dict[str, tuple[str, str]] = {}
        for user, statements in [
            ("admin", [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]),
            ("reader", [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}, _DENY_SECRET]),
        ]:
            iam.create_user(UserName=user)
            key = iam.create_access_key(UserName=user)["AccessKey"]
            iam.put_user_policy(
                UserName=user,
                PolicyName="s3",
                PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
            )
            keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
        yield S3Server(endpoint, keys, proc)
    finally:
        proc.stop()


@pytest.fixture
def aws_isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS or KServe S3 setting from the machine reaches the code under test."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "S3_ENDPOINT",
        "S3_USE_HTTPS",
        "S3_VERIFY_SSL",
        "awsAnonymousCredential",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="module")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """gcp-storage-emulator on loopback, in memory; yields its `STORAGE_EMULATOR_HOST` value."""
    port = free_port()
    log = tmp_path_factory.mktemp("gcs") / "gcs.log"
    proc = ServerProcess(
        [
            str(BIN / "gcp-storage-emulator"),
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--in-memory",
        ],
        log,
    )
    try:
        host = f"http://127.0.0.1:{port}"
        eventually(lambda: _listening(port), timeout=60, failure=lambda: proc.log())
        yield host
    finally:
        proc.stop()


@contextmanager
def serve_handler(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` served on a free loopback port from a thread; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def tar_gz(files: dict[str, bytes]) -> bytes:
    """A .tar.gz holding `files` (name -> bytes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """A .zip holding `files` (name -> bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()
