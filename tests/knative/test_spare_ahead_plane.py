"""A model server's template keeps its spare replica started ahead, on a real plane: the spare
has run its server's startup (its predict thread runs) before any request, yet listens on no
port and is no ready replica while its revision is at zero; the next scale from zero is that
spare, answering on the port the plane gave it; it goes with its template and its revision, and its memory counts in the template budget."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from net_fixtures import eventually
from plane_fixtures import LocalPlane, apply
from template_fixtures import (
    ISVC,
    alive,
    children,
    first_request_at_zero,
    iris_at_zero,
    replica_pids,
    template_of,
    template_pid,
    templates,
)

pytestmark = pytest.mark.slow


def threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:  # it exited meanwhile
        return 0


def listening_ports(pid: int) -> set[int]:
    """The TCP ports the process listens on (its socket inodes in /proc/net/tcp{,6})."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def ready_replicas(plane: LocalPlane) -> int:
    revision = plane.get("revisions", ISVC)
    return int((revision.get("status") or {}).get("actualReplicas") or 0)


def spare_started_ahead(plane: LocalPlane, template: int) -> int:
    """The template's spare once started ahead (its predict thread runs beside its event
    loop's; not the replica it last forked, which may still be exiting), checked unreachable,
    no replica, and counted in the budget."""
    replicas = set(replica_pids(plane, ISVC))
    spare = eventually(
        lambda: next((p for p in children(template) - replicas if threads(p) > 1), None),
        60,
        lambda: f"no spare started ahead under {template}\n{plane.log()[-3000:]}",
    )
    assert listening_ports(spare) == set()  # nothing can reach it yet
    assert ready_replicas(plane) == 0  # and it is no replica of the revision
    # its pages count in the template's budget, beyond the template's own USS
    own = re.search(rf"template of default/{ISVC} ready \(pid \d+, USS ([\d.]+) MiB", plane.log())
    assert own, plane.log()[-3000:]
    floor = (float(own.group(1)) + 0.1) * 2**20
    eventually(  # measured on each scrape: the spare's startup may still be dirtying pages
        lambda: templates(plane)[0][ISVC] > floor,
        30,
        lambda: f"template USS {templates(plane)[0]} not above {floor} with its spare's",
    )
    return spare


def test_the_spare_starts_its_server_ahead_but_takes_no_traffic_until_asked_for(
    fast_plane: LocalPlane, tmp_path: Path, sklearn_iris_dir: Path
) -> None:
    plane = fast_plane
    apply(plane, tmp_path, iris_at_zero(sklearn_iris_dir))
    plane.wait_ready("inferenceservices", "iris", timeout=120)
    template_of(plane, ISVC)
    template = template_pid(plane, ISVC)

    for _ in range(2):
        plane.wait_scaled_to_zero(ISVC)
        spare = spare_started_ahead(plane, template)
        assert first_request_at_zero(plane, ISVC) == spare  # the request wakes that spare
        assert listening_ports(spare)  # which serves, on its own port, once asked for

    deleted = plane.knserve("delete", "-f", str(tmp_path / "objects.yaml"))
    assert deleted.returncode == 0, deleted.stderr
    eventually(lambda: not alive(template), 30, lambda: plane.log()[-3000:])
    eventually(lambda: not alive(spare), 30, lambda: f"spare {spare} outlived its template")
    assert ISVC not in templates(plane)[0]
