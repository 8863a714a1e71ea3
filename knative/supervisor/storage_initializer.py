"""KServe's storage initializer on the local plane: the model fetched before a replica starts.

On a cluster KServe's pod webhook sees the revision annotation
`internal.serving.kserve.io/storage-initializer-sourceuri`, adds the init container
`storage-initializer` that downloads the URI into an emptyDir mounted at `/mnt/models`, and the
runtime's args name that folder (`--model_dir=/mnt/models`, MLServer's
`MLSERVER_MODEL_URI=/mnt/models`). Here, before the first replica of such a revision starts, the
supervisor asks `StorageInitializer.container_for`, which:

- runs `python -m knserve.runtime.storage URI` (a process, as an init container is: its own
  environment, killable, off the event loop) once per revision; the fetch lands in the shared
  content-addressed cache, so other revisions naming the same URI find it there (a local path
  or `file://` URI is used in place, without a process);
- gives it the replica's environment (the plane's, then the container's `env`) with KServe's S3
  annotations (`serving.kserve.io/s3-endpoint`, `s3-usehttps`, `s3-region`, `s3-verifyssl`, …)
  turned into the variables KServe's controller derives from them: on a cluster they sit on a
  Secret of the service account, which the plane has no kind for, so it reads them from the
  revision (the InferenceService's annotations reach it);
- returns the container with `/mnt/models` (and paths under it) in `command`, `args`, env
  values and `workingDir` replaced by the local folder, and a custom container's `STORAGE_URI`
  env (KServe's way to give one a model) set to that folder, as KServe's webhook sets it to
  `/mnt/models`.

A fetch that fails raises `InitFailure` with the exit status and the initializer's one-line
error, which the supervisor reports as Kubernetes reports a crashing init container (and
retries with its back-off, so a bucket that appears later is picked up). While a fetch runs,
`progress` says how far it got, for the Revision's status and so `knserve isvc create --wait`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from knserve.functions.parent_death import dying_with_parent
from knserve.runtime.storage import StorageError, resolve_model_uri

log = logging.getLogger(__name__)

SOURCE_URI = "internal.serving.kserve.io/storage-initializer-sourceuri"
MODEL_MOUNT = "/mnt/models"
STORAGE_URI_ENV = "STORAGE_URI"
CONTAINER_NAME = "storage-initializer"
MIB = 1 << 20

# KServe's S3 annotations (pkg/credentials/s3) and the variable each one sets.
S3_ANNOTATIONS = {
    "serving.kserve.io/s3-endpoint": "S3_ENDPOINT",
    "serving.kserve.io/s3-usehttps": "S3_USE_HTTPS",
    "serving.kserve.io/s3-region": "AWS_DEFAULT_REGION",
    "serving.kserve.io/s3-verifyssl": "S3_VERIFY_SSL",
    "serving.kserve.io/s3-usevirtualbucket": "S3_USER_VIRTUAL_BUCKET",
    "serving.kserve.io/s3-useaccelerate": "S3_USE_ACCELERATE",
    "serving.kserve.io/s3-useanoncredential": "awsAnonymousCredential",
    "serving.kserve.io/s3-cabundle": "AWS_CA_BUNDLE",
}
# `/mnt/models` as a whole path component: not `/mnt/models2`, not `/x/mnt/models`.
_MOUNT = re.compile(r"(?<![\w.\-/])/mnt/models(?![\w.\-])")


class InitFailure(Exception):
    """The storage initializer exited unsuccessfully: its exit status and termination message."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message


