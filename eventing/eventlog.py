"""The broker's durable event log: every accepted event, and where each trigger is with it.

One SQLite file (WAL) per plane holds four tables:

* ``events`` -- each accepted event, in arrival order (``seq``), with all its attributes (JSON)
  and its body bytes, under the broker that accepted it. ``seq`` is AUTOINCREMENT so a number is
  never handed out twice, even after every event was deleted: the trigger cursors below compare
  against it.
* ``seen`` -- (broker, source, id, type) of recent events, for de-duplication: an event whose
  source, id and type the broker accepted less than ``retention`` seconds ago is acknowledged but
  not stored again. The type is part of the key because KServe's payload logger sends an
  inference's request and response with the same source and id (the inference id) and different
  types; Knative's brokers, which do not de-duplicate at all, deliver both, and so must this one.
* ``triggers`` -- per trigger, its broker and a cursor: the last ``seq`` it has looked at (a
  trigger that only skips events, its filter taking none, moves its cursor in memory and stores
  it with its next claim or at compaction, so that a broker's many non-matching triggers write
  nothing per event; after a crash they read those events again and skip them again).
  A trigger registered now starts at the current end of the log, as a new Knative Trigger only
  gets events that arrive after it is ready; a registered trigger keeps its cursor across
  restarts, so nothing accepted in between is skipped.
* ``deliveries`` -- per (trigger, event) that the trigger took and has not finished: how many
  attempts failed, when the next one is due, and whether one is in flight.

A trigger's loop is :meth:`EventLog.pending` (claim what is due, move the cursor past new events
and create their delivery rows), then :meth:`~EventLog.mark_delivered`, ``mark_failed`` or
``dead_letter`` per event. What was in flight when the process died is due again when the log is
reopened: every trigger that took an event gets it at least once. :meth:`~EventLog.compact`
deletes events no trigger still needs.

Durability: a transaction commits before :meth:`~EventLog.append` returns;
:meth:`~EventLog.append_groups` puts many requests' events in one (group commit,
:mod:`knserve.eventing.group_commit`). The dispatcher's claims and deliveries are deferred
(``defer=True``): committed once per loop turn, or first in any transaction before that; a
crash before then only delivers those events again, as at least once allows. In WAL mode with
``synchronous=NORMAL`` a commit survives a crash or ``kill -9`` of the process (what the broker
promises); ``fsync=True`` makes it survive a power loss too, at a cost in throughput. Times are
Unix seconds from the injected ``clock`` (wall time, because they outlive the process). The log
is used from one thread at a time (the plane's event loop); its calls are short and run inline.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from knserve.knative.apiserver.database import open_database, transaction

__all__ = ["DEFAULT_RETENTION", "EventLog", "StoredEvent"]

logger = logging.getLogger(__name__)

DEFAULT_RETENTION = 600.0  # seconds: the de-duplication window (10 minutes)
_SCAN = 500  # events read per step when moving a trigger's cursor past events it does not match
_DECODED = 4096  # recent events whose decoded attributes are kept for the next trigger to read

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL, broker TEXT NOT NULL,
    attributes BLOB NOT NULL, data BLOB, accepted_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_broker ON events (namespace, broker, seq);
CREATE TABLE IF NOT EXISTS seen (
    namespace TEXT NOT NULL, broker TEXT NOT NULL, source TEXT NOT NULL, id TEXT NOT NULL,
    type TEXT NOT NULL, accepted_at REAL NOT NULL,
    PRIMARY KEY (namespace, broker, source, id, type)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_age ON seen (accepted_at);
CREATE TABLE IF NOT EXISTS triggers (
    key TEXT PRIMARY KEY, namespace TEXT NOT NULL, broker TEXT NOT NULL, cursor INTEGER NOT NULL,
    dead_letters INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS deliveries (
    trigger TEXT NOT NULL, seq INTEGER NOT NULL, attempts INTEGER NOT NULL,
    next_attempt_at REAL NOT NULL, in_flight INTEGER NOT NULL,
    PRIMARY KEY (trigger, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (trigger, in_flight, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_seq ON deliveries (seq);
"""

_EVENT_COLUMNS = "e.seq, e.namespace, e.broker, e.attributes, e.data, e.accepted_at"


