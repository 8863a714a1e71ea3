"""The real kubectl (Debian's `kubectl`, installed when missing) against the control API.

`kubectl_api` serves the control API over a SQLite store in the test's folder, on a loopback
port, and gives a `Kubectl` whose kubeconfig has one context for it; the store is there for the
test to read or to write what a controller would (status). Discovery and OpenAPI caches live in
the test's folder, so every test sees the server as it is.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from debian_packages import ensure_debian
from net_fixtures import serve_in_thread

from knserve.knative.apiserver.server import create_app
from knserve.knative.apiserver.store import Store


class Kubectl:
    """kubectl with its own kubeconfig and cache folder."""

    def __init__(
        self, folder: Path, server: str | None = None, kubeconfig: Path | None = None
    ) -> None:
        ensure_debian({"kubectl": "kubectl"})
        self.folder = folder
        self.kubeconfig = kubeconfig or folder / "kubeconfig"
        if server is not None:
            config = {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "plane", "cluster": {"server": server}}],
                "users": [{"name": "plane", "user": {}}],
                "contexts": [{"name": "plane", "context": {"cluster": "plane", "user": "plane"}}],
                "current-context": "plane",
            }
            self.kubeconfig.write_text(yaml.safe_dump(config))

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """`kubectl ARGS`; with `check`, a failure fails the test with kubectl's stderr."""
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(self.folder)}
        done = subprocess.run(
            ["kubectl", f"--cache-dir={self.folder / 'cache'}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        if check:
            assert done.returncode == 0, f"kubectl {' '.join(args)} failed:\n{done.stderr}"
        return done

    def apply(self, *docs: dict[str, Any], extra: tuple[str, ...] = ()) -> str:
        return self.run("apply", *extra, "-f", "-", stdin=yaml.safe_dump_all(docs)).stdout

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """kubectl running in the background (`get -w`); the test stops it."""
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(self.folder)}
        return subprocess.Popen(
            ["kubectl", f"--cache-dir={self.folder / 'cache'}", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )


def table_rows(output: str) -> list[list[str]]:
    """kubectl's table output as rows of cells, header first; cells are cut where the header's
    columns start, so an empty cell stays an empty string."""
    lines = output.rstrip("\n").splitlines()
    starts = [0] + [m.end() for m in re.finditer(r"\s{2,}(?=\S)", lines[0])]
    ends = [*starts[1:], None]
    return [[line[a:b].strip() for a, b in zip(starts, ends, strict=True)] for line in lines]


@pytest.fixture
def kubectl_api(tmp_path: Path) -> Iterator[tuple[Kubectl, Store]]:
    store = Store(tmp_path / "state.db")
    with serve_in_thread(create_app(store)) as url:
        yield Kubectl(tmp_path, url), store
    store.close()
