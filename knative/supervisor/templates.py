"""Warm templates, one per revision: its replicas forked with their model already in memory.

Forking the plane's zygote skips a replica's imports; what remains of a cold start is the
replica's own work before it listens: a model server loading its model, a function's process
exec'd in the function's environment (its interpreter is not the plane's, so the zygote cannot
fork it). A template does that work once per revision and then forks each replica from it:

- a model server (`python -m knserve.runtime`, a module with a hook in the zygote's
  TEMPLATE_HOOKS) gets a template forked from the zygote that loads the revision's model and
  keeps it (copy-on-write: replicas share its pages until they write them);
- a function's host (`python -m knserve.functions.host`, with a hook too) gets a template that
  imports the function and makes its server; for a function built with its own environment (its
  interpreter is not the plane's) that template is a zygote exec'd with that interpreter.

A template starts in the background beside its revision's first replica, which starts as it
did before; once ready, every later replica (the next scale from zero) is forked from it. It
lives as long as its revision: deleting the revision drops it. All templates together stay
within a memory budget (their USS, the pages only they hold, which dropping one frees; measured
once a template is ready, before it forks the spare replica it keeps ahead, which then shares
those pages; the spare's own USS, the pages its server's startup dirtied, added to it), which
the plane reports on /metrics: a template that does not fit makes room by dropping the least
recently used idle ones (replicas forked from a template die with it, so a template with
running replicas is never dropped for room), or is not kept. A template whose model cannot be
held (a repository, gRPC, a load that leaves threads running) exits and is not tried again for
its revision: its replicas start as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from knserve.knative.supervisor.zygote import TEMPLATE_HOOKS, forkable
from knserve.knative.supervisor.zygote_link import ZygoteLink

log = logging.getLogger(__name__)

DEFAULT_BUDGET_BYTES = 512 * 2**20
TEMPLATE_START_TIMEOUT = 120.0
# What a function's host imports: preloaded by a template in the function's environment.
FUNCTION_PRELOAD = (
    "knserve.functions.host",
    "knserve.runtime.app",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.auto",
    "uvicorn.lifespan.on",
    "uvicorn.loops.uvloop",
    "encodings.idna",
)

Key = tuple[str, str]  # (namespace, revision)


def uss_bytes(pid: int) -> int:
    """The process's unique set size: its private pages (what ending it frees), from
    /proc/PID/smaps_rollup; 0 when it cannot be read."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    kib = 0
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in ("Private_Clean", "Private_Dirty"):
            kib += int(value.split()[0])
    return kib * 1024


@dataclass(frozen=True)
class Held:
    """A template as the budget sees it."""

    key: Key
    uss: int
    last_used: float
    busy: bool  # replicas forked from it run: dropping it would end them


def to_drop(held: Sequence[Held], budget: int, incoming: int) -> list[Key] | None:
    """The templates to drop, least recently used idle ones first, so that `incoming` more
    bytes fit in `budget`; None when they cannot fit even so."""
    total = sum(h.uss for h in held) + incoming
    dropped: list[Key] = []
    for victim in sorted((h for h in held if not h.busy), key=lambda h: h.last_used):
        if total <= budget:
            break
        dropped.append(victim.key)
        total -= victim.uss
    return dropped if total <= budget else None


def template_command(argv: Sequence[str], socket: Path) -> tuple[list[str], bool] | None:
    """The command that starts a template for replicas run by `argv`, and whether the zygote
    forks it (else it is exec'd); None when `argv` cannot have one."""
    if len(argv) < 3 or argv[1] != "-m" or not argv[2].startswith("knserve."):
        return None
    zygote = ["-m", "knserve.knative.supervisor.zygote", "--socket", str(socket)]
    if forkable(argv) is not None:
        if argv[2] not in TEMPLATE_HOOKS:
            return None  # the zygote already holds all such a replica loads
        return [sys.executable, *zygote, "--template", *argv], True
    preload = ["--preload", ",".join(FUNCTION_PRELOAD)]
    return [argv[0], *zygote, *preload, "--template", *argv], False


@dataclass
class _Template:
    key: Key
    argv: list[str]
    process: Any = None  # ForkedProcess or asyncio.subprocess.Process
    link: ZygoteLink | None = None
    uss: int = 0
    last_used: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None

    def cost(self) -> int:
        """What it holds: its own USS (measured before its spare shared its pages) and its
        spare's (the replica it keeps started ahead, whose private pages it dirtied)."""
        if self.process is None or self.link is None:
            return self.uss
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return self.uss
        spares = (int(c) for c in children if not self.link.forked(int(c)))
        return self.uss + sum(uss_bytes(spare) for spare in spares)

    def held(self) -> Held:
        return Held(
            self.key, self.cost(), self.last_used, self.link is not None and self.link.live() > 0
        )


