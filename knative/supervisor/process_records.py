"""A record, on disk, of every process a plane started, so the next plane can stop what is left.

Processes a plane starts die with it (Linux's parent-death signal, knserve.functions.parent_death),
but not everywhere and not in every case: off Linux there is no such signal, and a process that
was being started as the plane died may have missed it. So each process is also recorded under
the data dir, one file per process, with its pid and its start time, and the plane's own; the
file goes when the process exits. A plane starting on the same data dir stops, before it starts
anything, every recorded process whose plane no longer runs and that is still the process
recorded: the same pid *and* the same start time (`/proc/PID/stat`'s 22nd field), because the
kernel reuses pids. Never a name: another program, or another plane's replica, may look the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path


def start_time(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot; None when it is gone (or a zombie)."""
    try:
        # the command name, in parentheses, may hold spaces: split after its closing one
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


class ProcessRecords:
    """The processes this plane started, recorded in `folder`; see the module docstring."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.plane = (os.getpid(), start_time(os.getpid()))

    def add(self, pid: int) -> None:
        """Record `pid`, unless it is gone already (or /proc cannot tell when it started)."""
        started = start_time(pid)
        if started is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {
            "pid": pid,
            "start": started,
            "plane": self.plane[0],
            "plane_start": self.plane[1],
        }
        (self.folder / str(pid)).write_text(json.dumps(record))

    def remove(self, pid: int) -> None:
        (self.folder / str(pid)).unlink(missing_ok=True)

    async def stop_stale(self, timeout: float = 5.0) -> list[int]:
        """SIGKILL every recorded process (with its process group, when it leads one) of a plane
        that no longer runs, and wait until they are gone; the pids stopped."""
        stopped: dict[int, int] = {}
        for path in sorted(self.folder.glob("*")) if self.folder.is_dir() else []:
            try:
                record = json.loads(path.read_text())
                pid, started = int(record["pid"]), int(record["start"])
                plane, plane_started = int(record["plane"]), record["plane_start"]
            except (OSError, ValueError, KeyError, TypeError):
                path.unlink(missing_ok=True)  # half-written as its plane died: nothing to go by
                continue
            if start_time(plane) == plane_started and plane_started is not None:
                continue  # its plane still runs (another `knserve up` on this data dir)
            if start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    if os.getpgid(pid) == pid:
                        os.killpg(pid, signal.SIGKILL)  # and whatever it started in its group
                    else:
                        os.kill(pid, signal.SIGKILL)
                stopped[pid] = started
            path.unlink(missing_ok=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # not our children: there is nothing to wait on but /proc
        while any(start_time(p) == t for p, t in stopped.items()) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        return list(stopped)