@dataclass(frozen=True)
class StoredEvent:
    """An accepted event as the log holds it, handed to a trigger by :meth:`EventLog.pending`."""

    seq: int  # position in the log; the handle for mark_delivered / mark_failed / dead_letter
    namespace: str
    broker: str
    attributes: dict[str, Any]  # context attributes and extensions, knativearrivaltime included
    data: bytes | None  # the body exactly as received; None when the event had none
    accepted_at: float
    attempts: int = 0  # failed delivery attempts to this trigger so far (0: never tried)


class EventLog:
    """Accepted events and per-trigger delivery state in one SQLite file (``:memory:`` works
    for tests, without the durability)."""

    def __init__(
        self,
        path: str | Path,
        *,
        retention: float = DEFAULT_RETENTION,
        clock: Callable[[], float] = time.time,
        fsync: bool = False,
    ) -> None:
        self.path, self.retention, self.clock = str(path), retention, clock
        self._db = open_database(self.path, SCHEMA, fsync=fsync)
        # Per trigger, how far it has read past its stored cursor without taking anything: kept
        # in memory only, as reading those events again after a restart takes nothing again.
        self._skipped: dict[str, int] = {}
        self._decoded: dict[int, dict[str, Any]] = {}
        # Writes deferred (statement, rows): the next transaction writes them first.
        self._claims: list[tuple[str, list[tuple[Any, ...]]]] = []
        self._claiming: set[str] = set()  # the triggers whose claims are among them
        self._done: list[tuple[str, int]] = []  # deliveries (trigger, seq) not yet written
        self._flush_soon = False  # a flush of the claims is scheduled on the event loop
        self._waiting: set[str] = set()  # triggers that may have retries waiting (not in flight)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(seen)")}
        if "type" not in columns:
            # A log from before the type joined the key: its ten-minute memory is dropped.
            self._db.execute("DROP TABLE seen")
            self._db.executescript(SCHEMA)
        # Whatever was in flight when the last process died was not acknowledged: due again now.
        self._db.execute("UPDATE deliveries SET in_flight = 0 WHERE in_flight = 1")
        self._waiting.update(t for (t,) in self._db.execute("SELECT trigger FROM deliveries"))

    def close(self) -> None:
        self.flush()
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A transaction that writes the deferred claims and deliveries first (see
        :meth:`pending`); if it fails they stay deferred, for the next one."""
        claims, done = self._claims, self._done
        self._claims, self._done = [], []
        try:
            with transaction(self._db) as db:
                for sql, rows in claims:
                    db.executemany(sql, rows)
                db.executemany("DELETE FROM deliveries WHERE trigger=? AND seq=?", done)
                yield db
        except BaseException:
            self._claims, self._done = claims + self._claims, done + self._done
            raise
        if not self._claims:
            self._claiming.clear()

    def flush(self) -> None:
        """Write what :meth:`pending` and :meth:`mark_delivered` deferred, in one transaction."""
        if self._claims or self._done:
            with self._tx():
                pass

    def _flush_later(self) -> None:
        if not self._flush_soon:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._flush_deferred)

    def _flush_deferred(self) -> None:
        self._flush_soon = False
        try:
            self.flush()
        except sqlite3.Error:  # still deferred: the next transaction writes them
            logger.exception("committing claims and deliveries failed; the next write tries again")

    # ---- accepting -----------------------------------------------------------------------------

    def append(self, namespace: str, broker: str, event: Mapping[str, Any]) -> bool:
        """Store one event durably; False when the broker accepted an event with the same
        ``source``, ``id`` and ``type`` within the retention window (it is not stored again).
        ``event`` maps attribute names to values, plus ``data``: the body bytes (or None)."""
        return self.append_many(namespace, broker, [event])[0]

    def append_many(
        self, namespace: str, broker: str, events: Iterable[Mapping[str, Any]]
    ) -> list[bool]:
        """Store several events in one transaction (all or none); one flag per event, as
        :meth:`append`'s. A duplicate within the batch itself is stored once."""
        return self.append_groups([(namespace, broker, events)])[0]

    def append_groups(
        self, groups: Sequence[tuple[str, str, Iterable[Mapping[str, Any]]]]
    ) -> list[list[bool]]:
        """Group commit: store the events of several requests, each ``(namespace, broker,
        events)``, in one transaction (all or none); one list of :meth:`append` flags per group.

        A commit costs far more than a row, so the ingress gathers what arrived meanwhile and
        commits it at once; every group is durable when this returns, none before.
        """
        now = self.clock()
        split = [(ns, broker, [_split(event) for event in events]) for ns, broker, events in groups]
        flags: list[list[bool]] = []
        with self._tx() as db:
            for namespace, broker, rows in split:
                stored, new = [], []
                for attributes, data in rows:
                    # One statement decides and records: the upsert changes a row only when the
                    # key is new or its last sighting left the retention window.
                    fresh = db.execute(
                        "INSERT INTO seen VALUES (?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (namespace, broker, source, id, type) "
                        "DO UPDATE SET accepted_at=excluded.accepted_at "
                        "WHERE seen.accepted_at <= ?",
                        (
                            namespace,
                            broker,
                            attributes["source"],
                            attributes["id"],
                            attributes["type"],
                            now,
                            now - self.retention,
                        ),
                    ).rowcount
                    stored.append(fresh > 0)
                    if fresh > 0:
                        new.append((namespace, broker, orjson.dumps(attributes), data, now))
                db.executemany(
                    "INSERT INTO events (namespace, broker, attributes, data, accepted_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    new,
                )
                flags.append(stored)
        return flags

    # ---- triggers ------------------------------------------------------------------------------

    def add_trigger(self, trigger_key: str, namespace: str, broker: str) -> None:
        """Register a trigger of ``broker`` (idempotent). A new trigger gets the events accepted
        from now on; one already registered keeps its place, so call this on every start."""
        with self._tx() as db:
            row = db.execute(
                "SELECT namespace, broker FROM triggers WHERE key=?", (trigger_key,)
            ).fetchone()
            if row is not None:
                if tuple(row) != (namespace, broker):
                    raise ValueError(
                        f'trigger "{trigger_key}" is registered for broker {row[0]}/{row[1]}, not '
                        f"{namespace}/{broker}; a trigger's spec.broker cannot change: remove it first"
                    )
                return
            head = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
            db.execute(
                "INSERT INTO triggers (key, namespace, broker, cursor) VALUES (?, ?, ?, ?)",
                (trigger_key, namespace, broker, head),
            )

    def remove_trigger(self, trigger_key: str) -> None:
        """Forget a trigger and everything it had not delivered (the Trigger was deleted)."""
        self._skipped.pop(trigger_key, None)
        with self._tx() as db:
            db.execute("DELETE FROM deliveries WHERE trigger=?", (trigger_key,))
            db.execute("DELETE FROM triggers WHERE key=?", (trigger_key,))

    def remove_broker(self, namespace: str, broker: str) -> None:
        """Forget a broker's events, de-duplication memory and triggers (the Broker was deleted)."""
        self._skipped.clear()  # the others' read again from their stored cursors: harmless
        with self._tx() as db:
            db.execute(
                "DELETE FROM deliveries WHERE trigger IN "
                "(SELECT key FROM triggers WHERE namespace=? AND broker=?)",
                (namespace, broker),
            )
            for table in ("triggers", "seen", "events"):
                db.execute(
                    f"DELETE FROM {table} WHERE namespace=? AND broker=?", (namespace, broker)
                )

    # ---- delivering ----------------------------------------------------------------------------

    def pending(
        self,
        trigger_key: str,
        limit: int = 100,
        *,
        matches: Callable[[Mapping[str, Any]], bool] | None = None,
        defer: bool = False,
    ) -> list[StoredEvent]:
        """Claim up to ``limit`` events for a trigger: first retries that are due (by due time),
        then new events in arrival order. Claimed events are in flight: not returned again until
        marked, or until the log is reopened after a crash.

        ``matches`` (the trigger's filter, over the attributes) lets the log skip events the
        trigger does not want without ever creating their delivery rows. ``defer`` (on an event
        loop) commits the claim with the loop turn's other writes: a crash before that loses no
        event, only the claim (its events are claimed, and delivered, again: at least once)."""
        if limit < 1:
            return []
        if trigger_key in self._claiming:
            self.flush()  # its last claim first, or the rows read below would not show it
        now = self.clock()
        db = self._db
        # Read first, outside a transaction (the log has one user, so nothing moves meanwhile):
        # a trigger whose filter takes none of the new events writes nothing, which is what most
        # of a broker's many triggers see for most events.
        trigger = db.execute(
            "SELECT namespace, broker, cursor FROM triggers WHERE key=?", (trigger_key,)
        ).fetchone()
        if trigger is None:
            raise ValueError(f'trigger "{trigger_key}" is not registered; call add_trigger first')
        namespace, broker, stored_cursor = trigger
        cursor = max(stored_cursor, self._skipped.get(trigger_key, 0))
        claimed = [
            _event(row[:6], attempts=row[6])
            for row in db.execute(
                f"SELECT {_EVENT_COLUMNS}, d.attempts FROM deliveries d JOIN events e USING (seq) "
                "WHERE d.trigger=? AND d.in_flight=0 AND d.next_attempt_at<=? "
                "ORDER BY d.next_attempt_at, d.seq LIMIT ?",
                (trigger_key, now, limit),
            ).fetchall()
            if trigger_key in self._waiting  # 100 triggers: most of their reads were this
        ]
        fresh: list[StoredEvent] = []
        step = max(_SCAN, limit)
        while len(claimed) + len(fresh) < limit:
            read = 0
            # Iterated, not fetched: SQLite steps row by row, so stopping at the limit does not
            # read the rest of the step.
            for seq, attributes, data, accepted_at in db.execute(
                "SELECT seq, attributes, data, accepted_at FROM events WHERE namespace=? "
                "AND broker=? AND seq>? ORDER BY seq LIMIT ?",
                (namespace, broker, cursor, step),
            ):
                read += 1
                cursor = seq  # taken or skipped, the trigger is past it
                decoded = self._attributes(seq, attributes)
                if matches is None or matches(decoded):
                    fresh.append(StoredEvent(seq, namespace, broker, decoded, data, accepted_at))
                    if len(claimed) + len(fresh) == limit:
                        break
            if read < step:
                break  # read to the end of the log (or filled up)
        if not claimed and not fresh:
            if cursor > stored_cursor:
                self._skipped[trigger_key] = cursor  # written with the trigger's next claim
            return []
        self._claims += (
            (
                "UPDATE deliveries SET in_flight=1 WHERE trigger=? AND seq=?",
                [(trigger_key, e.seq) for e in claimed],
            ),
            (
                "INSERT INTO deliveries VALUES (?, ?, 0, ?, 1)",
                [(trigger_key, e.seq, now) for e in fresh],
            ),
            ("UPDATE triggers SET cursor=? WHERE key=?", [(cursor, trigger_key)]),
        )
        self._claiming.add(trigger_key)
        self._skipped.pop(trigger_key, None)
        if defer:
            self._flush_later()
        else:
            self.flush()
        return claimed + fresh

    def _attributes(self, seq: int, raw: bytes) -> dict[str, Any]:
        """An event's attributes, decoded once for all the triggers that read it (shared: the
        readers only read them)."""
        decoded = self._decoded.get(seq)
        if decoded is None:
            decoded = self._decoded[seq] = orjson.loads(raw)
            if len(self._decoded) > _DECODED:
                del self._decoded[next(iter(self._decoded))]  # the oldest
        return decoded

    def release(self, trigger_key: str) -> int:
        """Make the trigger's in-flight events due again, as a restart would (its delivery worker
        was stopped, e.g. because the Trigger changed); returns how many."""
        self._waiting.add(trigger_key)
        with self._tx() as db:
            return db.execute(
                "UPDATE deliveries SET in_flight=0 WHERE trigger=? AND in_flight=1", (trigger_key,)
            ).rowcount

    def mark_delivered(self, trigger_key: str, seq: int, *, defer: bool = False) -> None:
        """The subscriber answered 2xx: this trigger is done with the event. ``defer``: as in
        :meth:`pending` (until it commits the event stays claimed; a crash delivers it again)."""
        self._done.append((trigger_key, seq))
        if defer:
            self._flush_later()
        else:
            self.flush()

    def mark_failed(
        self, trigger_key: str, seq: int, attempts: int, next_attempt_at: float
    ) -> None:
        """An attempt failed and will be retried: ``attempts`` failed so far, the next one is due
        at ``next_attempt_at`` (Unix seconds, on the log's clock)."""
        self._waiting.add(trigger_key)
        with self._tx() as db:
            db.execute(
                "UPDATE deliveries SET attempts=?, next_attempt_at=?, in_flight=0 "
                "WHERE trigger=? AND seq=?",
                (attempts, next_attempt_at, trigger_key, seq),
            )

    def dead_letter(self, trigger_key: str, seq: int) -> None:
        """The trigger gave up on the event (retries exhausted or a permanent error); call it once
        the dead-letter sink has the event, or when there is none and the event is dropped. The
        trigger's dead-letter count goes up by one."""
        with self._tx() as db:
            gone = db.execute(
                "DELETE FROM deliveries WHERE trigger=? AND seq=?", (trigger_key, seq)
            ).rowcount
            if gone:
                db.execute(
                    "UPDATE triggers SET dead_letters = dead_letters + 1 WHERE key=?",
                    (trigger_key,),
                )

    def dead_letters(self, trigger_key: str) -> int:
        """How many events the trigger gave up on since it was registered."""
        row = self._db.execute(
            "SELECT dead_letters FROM triggers WHERE key=?", (trigger_key,)
        ).fetchone()
        return int(row[0]) if row else 0

    def next_due(self, trigger_key: str) -> float | None:
        """When the trigger's earliest waiting retry is due (Unix seconds, the log's clock), or
        None when nothing waits: the dispatcher sleeps until then unless woken earlier."""
        if trigger_key not in self._waiting:
            return None
        if trigger_key in self._claiming:
            self.flush()  # its claims of retries first
        row = self._db.execute(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE trigger=? AND in_flight=0",
            (trigger_key,),
        ).fetchone()
        if row is None or row[0] is None:
            self._waiting.discard(trigger_key)  # until a retry or a release
            return None
        return float(row[0])

    def trigger_keys(self) -> list[str]:
        """Every registered trigger, so that a controller can forget those deleted while the
        plane was down."""
        return [row[0] for row in self._db.execute("SELECT key FROM triggers ORDER BY key")]

    def backlog(self, trigger_key: str) -> int:
        """Events the trigger has taken but not finished plus those after its cursor (an upper
        bound when the trigger filters)."""
        self.flush()  # what was deferred counts
        row = self._db.execute(
            "SELECT (SELECT COUNT(*) FROM deliveries WHERE trigger=t.key) + "
            "(SELECT COUNT(*) FROM events e WHERE e.namespace=t.namespace AND e.broker=t.broker "
            "AND e.seq>MAX(t.cursor, ?)) FROM triggers t WHERE t.key=?",
            (self._skipped.get(trigger_key, 0), trigger_key),
        ).fetchone()
        return int(row[0]) if row else 0

    # ---- housekeeping --------------------------------------------------------------------------

    def compact(self) -> int:
        """Delete events every trigger of their broker has finished with, and de-duplication
        entries older than the retention window; returns how many events went. Call it now and
        then (the dispatcher's idle tick): nothing else removes events."""
        with self._tx() as db:
            # Cursors moved only in memory are stored now, or what they skipped would stay.
            db.executemany(
                "UPDATE triggers SET cursor=? WHERE key=? AND cursor<?",
                [(cursor, key, cursor) for key, cursor in self._skipped.items()],
            )
            self._skipped.clear()
            db.execute("DELETE FROM seen WHERE accepted_at <= ?", (self.clock() - self.retention,))
            return db.execute(
                "DELETE FROM events WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq=events.seq) "
                "AND NOT EXISTS (SELECT 1 FROM triggers t WHERE t.namespace=events.namespace "
                "AND t.broker=events.broker AND t.cursor<events.seq)"
            ).rowcount


def _split(event: Mapping[str, Any]) -> tuple[dict[str, Any], bytes | None]:
    attributes = {k: v for k, v in event.items() if k != "data"}
    for name in ("id", "source", "type"):
        if not isinstance(attributes.get(name), str) or not attributes[name]:
            raise ValueError(f"an event needs a non-empty string {name!r} to be stored")
    data = event.get("data")
    if data is not None and not isinstance(data, bytes):
        raise ValueError(f"an event's data must be bytes or None, not {type(data).__name__}")
    return attributes, data


def _event(row: tuple[Any, ...], attempts: int = 0) -> StoredEvent:
    seq, namespace, broker, attributes, data, accepted_at = row
    return StoredEvent(
        seq, namespace, broker, orjson.loads(attributes), data, accepted_at, attempts
    )