@dataclass(frozen=True)
class Fetching:
    """How far the fetch of `uri` got: bytes so far and the total (None while unknown)."""

    uri: str
    done: int = 0
    total: int | None = None

    def message(self) -> str:
        """`storage-initializer: fetching URI (3.0 of 8.0 MiB, 37%)`, for a condition message."""
        if self.total:
            share = min(100, self.done * 100 // self.total)
            size = f"{self.done / MIB:.1f} of {self.total / MIB:.1f} MiB, {share}%"
        else:
            size = f"{self.done / MIB:.1f} MiB"
        return f"{CONTAINER_NAME}: fetching {self.uri} ({size})"


def substitute(value: str, folder: Path) -> str:
    """`value` with `/mnt/models` (as a path component) replaced by `folder`."""
    return _MOUNT.sub(lambda _: str(folder), value)


def mounted_container(container: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """The container with `/mnt/models` mapped to `folder` in command, args, env and workingDir."""
    out = dict(container)
    for field in ("command", "args"):
        if container.get(field):
            out[field] = [substitute(str(a), folder) for a in container[field]]
    env = []
    for entry in container.get("env") or []:
        if entry.get("name") == STORAGE_URI_ENV and entry.get("value"):
            # KServe's webhook points a custom container's STORAGE_URI at the mount
            env.append({**entry, "value": str(folder)})
        elif "value" in entry:
            env.append({**entry, "value": substitute(str(entry["value"]), folder)})
        else:
            env.append(dict(entry))
    if env:
        out["env"] = env
    if container.get("workingDir"):
        out["workingDir"] = substitute(str(container["workingDir"]), folder)
    return out


def s3_env(annotations: Mapping[str, str]) -> dict[str, str]:
    """KServe's S3 annotations as the environment its controller gives the initializer
    (`BuildS3EnvVars`): an endpoint with a scheme decides `S3_USE_HTTPS` and `AWS_ENDPOINT_URL`."""
    env = {var: annotations[key] for key, var in S3_ANNOTATIONS.items() if key in annotations}
    endpoint = env.get("S3_ENDPOINT", "").strip()
    if endpoint:
        lower = endpoint.lower()
        if lower.startswith(("https://", "http://")):
            env["S3_USE_HTTPS"] = "1" if lower.startswith("https://") else "0"
            env["S3_ENDPOINT"] = endpoint.split("://", 1)[1]
            env["AWS_ENDPOINT_URL"] = endpoint
        else:
            scheme = "http" if env.get("S3_USE_HTTPS") == "0" else "https"
            env["AWS_ENDPOINT_URL"] = f"{scheme}://{endpoint}"
    return env


class StorageInitializer:
    """Fetches each revision's model once; see the module docstring.

    `on_progress(namespace, revision)` is called (on the event loop) as a fetch advances.
    `records` (the launcher's process records) lets a later plane stop an initializer this one
    left running.
    """

    def __init__(
        self,
        log_dir: Path,
        on_progress: Callable[[str, str], None],
        records: Any = None,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.on_progress = on_progress
        self.records = records
        self._folders: dict[tuple[str, str], Path] = {}
        self._fetches: dict[tuple[str, str], asyncio.Task[Path]] = {}
        self._progress: dict[tuple[str, str], Fetching] = {}

    @staticmethod
    def source_uri(annotations: Mapping[str, str]) -> str | None:
        return annotations.get(SOURCE_URI) or None

    async def container_for(
        self,
        namespace: str,
        revision: str,
        container: Mapping[str, Any],
        annotations: Mapping[str, str],
        env: Mapping[str, str],
    ) -> dict[str, Any]:
        """The container to start, its model fetched and `/mnt/models` mapped; unchanged when
        the revision names no storage URI. Raises `InitFailure` when the fetch fails."""
        uri = self.source_uri(annotations)
        if uri is None:
            return dict(container)
        key = (namespace, revision)
        folder = self._folders.get(key)
        if folder is None and urlparse(uri).scheme in ("", "file"):
            folder = self._folders[key] = _local(uri)
        if folder is None:
            task = self._fetches.get(key)
            if task is None:
                full_env = {**env, **s3_env(annotations)}
                task = asyncio.create_task(
                    self._fetch(key, uri, full_env), name=f"storage-initializer-{revision}"
                )
                self._fetches[key] = task
                task.add_done_callback(lambda _: self._fetches.pop(key, None))
            # Shielded: one replica stopping while it waits must not stop the fetch the others
            # wait for; `forget` stops it with the revision.
            folder = await asyncio.shield(task)
        return mounted_container(container, folder)

    def progress(self, namespace: str, revision: str) -> Fetching | None:
        """The running fetch of a revision's model, or None when none runs."""
        return self._progress.get((namespace, revision))

    def forget(self, namespace: str, revision: str) -> None:
        """The revision is gone: stop its fetch (killing the initializer), drop its folder."""
        key = (namespace, revision)
        self._folders.pop(key, None)
        task = self._fetches.pop(key, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        tasks = list(self._fetches.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, InitFailure):
                await task

    async def _fetch(self, key: tuple[str, str], uri: str, env: Mapping[str, str]) -> Path:
        namespace, revision = key
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{namespace}_{revision}_{CONTAINER_NAME}.log"
        log.info("revision %s/%s: %s fetching %s", namespace, revision, CONTAINER_NAME, uri)
        self._progress[key] = Fetching(uri)
        self.on_progress(namespace, revision)
        try:
            with log_path.open("ab") as err:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "knserve.runtime.storage",
                    uri,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=err,
                    stdin=asyncio.subprocess.DEVNULL,
                    env=dict(env),
                    start_new_session=True,
                    preexec_fn=dying_with_parent(),
                )
            if self.records is not None:
                self.records.add(process.pid)
            try:
                result = await self._read(key, uri, process)
                code = await process.wait()
            except asyncio.CancelledError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
                raise
            finally:
                if self.records is not None:
                    self.records.remove(process.pid)
        finally:
            self._progress.pop(key, None)
        if code == 0 and "path" in result:
            folder = Path(result["path"])
            self._folders[key] = folder
            log.info("revision %s/%s: %s is %s", namespace, revision, uri, folder)
            return folder
        message = result.get("error") or _log_tail(log_path) or f"exited with code {code}"
        raise InitFailure(code or 1, f"{CONTAINER_NAME}: {message}")

    async def _read(
        self, key: tuple[str, str], uri: str, process: asyncio.subprocess.Process
    ) -> dict[str, Any]:
        """Follow the initializer's JSON lines; the last one that is not progress is returned."""
        assert process.stdout is not None
        last: dict[str, Any] = {}
        async for line in process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue  # not ours: a library printing to stdout
            if not isinstance(message, dict):
                continue
            if "progress" in message:
                done, total = message["progress"].get("done", 0), message["progress"].get("total")
                self._progress[key] = Fetching(uri, int(done), total)
                self.on_progress(*key)
            else:
                last = message
        return last


def _local(uri: str) -> Path:
    """A local path or file:// URI, used in place: a stat, not worth a process."""
    try:
        return resolve_model_uri(uri)
    except StorageError as exc:
        raise InitFailure(1, f"{CONTAINER_NAME}: {exc}") from None


def _log_tail(path: Path, lines: int = 5) -> str:
    """The last lines of the initializer's log, folded into one (an unexpected crash)."""
    if not path.exists():
        return ""
    return " ".join(path.read_text(errors="replace").splitlines()[-lines:]).strip()
