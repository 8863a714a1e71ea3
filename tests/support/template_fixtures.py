"""Reading a plane's warm templates from outside (knserve.knative.supervisor.templates): their
USS and budget on /metrics, their pids in the plane's log, their processes in /proc."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from isvc_fixtures import iris
from net_fixtures import eventually
from plane_fixtures import LocalPlane

VERSICOLOR = {"instances": [[6.8, 2.8, 4.8, 1.4]]}
ISVC = "iris-predictor-00001"


def iris_at_zero(model_dir: Path) -> dict[str, Any]:
    model = {"modelFormat": {"name": "sklearn"}, "storageUri": f"file://{model_dir}"}
    return iris(minReplicas=0, model=model)


def templates(plane: LocalPlane) -> tuple[dict[str, float], float]:
    """(USS bytes per revision holding a template, the budget in bytes) from /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    uss: dict[str, float] = {}
    budget = -1.0
    for family in text_string_to_metric_families(plane.client.http.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "knserve_template_uss_bytes":
                uss[sample.labels["revision"]] = sample.value
            elif sample.name == "knserve_template_budget_bytes":
                budget = sample.value
    return uss, budget


def replica_pids(plane: LocalPlane, revision: str) -> list[int]:
    found = re.findall(rf"revision default/{revision} replica \d+: pid (\d+)", plane.log())
    return [int(pid) for pid in found]


def template_pid(plane: LocalPlane, revision: str) -> int:
    found = re.search(rf"template of default/{revision} ready \(pid (\d+)", plane.log())
    assert found, plane.log()[-3000:]
    return int(found.group(1))


def zygote_pid(plane: LocalPlane) -> int:
    found = re.search(r"zygote ready \(pid (\d+)\)", plane.log())
    assert found, plane.log()[-3000:]
    return int(found.group(1))


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def first_request_at_zero(plane: LocalPlane, revision: str) -> int:
    """Scale the revision to zero, wake it with a request; the pid of the replica that answered."""
    plane.wait_scaled_to_zero(revision)
    before = len(replica_pids(plane, revision))
    if revision == ISVC:
        answer = plane.call(
            "iris.default.localhost", "/v1/models/iris:predict", "POST", json=VERSICOLOR
        )
        assert answer.status_code == 200, answer.text + plane.log()[-3000:]
        assert answer.json() == {"predictions": [1]}
    else:
        answer = plane.call(f"{revision.rsplit('-', 1)[0]}.default.localhost", "/")
        assert answer.status_code == 200, answer.text + plane.log()[-3000:]
    return replica_pids(plane, revision)[before]


def template_of(plane: LocalPlane, revision: str) -> tuple[dict[str, float], float]:
    """Once the revision has a template: (USS per template, budget) from /metrics."""
    return eventually(
        lambda: (found := templates(plane))[0].get(revision) and found,
        90,
        lambda: f"no template for {revision}: {templates(plane)}\n{plane.log()[-3000:]}",
    )


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found
