"""The supervisor: each revision's replicas as processes, kept at the count asked for.

A replica is a process started with Knative's container contract — `PORT` (a free loopback port of
its own), `K_SERVICE`, `K_CONFIGURATION`, `K_REVISION` and the container's `env` — whose output
goes to a log file. It takes traffic only once its readiness probe passes (the container's
`readinessProbe`, HTTP GET or TCP; Knative's default is a TCP probe on the port), probed on the
replica's port whatever port the probe names, as Knative's queue-proxy does. Its binds follow
the port map (knserve.knative.supervisor.port_map): the container's declared port is `$PORT`.

A replica that exits unasked is restarted after a back-off that doubles with each consecutive
failure (`restart_delay`, pure), and its revision's status carries the exit code and the last log
lines, so a container that cannot start says why. Stopping drains: the replica leaves the ready
endpoints first (the gateway stops sending to it), then gets SIGTERM (uvicorn and most servers
finish their in-flight requests), then SIGKILL after the grace period.

Every change of a revision's status is announced to subscribers (the gateway, to pick up or drop
endpoints at once; the controller, to update the Revision's conditions).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from knserve.knative.supervisor.engine_env import EngineBuildError, EngineBuilds
from knserve.knative.supervisor.engines import EngineImage
from knserve.knative.supervisor.images import ImageError, engine_of, resolve, with_image_env
from knserve.knative.supervisor.launcher import Launcher
from knserve.knative.supervisor.port_map import PortError
from knserve.knative.supervisor.port_map_shim import ReplicaPorts
from knserve.knative.supervisor.probes import Probe, until_failing
from knserve.knative.supervisor.storage_initializer import InitFailure, StorageInitializer

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 12
FAST_PROBE_SECONDS = 0.1  # how long a starting replica is probed every millisecond


@dataclass(frozen=True)
class RevisionProcessSpec:
    namespace: str
    service: str
    configuration: str
    revision: str
    container: dict[str, Any]
    container_concurrency: int = 0
    timeout_seconds: int = 300
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReplicaStatus:
    desired: int
    ready: int
    endpoints: tuple[str, ...]
    failure: str | None
    # (exit code, termination message) of the last replica that exited unasked, as the kubelet
    # reports a container's last termination state; None once a replica is ready again
    terminated: tuple[int, str] | None = None
    # (reason, message) while no replica can start yet: an engine's environment being built
    waiting: tuple[str, str] | None = None


# The kubelet's limits on a termination message read from the log (FallbackToLogsOnError).
TERMINATION_MESSAGE_LINES, TERMINATION_MESSAGE_BYTES = 80, 2048


def termination(code: int, log_path: Path | None) -> tuple[int, str]:
    """A replica's exit as Kubernetes reports it: the exit code (128 + N for a signal N) and,
    for a failure, the last 80 lines of its log, at most its last 2048 bytes
    (terminationMessagePolicy FallbackToLogsOnError, Knative's default)."""
    exit_code = 128 - code if code < 0 else code
    if exit_code == 0 or log_path is None or not log_path.exists():
        return exit_code, ""
    lines = log_path.read_bytes().splitlines(keepends=True)[-TERMINATION_MESSAGE_LINES:]
    tail = b"".join(lines)[-TERMINATION_MESSAGE_BYTES:]
    return exit_code, tail.decode(errors="replace").rstrip()


def restart_delay(consecutive_failures: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds to wait before restarting a replica that failed `consecutive_failures` times in a row."""
    if consecutive_failures <= 0:
        return 0.0
    return float(min(cap, base * 2 ** (consecutive_failures - 1)))


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class _Replica:
    def __init__(self, index: int) -> None:
        self.index = index
        self.port = 0
        self.process: asyncio.subprocess.Process | None = None
        self.ready = False
        self.stopping = False
        self.task: asyncio.Task[None] | None = None
        self.log_path: Path | None = None
        self.replaced: str | None = None  # why the supervisor ended it (a failing probe)


class _Revision:
    def __init__(self, spec: RevisionProcessSpec) -> None:
        self.spec = spec
        self.desired = 0
        self.replicas: list[_Replica] = []
        self.failure: str | None = None
        self.terminated: tuple[int, str] | None = None
        self.waiting: tuple[str, str] | None = None
        self.failures = 0
        self.next_index = 0


class Supervisor:
    """Keeps revisions at their replica counts; see the module docstring."""

    def __init__(
        self,
        log_dir: Path,
        host: str = "127.0.0.1",
        grace_seconds: float = 10.0,
        probe_interval: float = 0.005,
        startup_timeout: float = 300.0,
        extra_env: dict[str, str] | None = None,
        launcher: Launcher | None = None,
        ports: ReplicaPorts | None = None,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.launcher = launcher or Launcher(self.log_dir, use_zygote=False)
        self.ports = ports or ReplicaPorts()
        self.host = host
        self.grace_seconds = grace_seconds
        self.probe_interval = probe_interval
        self.startup_timeout = startup_timeout
        self.extra_env = extra_env or {}
        self._revisions: dict[tuple[str, str], _Revision] = {}
        self._subscribers: list[Callable[[str, str], None]] = []
        self._closing = False
        # KServe's storage-initializer: a revision's model, fetched before its first replica
        self.storage = StorageInitializer(self.log_dir, self._notify, self.launcher.records)
        self.engines = EngineBuilds()
        self._prober: httpx.AsyncClient | None = None

    # ---- interface ---------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[str, str], None]) -> None:
        self._subscribers.append(callback)

    def status(self, namespace: str, revision: str) -> ReplicaStatus:
        rev = self._revisions.get((namespace, revision))
        if rev is None:
            return ReplicaStatus(0, 0, (), None)
        ready = [r for r in rev.replicas if r.ready and not r.stopping]
        return ReplicaStatus(
            rev.desired,
            len(ready),
            tuple(f"{self.host}:{r.port}" for r in ready),
            rev.failure,
            rev.terminated,
            rev.waiting,
        )

    def pids(self, namespace: str, revision: str) -> list[int]:
        rev = self._revisions.get((namespace, revision))
        return [r.process.pid for r in rev.replicas if r.process] if rev else []

    def replica_states(self, namespace: str, revision: str) -> list[tuple[int | None, bool]]:
        """(pid, ready) of each replica not being stopped; pid None until its process runs
        (a Pending pod, to the HPA)."""
        rev = self._revisions.get((namespace, revision))
        live = [r for r in rev.replicas if not r.stopping] if rev else []
        return [
            (r.process.pid if r.process and r.process.returncode is None else None, r.ready)
            for r in live
        ]

    async def ensure(self, spec: RevisionProcessSpec, replicas: int) -> None:
        key = (spec.namespace, spec.revision)
        rev = self._revisions.get(key)
        if rev is None:
            rev = self._revisions[key] = _Revision(spec)
        rev.spec = spec
        changed = rev.desired != max(0, replicas)
        rev.desired = max(0, replicas)
        live = [r for r in rev.replicas if not r.stopping]
        for _ in range(rev.desired - len(live)):
            self._start(rev)
            changed = True
        if len(live) > rev.desired:
            # stop the newest (least warmed up) first, preferring ones not yet ready
            victims = sorted(live, key=lambda r: (r.ready, -r.index))[: len(live) - rev.desired]
            await asyncio.gather(*(self._stop(rev, r) for r in victims))
            changed = True
        # Only a change is news: subscribers (the controller) react to news by calling ensure again.
        if changed:
            self._notify(spec.namespace, spec.revision)

    async def remove(self, namespace: str, revision: str) -> None:
        rev = self._revisions.pop((namespace, revision), None)
        if rev is None:
            return
        rev.desired = 0
        self.storage.forget(namespace, revision)
        await asyncio.gather(*(self._stop(rev, r) for r in list(rev.replicas)))
        await self.launcher.drop_template(namespace, revision)  # kept only while it exists
        self._notify(namespace, revision)

    async def close(self) -> None:
        self._closing = True
        await asyncio.gather(*(self.remove(ns, name) for ns, name in list(self._revisions)))
        if self._prober is not None:
            await self._prober.aclose()
        await self.storage.close()
        await self.engines.close()
        await self.launcher.close()

    # ---- replicas ----------------------------------------------------------------------------

    def _start(self, rev: _Revision) -> None:
        replica = _Replica(rev.next_index)
        rev.next_index += 1
        rev.replicas.append(replica)
        replica.task = asyncio.create_task(
            self._run(rev, replica), name=f"replica-{rev.spec.revision}-{replica.index}"
        )

    async def _run(self, rev: _Revision, replica: _Replica) -> None:
        """Start, probe and watch one replica; restart it with back-off while it is wanted."""
        spec = rev.spec
        while not replica.stopping and not self._closing:
            container = with_image_env(spec.container)
            engine = engine_of(container)
            if engine is not None and not await self._engine_built(rev, engine):
                rev.failures += 1
                await asyncio.sleep(restart_delay(rev.failures))
                continue
            replica.port = _free_port(self.host)
            env = {**os.environ, **self.extra_env}
            for entry in container.get("env") or []:
                if "value" in entry:
                    env[entry["name"]] = str(entry["value"])
                elif entry.get("valueFrom"):
                    rev.failure = (
                        f"env {entry['name']}: valueFrom (secrets, config maps, fields) is not "
                        "available on the local plane; give a value"
                    )
                    self._notify(spec.namespace, spec.revision)
                    return
            env.update(
                PORT=str(replica.port),
                K_SERVICE=spec.service,
                K_CONFIGURATION=spec.configuration,
                K_REVISION=spec.revision,
                # The downward API's names: logs and spans say which replica wrote them.
                POD_NAMESPACE=env.get("POD_NAMESPACE") or spec.namespace,
                POD_NAME=f"{spec.revision}-{replica.index}",
            )
            try:  # the init container: the model fetched, /mnt/models mapped to its folder
                container = await self.storage.container_for(
                    spec.namespace, spec.revision, container, spec.annotations, env
                )
            except InitFailure as exc:  # as a crashing init container: reported, restarted
                rev.failures += 1
                rev.terminated, rev.failure = (exc.exit_code, exc.message), exc.message
                self._notify(spec.namespace, spec.revision)
                await asyncio.sleep(restart_delay(rev.failures))
                continue
            env.update(
                {e["name"]: str(e["value"]) for e in container.get("env") or [] if "value" in e}
            )
            try:
                argv, cwd = resolve(container, env)
                mapped, note = await self.ports.env(container, replica.port, argv, env)
            except (ImageError, PortError) as exc:
                rev.failure = str(exc)
                self._notify(spec.namespace, spec.revision)
                return
            env.update(mapped)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            replica.log_path = (
                self.log_dir / f"{spec.namespace}_{spec.revision}_{replica.index}.log"
            )
            if note:
                with replica.log_path.open("a") as out:
                    out.write(note + "\n")
            started = time.monotonic()
            # Probed from now, not from when its pid is known: a replica forked from a warm
            # template may listen before the plane's loop has read the template's answer.
            probing = asyncio.create_task(self._probe_until_ready(spec, replica))
            try:
                replica.process = await self.launcher.spawn(
                    argv, env, cwd, replica.log_path, template=(spec.namespace, spec.revision)
                )
            except OSError as exc:
                probing.cancel()
                rev.failure = f"cannot start {argv[0]!r}: {exc.strerror or exc}"
                self._notify(spec.namespace, spec.revision)
                return
            except BaseException:
                probing.cancel()
                raise
            log.info(
                "revision %s/%s replica %d: pid %d on port %d",
                spec.namespace,
                spec.revision,
                replica.index,
                replica.process.pid,
                replica.port,
            )
            exited = asyncio.create_task(replica.process.wait())
            done, _ = await asyncio.wait({exited, probing}, return_when=asyncio.FIRST_COMPLETED)
            if probing in done and probing.result():
                log.info(
                    "revision %s/%s replica %d: ready in %.0f ms",
                    spec.namespace,
                    spec.revision,
                    replica.index,
                    (time.monotonic() - started) * 1000,
                )
                replica.ready = True
                rev.failure = rev.terminated = None
                rev.failures = 0
                self._notify(spec.namespace, spec.revision)
                await self._watch_probes(rev, replica, container, exited)
            else:
                probing.cancel()
            code = await exited
            replica.ready = False
            if code == -1:  # its zygote died, so it may still run, unwatched: stop it
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(replica.process.pid, signal.SIGKILL)
            if replica.stopping or self._closing:
                return
            rev.failures += 1
            ran = time.monotonic() - started
            rev.terminated = termination(code, replica.log_path)
            why = replica.replaced or f"container exited with code {code} after {ran:.1f}s"
            replica.replaced = None
            rev.failure = f"{why}; last log lines:\n" + self._tail(replica)
            log.warning(
                "revision %s/%s replica %d exited (%s)",
                spec.namespace,
                spec.revision,
                replica.index,
                code,
            )
            self._notify(spec.namespace, spec.revision)
            await asyncio.sleep(restart_delay(rev.failures))

    async def _engine_built(self, rev: _Revision, engine: EngineImage) -> bool:
        """Wait for the engine's environment (building it on its first use on this machine),
        the revision's status saying so meanwhile; False, with the failure, if it cannot be."""
        spec = rev.spec
        last_told = 0.0

        def progress(message: str) -> None:
            nonlocal last_told
            rev.waiting = (
                "BuildingEngine",
                f"building the environment of {engine.label} "
                f"(its first start on this machine): {message}",
            )
            # pip reports each package: the status need not change faster than once a second
            if time.monotonic() - last_told >= 1.0:
                last_told = time.monotonic()
                self._notify(spec.namespace, spec.revision)

        try:
            await self.engines.environment(engine, progress)
        except EngineBuildError as exc:
            rev.failure = f"the environment of {engine.label} could not be built: {exc}"
            return False
        finally:
            rev.waiting = None
            self._notify(spec.namespace, spec.revision)
        return True

    def _probe_client(self) -> httpx.AsyncClient:
        """One client for every starting replica's HTTP probe: making one costs 30 ms (its TLS
        context), which each function's cold start paid. Certificates are not verified, as the
        kubelet's HTTPS probes do not verify them."""
        if self._prober is None:
            # no connection kept: a probe's is the replica's to close, as a kubelet's is
            keep_none = httpx.Limits(max_keepalive_connections=0)
            self._prober = httpx.AsyncClient(timeout=2.0, verify=False, limits=keep_none)
        return self._prober

    async def _probe_until_ready(self, spec: RevisionProcessSpec, replica: _Replica) -> bool:
        probe = spec.container.get("readinessProbe") or {}
        started = time.monotonic()
        deadline = started + self.startup_timeout
        http_get = probe.get("httpGet")
        while time.monotonic() < deadline:
            try:
                if http_get:
                    # On the serving port, whatever port the probe names, as Knative's
                    # queue-proxy probes: its declared port is mapped to replica.port.
                    path = http_get.get("path", "/")
                    url = f"http://{self.host}:{replica.port}{path}"
                    response = await self._probe_client().get(url)
                    if 200 <= response.status_code < 400:
                        return True
                else:
                    _, writer = await asyncio.open_connection(self.host, replica.port)
                    writer.close()
                    return True
            except (OSError, httpx.HTTPError):
                pass
            # The replica is a process we do not control: polling its port is the only signal;
            # every millisecond at first, as one forked from a warm template listens in a few.
            fresh = time.monotonic() - started < FAST_PROBE_SECONDS
            await asyncio.sleep(min(self.probe_interval, 0.001) if fresh else self.probe_interval)
        return False

    async def _watch_probes(
        self,
        rev: _Revision,
        replica: _Replica,
        container: dict[str, Any],
        exited: asyncio.Task[int],
    ) -> None:
        """While the ready replica runs, probe it as the kubelet does (knserve.knative.supervisor.
        probes); one that keeps failing leaves the endpoints and is ended, to be replaced."""
        probes = [
            probe
            for probe in (Probe.of(container, "readiness"), Probe.of(container, "liveness"))
            if probe is not None
        ]
        watch = asyncio.create_task(until_failing(self.host, replica.port, probes))
        try:
            done, _ = await asyncio.wait({exited, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
        if watch not in done or replica.stopping:
            return
        failed = watch.result()
        replica.replaced = failed.failure()
        log.warning(
            "revision %s/%s replica %d: %s",
            rev.spec.namespace,
            rev.spec.revision,
            replica.index,
            replica.replaced,
        )
        replica.ready = False
        self._notify(rev.spec.namespace, rev.spec.revision)  # leave the endpoints first
        await self._terminate(replica)

    async def _stop(self, rev: _Revision, replica: _Replica) -> None:
        replica.stopping = True
        was_ready = replica.ready
        replica.ready = False
        if was_ready:
            self._notify(rev.spec.namespace, rev.spec.revision)  # leave the endpoints first
        await self._terminate(replica)
        if replica.task is not None:
            replica.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replica.task
        if replica in rev.replicas:
            rev.replicas.remove(replica)

    async def _terminate(self, replica: _Replica) -> None:
        """SIGTERM the replica's process group, SIGKILL it after the grace period."""
        process = replica.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self.grace_seconds)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()

    def _tail(self, replica: _Replica) -> str:
        if replica.log_path is None or not replica.log_path.exists():
            return "(no output)"
        lines = replica.log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        return "\n".join(lines) or "(no output)"

    def _notify(self, namespace: str, revision: str) -> None:
        for callback in list(self._subscribers):
            try:
                callback(namespace, revision)
            except Exception:
                log.exception("supervisor subscriber failed")
