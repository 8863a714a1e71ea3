"""Real servers from Debian's packages for the tests: installed with apt-get when missing.

CI runs as root on a clean clone, so the test setup itself installs what a test needs (one
`apt-get update` per session, then `apt-get install -y`); a machine where that is impossible
fails the test with the command to run, never skips it.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

_updated = False


def ensure_debian(binaries: dict[str, str]) -> None:
    """Make every command of `binaries` (command -> Debian package) available, installing the
    packages of the missing ones."""
    global _updated
    missing = sorted({package for binary, package in binaries.items() if not shutil.which(binary)})
    if not missing:
        return
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if os.geteuid() != 0:
        pytest.fail(f"this test needs {', '.join(missing)}: run `sudo {' '.join(install)}`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = [install] if _updated else [["apt-get", "update", "-q"], install]
    for step in steps:
        done = subprocess.run(step, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.fail(f"`{' '.join(step)}` failed ({done.returncode}):\n{done.stderr[-3000:]}")
    _updated = True
    still = [binary for binary in binaries if not shutil.which(binary)]
    if still:
        pytest.fail(f"installed {', '.join(missing)} but {', '.join(still)} is still not on PATH")
