"""How a replica gets its port map: `KNSERVE_PORT_MAP` always, and the LD_PRELOAD shim when exec'd.

The mapping itself is pure (knserve.knative.supervisor.port_map). A process knserve does not
control (KServe's or MLServer's server, a user's binary) learns it through `port_map_shim.c`, a
wrapper of bind() preloaded into it. The shim ships as C source and is compiled on first use with
the system's C compiler (`$CC`, else `cc`) into the cache (`$XDG_CACHE_HOME/knserve/port-map/`,
named by the hash of its source and the machine), atomically, so planes share one build.

A replica forked from the zygote (`python -m knserve.…`) cannot be given a preload (the C library
is loaded already) and does not need one: knserve's runtime maps its own `--http_port` from the
variable. Where the shim cannot be built (no compiler, not Linux) the plane says so once in its
log and in the log of each replica that would have had it; such a replica must listen on `$PORT`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from knserve.knative.supervisor.port_map import ENV_NAME, PortMap, ephemeral_range
from knserve.knative.supervisor.zygote import forkable
from knserve.runtime.cache_home import knserve_cache_dir

log = logging.getLogger(__name__)

SOURCE = "port_map_shim.c"
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


class ShimUnavailable(Exception):
    """The shim cannot be built here; the message says why and what to do."""


def cache_dir() -> Path:
    """Where built shims are kept: `$XDG_CACHE_HOME/knserve/port-map` (`~/.cache/…`)."""
    return knserve_cache_dir("port-map")


def build(directory: Path, compiler: str | None = None) -> Path:
    """The shim's shared library in `directory`, compiled now unless a build of the same source
    for this machine is there already."""
    if not sys.platform.startswith("linux"):
        raise ShimUnavailable(f"the port map needs Linux's LD_PRELOAD; this is {sys.platform}")
    source = resources.files(__package__).joinpath(SOURCE).read_bytes()
    key = hashlib.sha256(source + platform.machine().encode()).hexdigest()[:16]
    library = directory / f"knserve-port-map-{key}.so"
    if library.exists():
        return library
    cc = compiler or os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        raise ShimUnavailable(
            f"no C compiler ({cc!r}) to build the port map: install one (apt-get install gcc) "
            "or set CC"
        )
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f".{library.stem}.{os.getpid()}"
    source_path = partial.with_suffix(".c")
    source_path.write_bytes(source)
    try:
        result = subprocess.run(
            [cc, "-shared", "-fPIC", "-O2", "-o", str(partial), str(source_path), "-ldl"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines() or ["(no output)"]
            raise ShimUnavailable(f"{cc} could not build the port map: {lines[-1]}")
        os.replace(partial, library)  # atomic: a half-written library is never found
    finally:
        source_path.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    return library


class ReplicaPorts:
    """The port map's environment for each replica, building the shim once, when first needed."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or cache_dir()
        self._shim: Path | None = None
        self.unavailable: str | None = None  # why there is no shim, once that is known
        self._building: asyncio.Task[None] | None = None

    async def shim(self) -> Path | None:
        if self._building is None:
            self._building = asyncio.create_task(self._build(), name="port-map-shim")
        await asyncio.shield(self._building)
        return self._shim

    async def _build(self) -> None:
        try:
            self._shim = await asyncio.to_thread(build, self.directory)
        except (ShimUnavailable, OSError, subprocess.SubprocessError) as exc:
            self.unavailable = str(exc)
            log.warning("replicas that are not knserve's runtime must listen on $PORT: %s", exc)

    async def env(
        self, container: Mapping[str, Any], port: int, argv: Sequence[str], env: Mapping[str, str]
    ) -> tuple[dict[str, str], str | None]:
        """The variables that give a replica of `container` on `port` its port map, and a note
        for its log when it should have had the shim and cannot (PortError for bad `ports`)."""
        mapping = PortMap.for_container(container, port, _ephemeral())
        added = {ENV_NAME: mapping.env_value()}
        if forkable(argv) is not None:
            return added, None  # knserve's runtime: forked or not, it maps its own port
        shim = await self.shim()
        if shim is None:
            return added, (
                f"knserve: ports are not mapped ({self.unavailable}); this replica must listen "
                f"on $PORT ({port}), not on a fixed port such as {mapping.declared}"
            )
        preload = env.get("LD_PRELOAD")
        added["LD_PRELOAD"] = f"{shim}:{preload}" if preload else str(shim)
        return added, None


def _ephemeral() -> tuple[int, int]:
    try:
        return ephemeral_range(EPHEMERAL_RANGE_FILE.read_text())
    except OSError:
        return ephemeral_range(None)
