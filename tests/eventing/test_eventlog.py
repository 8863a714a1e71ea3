"""The event log: durable appends, de-duplication, per-trigger delivery state across restarts."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from knserve.eventing.eventlog import DEFAULT_RETENTION, EventLog


class Clock:
    """Unix time that moves only when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def event(
    id: str, source: str = "/orders", data: bytes | None = b'{"n": 1}', **ext: Any
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": id,
        "source": source,
        "type": "order.created",
        "data": data,
        **ext,
    }


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "eventing" / "events.db"


@pytest.fixture
def elog(path: Path, clock: Clock) -> Iterator[EventLog]:
    log = EventLog(path, clock=clock)
    yield log
    log.close()


def ids(events: list[Any]) -> list[str]:
    return [e.attributes["id"] for e in events]


def test_the_log_is_a_sqlite_file_in_wal_mode(elog: EventLog, path: Path) -> None:
    assert path.exists()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_event_is_stored_with_every_attribute_and_its_exact_bytes(elog: EventLog) -> None:
    elog.add_trigger("default/t", "default", "b")
    body = bytes(range(256))  # not UTF-8, not JSON: stored as given
    sent = event(
        "1", data=body, subject="s", region="eu", knativearrivaltime="2025-01-01T00:00:00Z"
    )
    assert elog.append("default", "b", sent) is True
    [got] = elog.pending("default/t")
    assert got.data == body
    assert got.attributes == {k: v for k, v in sent.items() if k != "data"}
    assert (got.namespace, got.broker, got.attempts) == ("default", "b", 0)
    assert got.accepted_at == elog.clock()


def test_an_event_without_data_keeps_none(elog: EventLog) -> None:
    elog.add_trigger("t", "default", "b")
    elog.append("default", "b", event("1", data=None))
    assert elog.pending("t")[0].data is None


def test_an_event_needs_id_and_source_bytes_data(elog: EventLog) -> None:
    with pytest.raises(ValueError, match="'id'"):
        elog.append("default", "b", {"source": "/x", "data": None})
    with pytest.raises(ValueError, match="must be bytes"):
        elog.append("default", "b", event("1", data="text"))  # type: ignore[arg-type]


def test_the_same_source_and_id_within_the_window_is_stored_once(
    elog: EventLog, clock: Clock
) -> None:
    elog.add_trigger("t", "default", "b")
    assert elog.append("default", "b", event("1")) is True
    clock.now += DEFAULT_RETENTION - 1
    assert elog.append("default", "b", event("1", data=b"other")) is False
    assert [e.data for e in elog.pending("t")] == [b'{"n": 1}']


def test_the_same_source_and_id_after_the_window_is_a_new_event(
    elog: EventLog, clock: Clock
) -> None:
    elog.add_trigger("t", "default", "b")
    elog.append("default", "b", event("1"))
    clock.now += DEFAULT_RETENTION
    assert elog.append("default", "b", event("1")) is True
    assert len(elog.pending("t")) == 2


def test_dedup_is_per_broker_and_per_source(elog: EventLog) -> None:
    assert elog.append("default", "b", event("1"))
    assert elog.append("default", "other", event("1"))
    assert elog.append("prod", "b", event("1"))
    assert elog.append("default", "b", event("1", source="/payments"))


def test_a_request_and_its_response_with_one_id_are_two_events(elog: EventLog) -> None:
    # KServe's payload logger gives both the inference id and the same source.
    assert elog.append(
        "default", "b", event("inference-1", type="org.kubeflow.serving.inference.request")
    )
    assert elog.append(
        "default", "b", event("inference-1", type="org.kubeflow.serving.inference.response")
    )
    assert not elog.append(
        "default", "b", event("inference-1", type="org.kubeflow.serving.inference.response")
    )


def test_a_log_from_before_the_type_joined_the_dedup_key_opens_and_dedups(
    path: Path, clock: Clock
) -> None:
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE seen (namespace TEXT NOT NULL, broker TEXT NOT NULL, source TEXT NOT NULL, "
        "id TEXT NOT NULL, accepted_at REAL NOT NULL, PRIMARY KEY (namespace, broker, source, id)) "
        "WITHOUT ROWID"
    )
    old.execute("INSERT INTO seen VALUES ('default', 'b', '/orders', '1', 0)")
    old.commit()
    old.close()
    log = EventLog(path, clock=clock)
    assert log.append("default", "b", event("1")) is True
    assert log.append("default", "b", event("1")) is False
    log.close()


def test_the_retention_window_is_configurable(path: Path, clock: Clock) -> None:
    log = EventLog(path, clock=clock, retention=5)
    log.append("default", "b", event("1"))
    clock.now += 5
    assert log.append("default", "b", event("1")) is True
    log.close()


def test_dedup_survives_a_restart(path: Path, clock: Clock) -> None:
    log = EventLog(path, clock=clock)
    log.append("default", "b", event("1"))
    log.close()
    log = EventLog(path, clock=clock)
    assert log.append("default", "b", event("1")) is False
    log.close()