class Templates:
    """The plane's templates; the launcher asks it for a revision's and starts it."""

    def __init__(self, work_dir: Path, launcher: Any, budget_bytes: int) -> None:
        self.work_dir = work_dir
        self.launcher = launcher  # knserve.knative.supervisor.launcher.Launcher: fork and exec
        self.budget_bytes = budget_bytes
        self._templates: dict[Key, _Template] = {}
        self._refused: set[Key] = set()  # revisions whose template could not be made
        self._serial = 0
        self._drops: set[asyncio.Task[None]] = set()

    def ready(self, key: Key, argv: Sequence[str]) -> ZygoteLink | None:
        """The revision's ready template for `argv`, marked used; None when there is none."""
        template = self._templates.get(key)
        if template is None or template.link is None:
            return None
        if not template.link.open:  # it died: its revision's replicas start as before
            self._templates.pop(key, None)
            self._refused.add(key)
            return None
        if template.argv != list(argv):
            return None
        template.last_used = time.monotonic()
        return template.link

    def want(self, key: Key, argv: Sequence[str], env: dict[str, str], cwd: Path | None) -> None:
        """Start the revision's template in the background unless it has one, or had one
        refused, or the budget has no room."""
        if self.budget_bytes <= 0 or key in self._templates or key in self._refused:
            return
        self._serial += 1
        socket = self.work_dir / f"template-{os.getpid()}-{self._serial}.sock"
        command = template_command(argv, socket)
        if command is None:
            self._refused.add(key)
            return
        known = [t.uss for t in self._templates.values() if t.uss]
        estimate = int(statistics.median(known)) if known else 0
        if not self._make_room(estimate, key):
            return
        template = self._templates[key] = _Template(key, list(argv))
        template.task = asyncio.create_task(
            self._start(template, command, socket, env, cwd), name=f"template-{key[1]}"
        )

    def usage(self) -> dict[Key, tuple[int, int]]:
        """(pid, USS bytes with its spare's) of each ready template."""
        return {
            k: (t.process.pid, t.cost()) for k, t in self._templates.items() if t.link is not None
        }

    async def drop(self, key: Key) -> None:
        """End the revision's template (its revision is gone, or the budget needs its room)."""
        template = self._templates.pop(key, None)
        if template is None:
            return
        if template.task is not None and not template.task.done():
            template.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await template.task
        await self._end(template)

    async def _end(self, template: _Template) -> None:
        if template.link is not None:
            await template.link.close()
        process = template.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 5)
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                await process.wait()
        log.info("template of %s/%s dropped", *template.key)

    async def close(self) -> None:
        await asyncio.gather(*(self.drop(k) for k in list(self._templates)))

    def _make_room(self, incoming: int, keep: Key | None = None) -> bool:
        held = [t.held() for k, t in self._templates.items() if k != keep]
        victims = to_drop(held, self.budget_bytes, incoming)
        if victims is None:
            return False
        for victim in victims:
            task = asyncio.create_task(self.drop(victim), name=f"drop-template-{victim[1]}")
            self._drops.add(task)
            task.add_done_callback(self._drops.discard)
        return True

    async def _start(
        self,
        template: _Template,
        command: tuple[list[str], bool],
        socket: Path,
        env: dict[str, str],
        cwd: Path | None,
    ) -> None:
        argv, forked = command
        key = template.key
        log_path = self.work_dir / f"template-{key[0]}_{key[1]}.log"
        try:
            template.process = await self.launcher.start_template(argv, env, cwd, log_path, forked)
            deadline = time.monotonic() + TEMPLATE_START_TIMEOUT
            while template.process.returncode is None and time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    template.link = await ZygoteLink.connect(socket, self.launcher.records)
                    break
                # the template is loading; its socket appears once it holds the model
                await asyncio.sleep(0.02)
        except Exception as exc:  # a zygote that cannot fork, an interpreter gone: no template
            log.info("no template for %s/%s: %s", *key, exc)
        if template.link is None:
            self._refused.add(key)
            self._templates.pop(key, None)
            if template.process is not None and template.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(template.process.pid, signal.SIGKILL)
            log.info("no template for %s/%s; see %s", *key, log_path)
            return
        template.uss = uss_bytes(template.process.pid)
        if not self._make_room(template.uss, key):
            log.info(
                "template of %s/%s (USS %.1f MiB) does not fit the budget of %.0f MiB",
                *key,
                template.uss / 2**20,
                self.budget_bytes / 2**20,
            )
            self._refused.add(key)
            self._templates.pop(key, None)
            await self._end(template)
            return
        log.info(
            "template of %s/%s ready (pid %d, USS %.1f MiB)",
            *key,
            template.process.pid,
            template.uss / 2**20,
        )


class TemplateCollector(Collector):
    """The templates' memory on the plane's /metrics: the budget and each template's USS."""

    def __init__(self, templates: Templates) -> None:
        self.templates = templates

    def collect(self) -> Iterator[Any]:
        budget = GaugeMetricFamily(
            "knserve_template_budget_bytes", "Memory the revisions' warm templates may hold (USS)."
        )
        budget.add_metric([], self.templates.budget_bytes)
        uss = GaugeMetricFamily(
            "knserve_template_uss_bytes",
            "A warm template's unique set size with its spare replica's (what dropping it frees).",
            labels=["namespace", "revision"],
        )
        for (namespace, revision), (_, size) in self.templates.usage().items():
            uss.add_metric([namespace, revision], size)
        yield budget
        yield uss
