"""`knserve up` on a port that is taken: one line naming the port and its flag, exit 2, nothing left."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from net_fixtures import free_port, listening_socket


def cmdlines() -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit():
                found[int(entry.name)] = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                )
        except (FileNotFoundError, ProcessLookupError):
            pass  # it exited while we looked
    return found


@pytest.mark.parametrize("flag", ["--port", "--api-port", "--broker-port"])
def test_a_port_in_use_is_one_line_naming_its_flag_exit_2_and_nothing_started(
    flag: str, tmp_path: Path
) -> None:
    held, port = listening_socket()
    ports = {
        "--port": str(free_port()),
        "--api-port": str(free_port()),
        "--broker-port": str(free_port()),
    }
    ports[flag] = str(port)
    data_dir = tmp_path / "plane"
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "knserve.knative.cli",
                "up",
                "--data-dir",
                str(data_dir),
                *(item for pair in ports.items() for item in pair),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        held.close()
    assert result.stderr == f"Error: port {port} is in use; choose another with {flag}\n"
    assert result.returncode == 2
    assert not (data_dir / "run" / "zygote.log").exists()  # the zygote never started
    assert [cmd for cmd in cmdlines().values() if str(data_dir) in cmd] == []
