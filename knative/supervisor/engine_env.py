"""An engine's environment: a virtual environment per engine and version, built once per machine.

What a container runtime does when it pulls an image, done from the package index: the first
replica of an engine on this machine builds `{engines home}/{engine}-{version}-{digest}/` (a venv
with the engine's pinned requirements; the digest covers them and the Python version), every
later start reuses it. The engines home is `$KNSERVE_ENGINES_HOME`, else
`$XDG_CACHE_HOME/knserve/engines` (`~/.cache/knserve/engines`).

Builds are serialised by an exclusive lock on `{name}.lock` beside the environment, so replicas of
several revisions, and several planes, build it once; whoever waited finds it built. The
environment is complete only once `manifest.json` is in it, written last and atomically: a build
that was killed leaves a folder without one, which the next build removes and starts again (a
venv is built in place, since its scripts name their interpreter by absolute path).

`build` reports progress as one-line messages: the phase, then what pip is collecting, and how
many packages it installs.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from knserve.functions.parent_death import dying_with_parent
from knserve.knative.supervisor.engines import EngineImage
from knserve.runtime.cache_home import knserve_cache_dir

Progress = Callable[[str], None]

# Every build's progress lines, `{engine} {version}: {message}` (`knserve up` prints them).
log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
LOG_TAIL_LINES = 15


class EngineBuildError(RuntimeError):
    """The engine's environment could not be built; the message has pip's last lines."""


def engines_home() -> Path:
    """Where engine environments live ($KNSERVE_ENGINES_HOME overrides)."""
    return knserve_cache_dir("engines", "KNSERVE_ENGINES_HOME")


def base_python() -> str:
    """The interpreter engine environments are made from: the one knserve runs on, outside any
    venv (an engine's packages must not see knserve's)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def environment_dir(image: EngineImage) -> Path:
    """The folder of `image`'s environment (built or not)."""
    requirements = image.engine.requirements(image.version)
    digest = hashlib.sha256(json.dumps([sys.version_info[:2], requirements]).encode()).hexdigest()[
        :12
    ]
    return engines_home() / f"{image.engine.name}-{image.version}-{digest}"


def built(image: EngineImage) -> Path | None:
    """The environment's folder if a completed build is there, else None."""
    root = environment_dir(image)
    return root if (root / MANIFEST).is_file() else None


def _ignore(_: str) -> None:
    pass


async def build(image: EngineImage, progress: Progress = _ignore) -> Path:
    """The environment of `image`, built now unless a completed build is there."""
    root = environment_dir(image)
    if (root / MANIFEST).is_file():
        return root

    def tell(message: str) -> None:
        log.info("%s: %s", image.label, message)
        progress(message)

    root.parent.mkdir(parents=True, exist_ok=True)
    async with _exclusive(root.with_name(root.name + ".lock"), tell):
        if (root / MANIFEST).is_file():  # built by whoever held the lock
            return root
        started = time.monotonic()
        shutil.rmtree(root, ignore_errors=True)  # a killed build's leftovers
        try:
            await _assemble(image, root, tell)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        tell(f"built {image.label} in {time.monotonic() - started:.0f}s")
    return root


async def _assemble(image: EngineImage, root: Path, progress: Progress) -> None:
    requirements = image.engine.requirements(image.version)
    progress(f"creating the environment of {image.label}")
    await _run([base_python(), "-m", "venv", str(root)], "creating the environment", progress)
    python = str(root / "bin" / "python")
    progress(f"installing {', '.join(requirements)}")
    await _run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", *requirements],
        f"installing {image.label}",
        _PipProgress(progress),
    )
    manifest = {
        "engine": image.engine.name,
        "version": image.version,
        "requirements": requirements,
        "python": sys.version.split()[0],
        "built": datetime.now(UTC).replace(microsecond=0).isoformat(),
    }
    partial = root / (MANIFEST + ".partial")
    partial.write_text(json.dumps(manifest, indent=2))
    os.replace(partial, root / MANIFEST)


class _PipProgress:
    """Turns pip's output into progress lines: what it collects, then what it installs."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.collected = 0

    def __call__(self, line: str) -> None:
        if line.startswith("Collecting "):
            self.collected += 1
            name = line.removeprefix("Collecting ").split(" ", 1)[0]
            self.progress(f"collecting {name} ({self.collected} packages so far)")
        elif line.startswith("Installing collected packages:"):
            count = len(line.partition(":")[2].split(","))
            self.progress(f"installing {count} packages")


async def _run(argv: list[str], what: str, on_line: Progress) -> None:
    """Run `argv`, each output line to `on_line`; raise EngineBuildError with its tail on failure.
    A cancelled build stops its process group (pip and what pip started)."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=dying_with_parent(),
    )
    assert process.stdout is not None
    tail: list[str] = []
    try:
        async for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            # pip's note on each configured index folder that is absent says nothing of the build
            if line and not line.endswith("is ignored: it is neither a file nor a directory."):
                tail = [*tail[-(LOG_TAIL_LINES - 1) :], line]
                on_line(line)
        code = await process.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise
    if code != 0:
        raise EngineBuildError(f"{what} failed (exit {code}):\n" + "\n".join(tail))


@contextlib.asynccontextmanager
async def _exclusive(path: Path, progress: Progress) -> AsyncIterator[None]:
    """Hold an exclusive lock on `path`. flock blocks, so when another process holds it a daemon
    thread waits for it and the event loop awaits that thread; a waiter cancelled meanwhile
    leaves nothing held (a lock granted after the cancel is released at once)."""
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        progress(f"waiting for the build that holds {path.name}")
        await _wait_for_lock(handle)
    try:
        yield
    finally:
        handle.close()  # closing the last descriptor releases the lock


async def _wait_for_lock(handle: IO[str]) -> None:
    loop = asyncio.get_running_loop()
    granted: asyncio.Future[None] = loop.create_future()
    guard = threading.Lock()
    state = {"abandoned": False, "owned": False}

    def grant() -> None:
        if not granted.done():
            granted.set_result(None)

    def wait() -> None:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with guard:
            if state["abandoned"]:
                handle.close()
                return
            state["owned"] = True
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(grant)

    threading.Thread(target=wait, daemon=True, name=f"lock {handle.name}").start()
    try:
        await granted
    except BaseException:
        with guard:
            state["abandoned"] = True
            if state["owned"]:
                handle.close()
        raise


class EngineBuilds:
    """The builds of one plane: one per environment at a time, whatever number of replicas wait
    for it, each waiter told its progress. A failed build is not kept: the next waiter (a
    replica's restart, after its back-off) starts a new one."""

    def __init__(self) -> None:
        self._builds: dict[Path, asyncio.Task[Path]] = {}
        self._waiters: dict[Path, list[Progress]] = {}

    async def environment(self, image: EngineImage, progress: Progress = _ignore) -> Path:
        """The built environment of `image`, waiting for (or starting) its build."""
        found = built(image)
        if found is not None:
            return found
        root = environment_dir(image)
        waiters = self._waiters.setdefault(root, [])
        waiters.append(progress)
        task = self._builds.get(root)
        if task is None:

            def tell(message: str) -> None:
                for waiter in list(waiters):
                    waiter(message)

            task = self._builds[root] = asyncio.create_task(build(image, tell))
            task.add_done_callback(lambda _: self._builds.pop(root, None))
        try:
            # a waiter that goes (its revision was deleted) leaves the build to the others
            return await asyncio.shield(task)
        finally:
            waiters.remove(progress)

    async def close(self) -> None:
        """Stop the builds under way (the next plane starts them again)."""
        tasks = list(self._builds.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
