"""The supervisor's end of one zygote's socket (knserve.knative.supervisor.zygote): fork requests
sent, answers read in order, and the exits of the replicas it forked.

A zygote answers each request on a connection in the order it was sent (`{"pid": N}`,
`{"declined": why}` or `{"error": …}`) and reports each replica's exit (`{"exited": N,
"code": C}`) whenever it happens, so a `ForkedProcess` may learn its exit before its pid is read.
When the zygote's connection ends, every replica it forked is told it exited with code None (the
supervisor stops those it still sees running).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from knserve.knative.supervisor.process_records import ProcessRecords


class Declined(Exception):
    """The zygote cannot give this replica the start it asks for (see knserve.knative.supervisor.zygote)."""


class ForkedProcess:
    """A replica forked by a zygote; its exit arrives as a message from the zygote."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._exited: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    def _exit(self, code: int | None) -> None:
        if not self._exited.done():
            self.returncode = code if code is not None else -1
            self._exited.set_result(code)

    async def wait(self) -> int:
        """The exit code (-1 when the zygote died and the code is unknown)."""
        code = await asyncio.shield(self._exited)
        return code if code is not None else -1


class ZygoteLink:
    """One connection to a zygote (or a template, which speaks the same protocol)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, records: ProcessRecords
    ) -> None:
        self._writer = writer
        self._pending: list[asyncio.Future[dict[str, Any]]] = []
        self._children: dict[int, ForkedProcess] = {}
        self.records = records
        self._reader_task = asyncio.create_task(self._read(reader), name="zygote-reader")

    @classmethod
    async def connect(cls, path: Path, records: ProcessRecords) -> ZygoteLink:
        """Connect to the zygote listening on `path`; raises OSError while it is not there yet."""
        reader, writer = await asyncio.open_unix_connection(str(path))
        return cls(reader, writer, records)

    @property
    def open(self) -> bool:
        return not self._writer.is_closing()

    def forked(self, pid: int) -> bool:
        """Whether `pid` is a replica it forked on request (not its template's spare)."""
        return pid in self._children

    def live(self) -> int:
        """How many replicas it forked are still running."""
        return sum(1 for child in self._children.values() if child.returncode is None)

    async def fork(
        self, argv: Sequence[str], env: dict[str, str], cwd: Path | None, log_path: Path
    ) -> ForkedProcess:
        """Ask the zygote for a replica; raises Declined, or RuntimeError when it cannot."""
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending.append(answer)  # the zygote answers in order
        request = {
            "argv": list(argv),
            "env": env,
            "cwd": str(cwd) if cwd else None,
            "log": str(log_path),
        }
        self._writer.write(json.dumps(request).encode() + b"\n")
        await self._writer.drain()
        reply = await answer
        if "declined" in reply:
            raise Declined(reply["declined"])
        if "pid" not in reply:
            raise RuntimeError(reply.get("error", "no pid"))
        self.records.add(reply["pid"])  # not if it is gone already: its exit is on its way
        child = self._children.get(reply["pid"])
        if child is None:
            child = self._children[reply["pid"]] = ForkedProcess(reply["pid"])
        elif child.returncode is not None:
            del self._children[reply["pid"]]  # its exit overtook this answer
        return child

    async def close(self) -> None:
        self._writer.close()
        self._reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader_task

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                message = json.loads(line)
                if "exited" in message:
                    pid = message["exited"]
                    self.records.remove(pid)
                    child = self._children.pop(pid, None)
                    if child is None:  # exited before its spawn answer was read
                        child = self._children[pid] = ForkedProcess(pid)
                    child._exit(message["code"])
                elif self._pending:
                    self._pending.pop(0).set_result(message)
        finally:
            # the zygote is gone: its replicas' exits will never be reported
            for future in self._pending:
                if not future.done():
                    future.set_exception(RuntimeError("the zygote exited"))
            self._pending.clear()
            for child in self._children.values():
                child._exit(None)
            self._children.clear()
            self._writer.close()
