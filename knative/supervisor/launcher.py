"""How the supervisor starts a replica's process: forked from the warm zygote, or exec'd.

`Launcher.spawn` returns an object shaped like `asyncio.subprocess.Process` (`pid`,
`returncode`, `await wait()`), whichever way the replica started, so the supervisor watches and
stops both alike (by process group: every replica leads its own session).

The zygote (`knserve.knative.supervisor.zygote`) starts with the plane and warms up in the background; a
replica asked for meanwhile waits for it, which costs nothing, since an exec'd replica would do
the same imports. A replica whose environment a fork cannot honour (the zygote declines it) is
exec'd; so are all replicas if the zygote cannot start or dies (and a dead zygote's
orphans are stopped by the supervisor, which sees them exit with code None).

A revision's later replicas are forked from its own warm template, which holds its model
(knserve.knative.supervisor.templates), once that is ready.

Nothing started here outlives the plane: the zygote and exec'd replicas get the parent-death
signal (knserve.functions.parent_death; they are started from the event loop's thread, which
lives as long as the plane), forked replicas get it from the zygote, and every one is recorded
(knserve.knative.supervisor.process_records) for the next plane on the data dir to stop, should any remain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from knserve.functions.parent_death import dying_with_parent
from knserve.knative.supervisor.process_records import ProcessRecords
from knserve.knative.supervisor.templates import DEFAULT_BUDGET_BYTES, Key, Templates
from knserve.knative.supervisor.zygote import forkable
from knserve.knative.supervisor.zygote_link import Declined, ForkedProcess, ZygoteLink

__all__ = ["Declined", "ForkedProcess", "Launcher"]

log = logging.getLogger(__name__)

ZYGOTE_START_TIMEOUT = 60.0


class Launcher:
    """Starts replicas; see the module docstring."""

    def __init__(
        self,
        work_dir: Path,
        use_zygote: bool = True,
        template_budget_bytes: int = DEFAULT_BUDGET_BYTES,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.use_zygote = use_zygote
        self._zygote: asyncio.subprocess.Process | None = None
        self._link: ZygoteLink | None = None
        self._starting: asyncio.Task[bool] | None = None
        self.records = ProcessRecords(self.work_dir / "processes")
        self._watches: set[asyncio.Task[None]] = set()
        # warm per-revision templates (knserve.knative.supervisor.templates); none without a zygote
        self.templates = Templates(self.work_dir, self, template_budget_bytes if use_zygote else 0)

    def warm_up(self) -> None:
        """Start the zygote in the background (call once the event loop runs)."""
        if self.use_zygote and self._starting is None:
            self._starting = asyncio.create_task(self._start_zygote(), name="zygote-start")

    async def spawn(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        cwd: Path | None,
        log_path: Path,
        template: Key | None = None,
    ) -> Any:
        """Start `argv`: forked from the revision's warm template (`template`, its namespace and
        name) when it has one ready, else from the zygote when it can run it, else exec'd; a
        revision without a template gets one started beside this replica."""
        if template is not None:
            link = self.templates.ready(template, argv)
            if link is not None:
                try:
                    return await link.fork(argv, env, cwd, log_path)
                except (Declined, OSError, RuntimeError) as exc:
                    log.info("not forked from the template of %s/%s: %s", *template, exc)
            else:
                self.templates.want(template, argv, env, cwd)
        if self.use_zygote and forkable(argv) is not None and await self._zygote_ready():
            assert self._link is not None
            try:
                return await self._link.fork(argv, env, cwd, log_path)
            except Declined as exc:
                log.info("starting %s the ordinary way, not forked: %s", argv[2], exc)
            except (OSError, RuntimeError) as exc:
                log.warning(
                    "zygote could not fork (%s); starting the replica the ordinary way", exc
                )
        return await self._exec(argv, env, cwd, log_path)

    async def start_template(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        cwd: Path | None,
        log_path: Path,
        forked: bool,
    ) -> Any:
        """Start a template's process: forked from the zygote, or exec'd (another interpreter)."""
        if forked:
            if not await self._zygote_ready():
                raise RuntimeError("the zygote is not running")
            assert self._link is not None
            return await self._link.fork(argv, env, cwd, log_path)
        return await self._exec(argv, env, cwd, log_path)

    async def drop_template(self, namespace: str, revision: str) -> None:
        """The revision is gone: so is its template."""
        await self.templates.drop((namespace, revision))

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
        await self.templates.close()
        if self._starting is not None:
            self._starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._starting
        if self._link is not None:
            await self._link.close()
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
        if self._link is not None and self._link.open:
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
                self._link = await ZygoteLink.connect(path, self.records)
            except OSError:
                # the zygote is importing; its socket appears when it is ready
                await asyncio.sleep(0.02)
                continue
            log.info("zygote ready (pid %d)", self._zygote.pid)
            return True
        log.warning("the zygote did not start; see %s", self.work_dir / "zygote.log")
        return False
