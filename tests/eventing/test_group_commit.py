"""Group commit: requests ready together share one transaction, each 202 still only after its
event is on disk; a bad request in a group fails alone; triggers that skip write nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from net_fixtures import serve_in_thread

from knserve.eventing.eventlog import EventLog
from knserve.eventing.group_commit import GroupCommit
from knserve.eventing.ingress import Ingress

SENDERS, PER_SENDER = 32, 20


def event(i: int, **extra: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": str(i), "source": "/s", "type": "t", "data": None, **extra}


async def test_appends_made_in_one_loop_turn_share_one_commit(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.db")
    log.add_trigger("t", "default", "b")
    group = GroupCommit(log.append_groups)
    flags = await asyncio.gather(*(group.add(("default", "b", [event(i)])) for i in range(50)))
    assert flags == [[True]] * 50 and group.commits == 1
    assert len(log.pending("t", limit=100)) == 50
    # a duplicate of an event already stored, in a later group: acknowledged, not stored again
    assert await group.add(("default", "b", [event(7), event(50)])) == [False, True]
    assert group.commits == 2
    log.close()


async def test_a_bad_request_in_a_group_fails_alone(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.db")
    log.add_trigger("t", "default", "b")
    group = GroupCommit(log.append_groups)
    bad = {"specversion": "1.0", "id": "", "source": "/s", "type": "t", "data": None}
    results = await asyncio.gather(
        group.add(("default", "b", [event(1)])),
        group.add(("default", "b", [bad])),
        group.add(("default", "b", [event(2)])),
        return_exceptions=True,
    )
    assert results[0] == [True] and results[2] == [True]
    assert isinstance(results[1], ValueError) and "non-empty string 'id'" in str(results[1])
    assert sorted(e.attributes["id"] for e in log.pending("t")) == ["1", "2"]
    log.close()


@pytest.mark.slow
def test_32_senders_share_commits_and_each_202_is_already_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    log = EventLog(path)
    ingress = Ingress(log, lambda namespace, name: (namespace, name) == ("default", "b"))
    reader = sqlite3.connect(path)  # another connection sees only what was committed

    def on_disk(event_id: str) -> bool:
        row = reader.execute(
            "SELECT COUNT(*) FROM events WHERE json_extract(attributes, '$.id') = ?", (event_id,)
        ).fetchone()
        return bool(row[0])

    async def sender(url: str, client: httpx.AsyncClient, n: int) -> list[str]:
        missing = []
        for i in range(PER_SENDER):
            event_id = f"{n}-{i}"
            headers = {
                "ce-specversion": "1.0",
                "ce-id": event_id,
                "ce-source": "/s",
                "ce-type": "t",
            }
            response = await client.post(f"{url}/default/b", headers=headers, content=b"{}")
            assert response.status_code == 202, response.text
            if not on_disk(event_id):
                missing.append(event_id)
        return missing

    async def main(url: str) -> list[str]:
        limits = httpx.Limits(max_connections=SENDERS)
        async with httpx.AsyncClient(limits=limits, trust_env=False) as client:
            missing = await asyncio.gather(*(sender(url, client, n) for n in range(SENDERS)))
        return [event_id for each in missing for event_id in each]

    with serve_in_thread(ingress) as url:
        assert asyncio.run(main(url)) == []  # no 202 came before its commit
    total = SENDERS * PER_SENDER
    assert ingress.accepted == {("default", "b"): total}
    assert ingress.group.commits < total  # requests ready together shared transactions
    reader.close()
    log.close()


def test_a_trigger_that_takes_nothing_writes_nothing_and_skips_again_after_a_crash(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    log = EventLog(path)
    log.add_trigger("t", "default", "b")
    log.append_many("default", "b", [event(i) for i in range(10)])

    def wants(attributes: Mapping[str, Any]) -> bool:
        return attributes["id"] == "10"

    writes = log._db.total_changes
    assert log.pending("t", matches=wants) == [] and log._db.total_changes == writes
    assert log.backlog("t") == 0  # the skipped events are not owed
    log.close()  # a crash: the skip was in memory only
    log = EventLog(path)
    log.append("default", "b", event(10))
    assert [e.attributes["id"] for e in log.pending("t", matches=wants)] == ["10"]
    log.mark_delivered("t", 10 + 1)
    assert log.compact() == 11  # every event is behind the stored cursor now
    log.close()


def test_compaction_stores_a_skipping_triggers_cursor(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.db")
    log.add_trigger("t", "default", "b")
    log.append_many("default", "b", [event(i) for i in range(5)])
    never: Sequence[Any] = ()
    assert log.pending("t", matches=lambda attributes: attributes["id"] in never) == []
    assert log.compact() == 5  # without storing the cursor, these would stay forever
    log.close()
