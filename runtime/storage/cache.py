"""The content-addressed model cache: each remote URI is fetched once, atomically, and shared.

A URI's folder is `{cache}/{sha256(uri)[:24]}`. It exists only complete: a fetch writes into a
staging folder `.{key}.partial-…` beside it and renames it into place at the end, so a killed
fetch leaves a partial folder no start trusts. Every process that fetches a URI first takes an
exclusive `flock` on `{key}.lock`: replicas and revisions starting together for one URI fetch it
once, the others wait and then find the folder. The kernel drops a dead holder's lock, and the
next holder removes the partial folders it left.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from knserve.runtime.cache_home import knserve_cache_dir

log = logging.getLogger("knserve.runtime.storage")

MIB = 1 << 20
# One progress line each time this much more has arrived (a large model logs a line per step).
PROGRESS_STEP = 100 * MIB
# Told of every chunk fetched, (uri, bytes so far, total or None), from the fetching thread:
# the storage initializer's progress lines (`python -m knserve.runtime.storage`).
progress_listeners: list[Callable[[str, int, int | None], None]] = []


def default_cache_dir() -> Path:
    """`$KNSERVE_MODEL_CACHE`, else `$XDG_CACHE_HOME/knserve/models` (`~/.cache/…`)."""
    return knserve_cache_dir("models", "KNSERVE_MODEL_CACHE")


def cache_key(uri: str) -> str:
    return hashlib.sha256(uri.encode()).hexdigest()[:24]


def fetch_once(uri: str, cache_dir: Path, fetch: Callable[[Path], None]) -> Path:
    """The cached folder for `uri`, filled by `fetch(folder)` unless a complete one exists.

    `fetch` writes the model's files into the empty folder it is given; if it raises, nothing
    is cached and the error goes to the caller.
    """
    key = cache_key(uri)
    target = cache_dir / key
    if target.is_dir():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(cache_dir / f"{key}.lock", uri):
        if target.is_dir():  # another process fetched it while this one waited
            return target
        for stale in cache_dir.glob(f".{key}.partial-*"):  # left by a fetch that was killed
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.partial-", dir=cache_dir))
        try:
            content = staging / "content"
            content.mkdir()
            started = time.monotonic()
            fetch(content)
            content.rename(target)
            log.info("fetched %s into %s in %.1fs", uri, target, time.monotonic() - started)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


@contextmanager
def _exclusive(lock_path: Path, uri: str) -> Iterator[None]:
    with lock_path.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process fetching %s", uri)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class Progress:
    """Bytes fetched for one URI, logged once per `step` bytes; `add` is safe from any thread
    (boto3 calls back from its transfer threads)."""

    def __init__(self, uri: str, total: int | None = None, step: int | None = None) -> None:
        self.uri = uri
        self.total = total
        self.step = step or PROGRESS_STEP
        self.done = 0
        self._next = self.step
        self._lock = threading.Lock()
        for listener in progress_listeners:  # the total is news before the first byte
            listener(uri, 0, total)

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
            done = self.done
        for listener in progress_listeners:
            listener(self.uri, done, self.total)
        with self._lock:
            if self.done < self._next:
                return
            self._next = (self.done // self.step + 1) * self.step
            done = self.done
        of = f" of {self.total / MIB:.0f} MiB" if self.total else ""
        log.info("fetching %s: %.0f MiB%s", self.uri, done / MIB, of)