def test_append_many_is_one_transaction_and_dedups_within_the_batch(elog: EventLog) -> None:
    elog.add_trigger("t", "default", "b")
    assert elog.append_many("default", "b", [event("1"), event("2"), event("1")]) == [
        True,
        True,
        False,
    ]
    with pytest.raises(ValueError):
        elog.append_many("default", "b", [event("3"), {"id": "4"}])  # the second has no source
    assert ids(elog.pending("t")) == ["1", "2"]  # nothing of the invalid batch was stored


def test_a_failure_inside_the_transaction_stores_nothing(elog: EventLog) -> None:
    elog.add_trigger("t", "default", "b")
    with pytest.raises(TypeError):  # orjson cannot encode a set: fails after "3" was inserted
        elog.append_many("default", "b", [event("3"), event("4", tags={"a"})])
    assert elog.pending("t") == []
    assert elog.append("default", "b", event("3")) is True  # not even its dedup entry stayed


def test_pending_hands_out_new_events_in_arrival_order_up_to_the_limit(elog: EventLog) -> None:
    elog.add_trigger("t", "default", "b")
    for i in range(5):
        elog.append("default", "b", event(str(i)))
    elog.append("default", "other-broker", event("x"))
    assert ids(elog.pending("t", limit=3)) == ["0", "1", "2"]
    assert ids(elog.pending("t", limit=3)) == ["3", "4"]
    assert elog.pending("t") == []  # the rest are in flight


def test_a_new_trigger_gets_only_events_accepted_after_it(elog: EventLog) -> None:
    elog.append("default", "b", event("before"))
    elog.add_trigger("t", "default", "b")
    elog.append("default", "b", event("after"))
    assert ids(elog.pending("t")) == ["after"]


def test_triggers_of_one_broker_progress_independently(elog: EventLog) -> None:
    elog.add_trigger("a", "default", "b")
    elog.add_trigger("b", "default", "b")
    elog.append("default", "b", event("1"))
    [taken] = elog.pending("a")
    elog.mark_delivered("a", taken.seq)
    assert ids(elog.pending("b")) == ["1"]
    assert elog.pending("a") == []


def test_a_trigger_filter_skips_events_without_claiming_them(elog: EventLog) -> None:
    elog.add_trigger("t", "default", "b")
    batch = [event(str(i), kind="even" if i % 2 == 0 else "odd") for i in range(1200)]
    elog.append_many("default", "b", batch)  # more than one scan step
    wanted = elog.pending(
        "t", limit=1000, matches=lambda a: a["kind"] == "odd" and int(a["id"]) > 1000
    )
    assert ids(wanted) == [str(i) for i in range(1001, 1200, 2)]
    assert elog.backlog("t") == len(wanted)  # the skipped ones left nothing behind
    assert elog.pending("t") == []


def test_a_delivered_event_is_gone_for_that_trigger_even_after_a_restart(
    path: Path, clock: Clock
) -> None:
    log = EventLog(path, clock=clock)
    log.add_trigger("t", "default", "b")
    log.append_many("default", "b", [event("1"), event("2")])
    first, _ = log.pending("t")
    log.mark_delivered("t", first.seq)
    log.close()
    log = EventLog(path, clock=clock)
    assert ids(log.pending("t")) == ["2"]
    log.close()


def test_every_undelivered_event_is_pending_again_after_a_restart(path: Path, clock: Clock) -> None:
    log = EventLog(path, clock=clock)
    log.add_trigger("t", "default", "b")
    log.append_many("default", "b", [event(str(i)) for i in range(3)])
    assert ids(log.pending("t", limit=2)) == ["0", "1"]  # two in flight, one never taken
    log.close()  # the process "dies" with deliveries in flight
    log = EventLog(path, clock=clock)
    log.add_trigger("t", "default", "b")  # the plane registers its triggers again on start
    assert sorted(ids(log.pending("t"))) == ["0", "1", "2"]
    log.close()


def test_release_makes_in_flight_events_due_again_without_a_restart(elog: EventLog) -> None:
    elog.add_trigger("t", "default", "b")
    elog.append_many("default", "b", [event("1"), event("2")])
    elog.pending("t")
    assert elog.release("t") == 2
    assert ids(elog.pending("t")) == ["1", "2"]


def test_a_failed_event_comes_back_when_its_retry_is_due(elog: EventLog, clock: Clock) -> None:
    elog.add_trigger("t", "default", "b")
    elog.append("default", "b", event("1"))
    [taken] = elog.pending("t")
    elog.mark_failed("t", taken.seq, attempts=1, next_attempt_at=clock.now + 2)
    assert elog.pending("t") == []
    clock.now += 2
    [again] = elog.pending("t")
    assert (again.seq, again.attempts) == (taken.seq, 1)


def test_due_retries_come_before_new_events_in_due_order(elog: EventLog, clock: Clock) -> None:
    elog.add_trigger("t", "default", "b")
    elog.append_many("default", "b", [event("1"), event("2")])
    one, two = elog.pending("t")
    elog.mark_failed("t", one.seq, 1, clock.now + 2)
    elog.mark_failed("t", two.seq, 1, clock.now + 1)
    elog.append("default", "b", event("3"))
    clock.now += 5
    assert ids(elog.pending("t")) == ["2", "1", "3"]


