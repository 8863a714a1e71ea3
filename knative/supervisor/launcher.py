"""How the supervisor starts a replica's process: forked from the warm zygote, or exec'd.

`Launcher.spawn` returns an object shaped like `asyncio.subprocess.Process` (`pid`,
`returncode`, `await wait()`), whichever way the replica started, so the supervisor watches and
stops both alike (by process group: every replica leads its own session).

The zygote (`knserve.knative.supervisor.zygote`) starts with the plane and warms up in the background; a
replica asked for meanwhile waits for it, which costs nothing, since an exec'd replica would do
the same imports. A replica whose environment a fork cannot honour (the zygote declines it) is
exec'd; so are all replicas if the zygote cannot start or dies (and a dead zygote's
orphans are stopped by the supervisor, which sees them exit with code None).

Nothing started here outlives the plane: the zygote and exec'd replicas get the parent-death
signal (knserve.functions.parent_death; they are started from the event loop's thread, which
lives as long as the plane), forked replicas get it from the zygote, and every one is recorded
(knserve.knative.supervisor.process_records) for the next plane on the data dir to stop, should any remain.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from knserve.functions.parent_death import dying_with_parent
from knserve.knative.supervisor.process_records import ProcessRecords
from knserve.knative.supervisor.zygote import forkable

log = logging.getLogger(__name__)

ZYGOTE_START_TIMEOUT = 60.0


class Declined(Exception):
    """The zygote cannot give this replica the start it asks for (see knserve.knative.supervisor.zygote)."""


class ForkedProcess:
    """A replica forked by the zygote; its exit arrives as a message from the zygote."""

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


class Launcher:
    """Starts replicas; see the module docstring."""

    def __init__(self, work_dir: Path, use_zygote: bool = True) -> None:
        self.work_dir = Path(work_dir)
        self.use_zygote = use_zygote
        self._zygote: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._starting: asyncio.Task[bool] | None = None
        self._pending: list[asyncio.Future[dict[str, Any]]] = []
        self._children: dict[int, ForkedProcess] = {}
        self.records = ProcessRecords(self.work_dir / "processes")
        self._watches: set[asyncio.Task[None]] = set()

    def warm_up(self) -> None:
        """Start the zygote in the background (call once the event loop runs)."""
        if self.use_zygote and self._starting is None:
            self._starting = asyncio.create_task(self._start_zygote(), name="zygote-start")

    async def spawn(
        self, argv: Sequence[str], env: dict[str, str], cwd: Path | None, log_path: Path
    ) -> Any:
        """Start `argv`; forked from the zygote when it can run it, else exec'd."""
        if self.use_zygote and forkable(argv) is not None and await self._zygote_ready():
            try:
                return await self._fork(argv, env, cwd, log_path)
            except Declined as exc:
                log.info("starting %s the ordinary way, not forked: %s", argv[2], exc)
            except (OSError, RuntimeError) as exc:
                log.warning(
                    "zygote could not fork (%s); starting the replica the ordinary way", exc
                )
        return await self._exec(argv, env, cwd, log_path)

    async def stop_stale(self) -> None:
        """Stop what a plane that crashed on this data dir left running (call before spawning)."""
        stopped = await self.records.stop_stale()
        if stopped:
            log.warning(
                "stopped %d processes a previous plane on this data dir left running (pids %s)",
                len(stopped),
                ", ".join(map(str, stopped)),
            )

    async def close(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._starting
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
        await self._stop_zygote()

    async def _exec(
        self, argv: Sequence[str], env: dict[str, str] | None, cwd: Path | None, log_path: Path
    ) -> asyncio.subprocess.Process:
        """Start `argv` as the leader of its own session, dying with this process, recorded."""
        with log_path.open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=dying_with_parent(),
            )
        self.records.add(process.pid)
        watch = asyncio.create_task(self._forget(process), name=f"forget-{process.pid}")
        self._watches.add(watch)
        watch.add_done_callback(self._watches.discard)
        return process

    async def _forget(self, process: asyncio.subprocess.Process) -> None:
        await process.wait()
        self.records.remove(process.pid)

    async def _stop_zygote(self) -> None:
        zygote = self._zygote
        if zygote is None or zygote.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            zygote.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(zygote.wait(), 5)
        if zygote.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                zygote.kill()
            await zygote.wait()

    # ---- the zygote --------------------------------------------------------------------------

    async def _zygote_ready(self) -> bool:
        if self._writer is not None and not self._writer.is_closing():
            return True
        if self._starting is None or self._starting.done():
            self._starting = asyncio.create_task(self._start_zygote(), name="zygote-start")
        return await asyncio.shield(self._starting)

    async def _start_zygote(self) -> bool:
        await self._stop_zygote()  # one that lost its connection but still runs
        self.work_dir.mkdir(parents=True, exist_ok=True)
        path = self.work_dir / f"zygote-{os.getpid()}.sock"
        self._zygote = await self._exec(
            [sys.executable, "-m", "knserve.knative.supervisor.zygote", "--socket", str(path)],
            None,
            None,
            self.work_dir / "zygote.log",
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ZYGOTE_START_TIMEOUT
        while loop.time() < deadline and self._zygote.returncode is None:
            try:
                reader, self._writer = await asyncio.open_unix_connection(str(path))
            except OSError:
                # the zygote is importing; its socket appears when it is ready
                await asyncio.sleep(0.02)
                continue
            self._reader_task = asyncio.create_task(self._read(reader), name="zygote-reader")
            log.info("zygote ready (pid %d)", self._zygote.pid)
            return True
        log.warning("the zygote did not start; see %s", self.work_dir / "zygote.log")
        return False

    async def _fork(
        self, argv: Sequence[str], env: dict[str, str], cwd: Path | None, log_path: Path
    ) -> ForkedProcess:
        assert self._writer is not None
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
            if self._writer is not None:
                self._writer.close()
