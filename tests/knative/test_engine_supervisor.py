"""Replicas of an engine's image wait for its environment to be built (the revision saying
`BuildingEngine` meanwhile), then run the image's command from that environment."""

from __future__ import annotations

import asyncio
import ensurepip
from pathlib import Path

import httpx
import pytest

from knserve.knative.serving.status import revision_conditions
from knserve.knative.supervisor import engines
from knserve.knative.supervisor.engine_env import built, environment_dir
from knserve.knative.supervisor.engines import Engine, EngineImage
from knserve.knative.supervisor.replicas import ReplicaStatus, RevisionProcessSpec, Supervisor

# An engine whose image serves files with the venv's own python: that it runs at all shows the
# image's PATH puts the environment's bin/ first. Its requirement is the pip every venv has.
TINY = Engine(
    name="tiny",
    images=frozenset({"knserve-test/tiny"}),
    packages=(),
    default_version="1.0.0",
    pins={"1.0.0": (f"pip=={ensurepip.version()}",)},
    cmd=("python", "-m", "http.server", "$(PORT)", "--bind", "127.0.0.1", "-d", "$(SITE)"),
    env={"SITE": "/srv/site"},
)


@pytest.fixture
def tiny_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> EngineImage:
    monkeypatch.setenv("KNSERVE_ENGINES_HOME", str(tmp_path / "engines"))
    monkeypatch.setattr(engines, "ENGINES", (*engines.ENGINES, TINY))
    return EngineImage(TINY, "1.0.0")


@pytest.mark.slow
async def test_replicas_wait_for_the_engine_build_then_run_from_its_environment(
    tmp_path: Path, tiny_engine: EngineImage
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("served by the tiny engine")
    supervisor = Supervisor(tmp_path / "logs")
    statuses: list[ReplicaStatus] = []
    ready = asyncio.Event()

    def changed(namespace: str, revision: str) -> None:
        status = supervisor.status(namespace, revision)
        statuses.append(status)
        if status.ready == 2:
            ready.set()

    supervisor.subscribe(changed)
    spec = RevisionProcessSpec(
        "default",
        "tiny",
        "tiny",
        "tiny-00001",
        {
            "image": "registry.local/knserve-test/tiny:1.0.0",
            "env": [{"name": "SITE", "value": str(site)}],
        },
    )
    try:
        await supervisor.ensure(spec, 2)
        await asyncio.wait_for(ready.wait(), 300)
        waiting = [s.waiting for s in statuses if s.waiting is not None]
        assert waiting, "the revision never said it was building the engine"
        assert {reason for reason, _ in waiting} == {"BuildingEngine"}
        assert waiting[0][1].startswith(
            "building the environment of tiny 1.0.0 (its first start on this machine): "
        )
        assert statuses[-1].waiting is None and statuses[-1].failure is None
        assert built(tiny_engine) == environment_dir(tiny_engine)
        async with httpx.AsyncClient() as client:
            for endpoint in supervisor.status("default", "tiny-00001").endpoints:
                response = await client.get(f"http://{endpoint}/index.html")
                assert response.text == "served by the tiny engine"
        pids = supervisor.pids("default", "tiny-00001")
        exe = {Path(f"/proc/{pid}/exe").resolve() for pid in pids}
        assert exe == {(environment_dir(tiny_engine) / "bin" / "python").resolve()}
    finally:
        await supervisor.close()


def test_a_building_engine_is_the_revisions_reason_until_it_is_ready() -> None:
    waiting = ("BuildingEngine", "building the environment of mlserver 1.7.1: installing")
    conditions = revision_conditions(
        None, initialized=False, failure=None, active="Unknown", waiting=waiting
    )
    by_type = {c["type"]: c for c in conditions}
    assert by_type["Ready"]["status"] == "Unknown"
    assert (by_type["Ready"]["reason"], by_type["Ready"]["message"]) == waiting
    assert by_type["ContainerHealthy"]["reason"] == "BuildingEngine"
    done = revision_conditions(conditions, initialized=True, failure=None, active="True")
    assert {c["type"]: c["status"] for c in done}["Ready"] == "True"
