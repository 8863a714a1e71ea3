"""`python -m knserve.runtime.storage URI`: KServe's storage initializer as a process.

The local plane runs it before the first replica of a revision that names a `storageUri` starts,
as Kubernetes runs KServe's `storage-initializer` init container: it fetches `URI` into the
shared model cache (`KNSERVE_MODEL_CACHE`; a local path or `pvc://` is resolved in place) and
exits. Its settings are the environment's, KServe's names (see `s3.py`, `gcs.py`, `hf.py`).

It speaks JSON lines on stdout, one object per line, for the supervisor to read:

- `{"progress": {"done": BYTES, "total": BYTES or null}}` while fetching, at most every
  `PROGRESS_INTERVAL` seconds;
- `{"path": FOLDER}` last, on success (exit status 0);
- `{"error": MESSAGE}` last, when the URI cannot be fetched (exit status 1): the one-line
  `StorageError`, which names the URI, the store, the problem and the fix.

Logs go to stderr; any other exception is a traceback there and exit status 1.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Any

from knserve.runtime.storage import StorageError, resolve_model_uri
from knserve.runtime.storage.cache import progress_listeners

PROGRESS_INTERVAL = 0.25


class _ProgressLines:
    """Prints progress lines, no more often than the interval (the last one always)."""

    def __init__(self, interval: float = PROGRESS_INTERVAL) -> None:
        self.interval = interval
        self._last = 0.0
        self._done = 0
        self._lock = threading.Lock()

    def __call__(self, uri: str, done: int, total: int | None) -> None:
        with self._lock:
            now = time.monotonic()
            # Transfer threads may report out of order; the count only grows.
            self._done = max(self._done, done) if done else 0
            complete = total is not None and self._done >= total
            if done and not complete and now - self._last < self.interval:
                return
            if done:  # the total, announced before the first byte, does not hold the next line
                self._last = now
            _say({"progress": {"done": self._done, "total": total}})


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m knserve.runtime.storage URI", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s storage-initializer: %(message)s",
    )
    progress_listeners.append(_ProgressLines())
    try:
        folder = resolve_model_uri(args[0])
    except StorageError as exc:
        logging.getLogger("knserve.runtime.storage").error("%s", exc)
        _say({"error": str(exc)})
        return 1
    _say({"path": str(folder)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