def test_retry_schedule_survives_a_restart(path: Path, clock: Clock) -> None:
    log = EventLog(path, clock=clock)
    log.add_trigger("t", "default", "b")
    log.append("default", "b", event("1"))
    [taken] = log.pending("t")
    log.mark_failed("t", taken.seq, attempts=3, next_attempt_at=clock.now + 60)
    log.close()
    log = EventLog(path, clock=clock)
    assert log.pending("t") == []
    clock.now += 60
    assert [e.attempts for e in log.pending("t")] == [3]
    log.close()


def test_a_dead_lettered_event_is_finished_and_counted(elog: EventLog) -> None:
    elog.add_trigger("t", "default", "b")
    elog.append("default", "b", event("1"))
    [taken] = elog.pending("t")
    elog.dead_letter("t", taken.seq)
    elog.dead_letter("t", taken.seq)  # a second call for the same event counts nothing
    assert elog.pending("t") == []
    assert elog.dead_letters("t") == 1
    assert elog.dead_letters("unknown") == 0


def test_add_trigger_is_idempotent_and_keeps_the_cursor(elog: EventLog) -> None:
    elog.add_trigger("t", "default", "b")
    elog.append("default", "b", event("1"))
    elog.add_trigger("t", "default", "b")
    assert ids(elog.pending("t")) == ["1"]


def test_a_trigger_cannot_move_to_another_broker(elog: EventLog) -> None:
    elog.add_trigger("t", "default", "b")
    with pytest.raises(ValueError, match="registered for broker default/b.*remove it first"):
        elog.add_trigger("t", "default", "c")


def test_pending_for_an_unregistered_trigger_says_so(elog: EventLog) -> None:
    with pytest.raises(
        ValueError, match='trigger "nope" is not registered; call add_trigger first'
    ):
        elog.pending("nope")
    assert elog.pending("nope", limit=0) == []


def test_compact_keeps_what_a_trigger_still_needs(elog: EventLog, clock: Clock) -> None:
    elog.add_trigger("a", "default", "b")
    elog.add_trigger("z", "default", "b")
    elog.append_many("default", "b", [event("1"), event("2")])
    elog.append("default", "nobody-listens", event("3"))
    one, two = elog.pending("a")
    elog.mark_delivered("a", one.seq)
    elog.mark_delivered("a", two.seq)
    assert elog.compact() == 1  # only the event of the broker without triggers
    [z1, z2] = elog.pending("z")
    elog.mark_delivered("z", z1.seq)
    elog.mark_failed("z", z2.seq, 1, clock.now)
    assert elog.compact() == 1  # "1" is finished everywhere; "2" waits for its retry
    assert ids(elog.pending("z")) == ["2"]


def test_compact_forgets_dedup_entries_after_the_window(elog: EventLog, clock: Clock) -> None:
    elog.append("default", "b", event("1"))
    clock.now += DEFAULT_RETENTION
    elog.compact()
    assert elog.append("default", "b", event("1")) is True


def test_sequence_numbers_are_never_reused_after_compaction(path: Path, clock: Clock) -> None:
    log = EventLog(path, clock=clock)
    log.add_trigger("t", "default", "b")
    log.append("default", "b", event("1"))
    [taken] = log.pending("t")
    log.mark_delivered("t", taken.seq)
    assert log.compact() == 1
    log.close()
    log = EventLog(path, clock=clock)
    log.append("default", "b", event("2"))
    assert [e.seq for e in log.pending("t")] == [taken.seq + 1]
    log.close()


def test_removing_a_trigger_or_a_broker_forgets_its_state(elog: EventLog) -> None:
    elog.add_trigger("t", "default", "b")
    elog.append("default", "b", event("1"))
    elog.pending("t")
    elog.remove_trigger("t")
    with pytest.raises(ValueError):
        elog.pending("t")
    elog.add_trigger("u", "default", "b")
    elog.append("default", "b", event("2"))
    elog.remove_broker("default", "b")
    with pytest.raises(ValueError):
        elog.pending("u")
    assert elog.append("default", "b", event("1")) is True  # dedup memory went too
    assert elog.compact() == 1  # and only the new event is left


def test_backlog_counts_taken_and_untaken_events(elog: EventLog) -> None:
    elog.add_trigger("t", "default", "b")
    elog.append_many("default", "b", [event(str(i)) for i in range(4)])
    elog.pending("t", limit=1)
    assert elog.backlog("t") == 4
    assert elog.backlog("unknown") == 0


def test_an_accepted_event_survives_kill_9(path: Path) -> None:
    """append() returning means committed: a process killed right after loses nothing."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from knserve.eventing.eventlog import EventLog
        log = EventLog({str(path)!r})
        log.add_trigger("t", "default", "b")
        for i in range(200):
            log.append("default", "b", {{"id": str(i), "source": "/s", "type": "t", "data": b"x"}})
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30)
    assert result.returncode == -9, result.stderr.decode()
    log = EventLog(path)
    assert ids(log.pending("t", limit=1000)) == [str(i) for i in range(200)]
    log.close()
