"""Reading replicas' log files: what `knserve logs` prints, merged, filtered and followed.

The supervisor writes each replica's output to `{data dir}/logs/{namespace}_{revision}_{index}.log`
(`knserve.knative.supervisor.replicas`). A `ReplicaLog` is one such file with its prefix, the
replica's name as `POD_NAME` gives it (`{revision}-{index}`), as `kubectl logs --prefix` prefixes
pods. Lines are merged across replicas by the timestamp they start with: a text line's
(`2026-12-06 05:30:00,123 …`, local time) or a JSON line's `"timestamp"` (UTC). A line without one
(a traceback's, a `print`'s) goes with the line before it; lines before a replica's first
timestamp count as its oldest. `--since` keeps the lines from then on, `--tail N` a replica's
last N lines (as kubectl applies it, per container).
"""

from __future__ import annotations

import heapq
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

_TEXT_TIME = re.compile(rb"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:[,.](\d{1,6}))?")
_JSON_TIME = re.compile(
    rb'^\{.*?"timestamp":\s*"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?Z?"'
)


def line_time(line: bytes) -> float | None:
    """The Unix time a log line starts with, or None."""
    match = _JSON_TIME.match(line)
    utc = match is not None
    if match is None:
        match = _TEXT_TIME.match(line)
        if match is None:
            return None
    day, clock, fraction = match.groups()
    stamp = datetime.strptime(f"{day.decode()} {clock.decode()}", "%Y-%m-%d %H:%M:%S")
    seconds = stamp.replace(tzinfo=UTC).timestamp() if utc else time.mktime(stamp.timetuple())
    if fraction:
        seconds += int(fraction) / 10 ** len(fraction)
    return seconds


def replica_files(log_dir: Path, namespace: str, revision: str) -> list[tuple[int, Path]]:
    """A revision's replica log files, by replica index."""
    found = []
    for path in log_dir.glob(f"{namespace}_{revision}_*.log"):
        index = path.stem[len(namespace) + len(revision) + 2 :]
        if index.isdigit():
            found.append((int(index), path))
    return sorted(found)


@dataclass
class ReplicaLog:
    """One replica's log file and how far it has been read."""

    name: str  # the prefix: {revision}-{index}
    path: Path
    offset: int = 0
    partial: bytes = b""  # a last line not yet ended by a newline
    last_time: float = 0.0
    pending: list[tuple[float, bytes]] = field(default_factory=list)

    def read(self) -> list[tuple[float, bytes]]:
        """The complete lines written since the last read, each with its time."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:  # the file was truncated (or replaced): start again
            self.offset, self.partial = 0, b""
        if size == self.offset:
            return []
        with self.path.open("rb") as stream:
            stream.seek(self.offset)
            data = stream.read(size - self.offset)
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        out = []
        for line in lines:
            stamp = line_time(line)
            if stamp is not None:
                self.last_time = stamp
            out.append((self.last_time, line.rstrip(b"\r")))
        return out


def select(
    lines: list[tuple[float, bytes]], since: float | None, tail: int | None
) -> list[tuple[float, bytes]]:
    """The lines at or after `since` (Unix time), then the last `tail` of them."""
    if since is not None:
        lines = [entry for entry in lines if entry[0] >= since]
    if tail is not None and tail >= 0:
        lines = lines[len(lines) - tail :] if tail else []
    return lines


def merged(
    logs: Sequence[ReplicaLog], since: float | None = None, tail: int | None = None
) -> Iterator[str]:
    """Every replica's lines so far, filtered, merged by time, each with its `[replica]` prefix."""
    streams = []
    for order, log in enumerate(logs):
        chosen = select(log.read(), since, tail)
        streams.append([(stamp, order, log.name, line) for stamp, line in chosen])
    for _, _, name, line in heapq.merge(*streams, key=lambda entry: (entry[0], entry[1])):
        yield f"[{name}] {line.decode('utf-8', errors='replace')}"
