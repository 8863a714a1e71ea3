"""knserve works with both majors of the CloudEvents SDK: 1.x (what kserve 0.21 pins, so the test
venv, which has kserve, runs on it) and 2.x (its `cloudevents.v1` layout).

The suite runs on the installed major; this test installs the other one from the package index
into a folder put first on PYTHONPATH and runs the CloudEvents tests again on it, in a child
pytest, so both majors really serve CloudEvents."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from knserve.runtime.protocols.cloudevents_sdk import SDK_VERSION

REPO = Path(__file__).resolve().parents[2]
CLOUDEVENTS_TESTS = ["tests/runtime/test_cloudevents_protocol.py"]


def _major(version: str) -> int:
    return int(version.split(".", 1)[0])


@pytest.mark.slow
def test_the_cloudevents_tests_pass_on_the_other_sdk_major(tmp_path: Path) -> None:
    installed = _major(SDK_VERSION)
    other = "cloudevents>=2,<3" if installed < 2 else "cloudevents>=1.10,<2"
    target = tmp_path / "other-major"
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            other,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stderr
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]),
    }
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "from knserve.runtime.protocols.cloudevents_sdk import SDK_VERSION; print(SDK_VERSION)",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert _major(probe.stdout.strip()) != installed, probe.stdout  # the other major is in use
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *CLOUDEVENTS_TESTS],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout
