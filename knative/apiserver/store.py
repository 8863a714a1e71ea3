"""Where the local plane keeps its objects: SQLite (WAL), with Kubernetes' object semantics.

Every object is stored as its JSON under (group, plural, namespace, name). The store owns the
metadata a client may not set: `uid`, `resourceVersion` (one counter for the whole store, as etcd's
revision, so watchers can order events), `generation` (bumped when `spec` changes),
`creationTimestamp`. An update that carries a stale `resourceVersion` is a Conflict; deleting an
object deletes everything whose `ownerReferences` name its uid, recursively.

Watchers get `ADDED`, `MODIFIED` and `DELETED` events through asyncio queues, after the change
is committed. A deletion takes a resourceVersion of its own, as in Kubernetes, and the last
`HISTORY` events are kept in memory (etcd's watch cache, in small), so a watch can resume from a
resourceVersion a list returned; one older than that history is `Expired` (410), which tells a
client to list again. The store is used from one event loop (the plane's), and SQLite calls are
short, so they run inline.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import sqlite3
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from knserve.knative.apiserver.autoscaler_config import AutoscalerConfig
from knserve.knative.apiserver.database import open_database, transaction
from knserve.knative.apiserver.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Expired,
    Invalid,
    NotFound,
)
from knserve.knative.apiserver.kinds import Kind, by_plural, named
from knserve.knative.apiserver.runtime_validation import runtime_priority_errors
from knserve.knative.apiserver.selectors import label_equalities, selects
from knserve.knative.apiserver.selectors import selector_matches as selector_matches
from knserve.knative.apiserver.validation import revision_reference_errors

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    grp TEXT NOT NULL, plural TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    uid TEXT NOT NULL, rv INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (grp, plural, namespace, name)
);
CREATE INDEX IF NOT EXISTS objects_uid ON objects (uid);
CREATE TABLE IF NOT EXISTS labels (
    grp TEXT NOT NULL, plural TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    key TEXT NOT NULL, value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS labels_kv ON labels (grp, plural, key, value, namespace);
CREATE INDEX IF NOT EXISTS labels_object ON labels (grp, plural, namespace, name);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('rv', 0);
"""
# What a cascading delete removed, each with its kind. Named here, outside `Store`, because inside
# the class body `list` is `Store.list`, not the builtin.
Deleted = list[tuple[Kind, dict[str, Any]]]
HISTORY = 1000  # events a watch can resume across; a controller's resync is far fewer


@dataclass(frozen=True)
class Event:
    type: str  # ADDED, MODIFIED, DELETED
    kind: Kind
    object: dict[str, Any]


def _in(namespace: str) -> str:
    """` in namespace x` for a message, nothing for a cluster-scoped object."""
    return f" in namespace {namespace}" if namespace else ""


def now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def merge_patched(current: dict[str, Any], patch: Any) -> dict[str, Any]:
    """`current` after the merge patch `patch`, keeping its resourceVersion unless the patch
    names one (then the write is conditional on it, as the API server does)."""
    if not isinstance(patch, dict):
        raise BadRequest("a merge patch must be a JSON object")
    merged = merge_patch(current, patch)
    merged["metadata"]["resourceVersion"] = (patch.get("metadata") or {}).get(
        "resourceVersion", current["metadata"]["resourceVersion"]
    )
    return merged


class Store:
    """Objects of every registered kind, in one SQLite file (or in memory with ':memory:').

    `autoscaler` is the plane's config-autoscaler, which admission reads as Knative's webhook
    does (is `initial-scale: "0"` allowed, the default class, the max-scale limit)."""

    def __init__(
        self, path: str | Path = ":memory:", autoscaler: AutoscalerConfig | None = None
    ) -> None:
        self.path = str(path)
        self.autoscaler = autoscaler if autoscaler is not None else AutoscalerConfig()
        self._db = open_database(self.path, SCHEMA)  # durable against a crash of the process
        self._watchers: list[asyncio.Queue[Event]] = []
        self._dry = False
        self._history: deque[tuple[int, Event]] = deque(maxlen=HISTORY)
        # A watch can resume from this resourceVersion or later (events before it are not kept).
        self._history_floor = self.resource_version()
        self._index_labels()

    def close(self) -> None:
        self._db.close()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db, commit=not self._dry)

    @contextlib.contextmanager
    def dry_run(self) -> Iterator[None]:
        """Writes within are checked and computed as usual, then rolled back, and no watcher
        hears of them: the API's `dryRun=All` (`kubectl diff`, `--dry-run=server`). The store is
        used from one thread, and a write never awaits, so no other request runs within."""
        self._dry = True
        try:
            yield
        finally:
            self._dry = False

    def _next_rv(self, db: sqlite3.Connection) -> int:
        db.execute("UPDATE meta SET value = value + 1 WHERE key = 'rv'")
        return int(db.execute("SELECT value FROM meta WHERE key = 'rv'").fetchone()[0])

    def _row(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT body FROM objects WHERE grp=? AND plural=? AND namespace=? AND name=?",
            (kind.group, kind.plural, namespace, name),
        ).fetchone()
        return orjson.loads(row[0]) if row else None

    # ---- reads -------------------------------------------------------------------------------

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        found = self._row(kind, namespace, name)
        if found is None:
            raise NotFound(f'{kind.plural}.{kind.group} "{name}" not found{_in(namespace)}')
        return found

    def find(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        return self._row(kind, namespace, name)

    def list(
        self,
        kind: Kind,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        where, args = "grp=? AND plural=?", [kind.group, kind.plural]
        if namespace is not None:
            where, args = where + " AND namespace=?", [*args, namespace]
        # `key=value` terms are looked up in the labels index: a controller listing one
        # Service's Revisions costs those, not a pass over every Revision.
        for key, value in label_equalities(label_selector):
            where += (
                " AND (namespace, name) IN (SELECT namespace, name FROM labels"
                " WHERE grp=? AND plural=? AND key=? AND value=?)"
            )
            args += [kind.group, kind.plural, key, value]
        order = "name" if namespace is not None else "namespace, name"
        rows = self._db.execute(f"SELECT body FROM objects WHERE {where} ORDER BY {order}", args)
        matches = selects(label_selector, field_selector)
        return [o for o in (orjson.loads(r[0]) for r in rows) if matches(o)]

    def resource_version(self) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = 'rv'").fetchone()[0])

    # ---- writes ------------------------------------------------------------------------------

    def create(self, kind: Kind, obj: dict[str, Any], validate: bool = True) -> dict[str, Any]:
        obj = self._prepare(kind, obj)
        meta = obj["metadata"]
        if validate:
            self._validate(kind, obj)
        with self._tx() as db:
            if self._row(kind, meta.get("namespace", ""), meta["name"]) is not None:
                raise AlreadyExists(
                    f'{kind.plural}.{kind.group} "{meta["name"]}" already exists{_in(meta.get("namespace", ""))}'
                )
            meta["uid"] = str(uuid.uuid4())
            meta["resourceVersion"] = str(self._next_rv(db))
            meta["generation"] = 1
            meta["creationTimestamp"] = now()
            obj.pop("status", None)
            self._write(db, kind, obj)
        self._notify("ADDED", kind, obj)
        return obj

    def write_status(
        self, kind: Kind, obj: dict[str, Any], status: dict[str, Any]
    ) -> dict[str, Any]:
        """Set `obj`'s status, writing it (one new resourceVersion, one MODIFIED event) only when
        it changed, so a controller that reconciles again without news writes nothing; returns
        the object as stored."""
        if obj.get("status") == status:
            return obj
        obj["status"] = status
        return self.replace(kind, obj, subresource="status")

    def replace(
        self, kind: Kind, obj: dict[str, Any], subresource: str | None = None, validate: bool = True
    ) -> dict[str, Any]:
        obj = self._prepare(kind, obj)
        meta = obj["metadata"]
        with self._tx() as db:
            current = self._row(kind, meta.get("namespace", ""), meta["name"])
            if current is None:
                raise NotFound(
                    f'{kind.plural}.{kind.group} "{meta["name"]}" not found{_in(meta.get("namespace", ""))}'
                )
            given = meta.get("resourceVersion")
            if given and given != current["metadata"]["resourceVersion"]:
                raise Conflict(
                    f'Operation cannot be fulfilled on {kind.plural}.{kind.group} "{meta["name"]}": the object '
                    f"has been modified (resourceVersion {given}, now {current['metadata']['resourceVersion']}); "
                    "read it again and retry"
                )
            if subresource == "status":
                updated = copy.deepcopy(current)
                updated["status"] = obj.get("status") or {}
            else:
                updated = obj
                # status is not the spec's to change; an object without one stays without one
                updated.pop("status", None)
                if "status" in current:
                    updated["status"] = current["status"]
                for key in ("uid", "creationTimestamp", "generation"):
                    updated["metadata"][key] = current["metadata"][key]
                if updated.get("spec") != current.get("spec"):
                    updated["metadata"]["generation"] = current["metadata"]["generation"] + 1
                if validate:
                    self._validate(kind, updated)
            if updated == current:
                return current  # nothing changed: no new resourceVersion, no event
            updated["metadata"]["resourceVersion"] = str(self._next_rv(db))
            self._write(db, kind, updated)
        self._notify("MODIFIED", kind, updated)
        return updated

    def patch(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        patch: dict[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        return self.replace(
            kind, merge_patched(self.get(kind, namespace, name), patch), subresource
        )

    def delete(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        with self._tx() as db:
            current = self._row(kind, namespace, name)
            if current is None:
                raise NotFound(f'{kind.plural}.{kind.group} "{name}" not found{_in(namespace)}')
            deleted = self._delete_tree(db, kind, current)
            for _, dobj in deleted:
                dobj["metadata"]["resourceVersion"] = str(self._next_rv(db))
        for dkind, dobj in deleted:
            self._notify("DELETED", dkind, dobj)
        return current

    def _delete_tree(self, db: sqlite3.Connection, kind: Kind, obj: dict[str, Any]) -> Deleted:
        meta = obj["metadata"]
        for table in ("objects", "labels"):
            db.execute(
                f"DELETE FROM {table} WHERE grp=? AND plural=? AND namespace=? AND name=?",
                (kind.group, kind.plural, meta.get("namespace", ""), meta["name"]),
            )
        deleted = [(kind, obj)]
        # Cascade: everything an owner reference ties to this uid (Kubernetes' background deletion).
        # Only rows whose text holds the owner's uid are decoded (not the whole namespace's).
        for grp, plural, body in db.execute(
            "SELECT grp, plural, body FROM objects WHERE namespace=? AND instr(body, ?) > 0",
            (meta.get("namespace", ""), meta["uid"]),
        ).fetchall():
            child = orjson.loads(body)
            owners = child["metadata"].get("ownerReferences") or []
            if any(ref.get("uid") == meta["uid"] for ref in owners):
                child_kind = by_plural(grp, plural)
                if child_kind is not None and self._row(
                    child_kind, meta.get("namespace", ""), child["metadata"]["name"]
                ):
                    deleted += self._delete_tree(db, child_kind, child)
        return deleted

    def _prepare(self, kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise BadRequest("the body must be a JSON object")
        obj = copy.deepcopy(obj)
        obj.setdefault("apiVersion", kind.api_version)
        obj.setdefault("kind", kind.kind)
        if obj["apiVersion"] != kind.api_version or obj["kind"] != kind.kind:
            raise BadRequest(
                f"the body is a {obj['apiVersion']} {obj['kind']}, but this path serves {kind.api_version} {kind.kind}"
            )
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict) or not meta.get("name"):
            raise Invalid(f"{kind.kind}: metadata.name is required")
        if kind.namespaced:
            meta.setdefault("namespace", "default")
        else:  # as the API server does for a cluster-scoped kind
            meta.pop("namespace", None)
        return obj

    def _validate(self, kind: Kind, obj: dict[str, Any]) -> None:
        errors = kind.errors(
            {k: v for k, v in obj.items() if k != "status"}, autoscaler=self.autoscaler
        )
        if (
            not errors
            and kind.group == "serving.knative.dev"
            and kind.plural in ("services", "routes")
        ):
            # These rules need the revisions in the store, not just the object.
            revisions = self.list(named("revisions"), obj["metadata"]["namespace"])
            errors = revision_reference_errors(
                obj, {r["metadata"]["name"]: r["spec"] for r in revisions}
            )
        if not errors and kind.plural in ("servingruntimes", "clusterservingruntimes"):
            # KServe's webhook compares priorities with the other runtimes of the same scope.
            scope = obj["metadata"].get("namespace") if kind.namespaced else None
            errors = runtime_priority_errors(obj, self.list(kind, scope))
        if errors:
            name = obj["metadata"]["name"]
            raise Invalid(f'{kind.kind} "{name}" is invalid: ' + "; ".join(errors))

    def _write(self, db: sqlite3.Connection, kind: Kind, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        db.execute(
            "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                kind.group,
                kind.plural,
                meta.get("namespace", ""),
                meta["name"],
                meta["uid"],
                int(meta["resourceVersion"]),
                # orjson: the store's reads decode every listed body, its writes encode one
                orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode(),
            ),
        )
        self._write_labels(db, kind.group, kind.plural, meta)

    def _write_labels(self, db: sqlite3.Connection, grp: str, plural: str, meta: Any) -> None:
        at = (grp, plural, meta.get("namespace", ""), meta["name"])
        db.execute("DELETE FROM labels WHERE grp=? AND plural=? AND namespace=? AND name=?", at)
        labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
        db.executemany(
            "INSERT INTO labels VALUES (?, ?, ?, ?, ?, ?)",
            [(*at, str(k), str(v)) for k, v in labels.items()],
        )

    def _index_labels(self) -> None:
        """Fill the labels index of a store written before it had one."""
        if self._db.execute("SELECT 1 FROM labels LIMIT 1").fetchone():
            return
        with self._tx() as db:
            for grp, plural, body in db.execute("SELECT grp, plural, body FROM objects").fetchall():
                self._write_labels(db, grp, plural, orjson.loads(body)["metadata"])

    # ---- watching ----------------------------------------------------------------------------

    def watch(self, since: int | None = None) -> asyncio.Queue[Event]:
        """A queue that receives every event from now on; pass it to `unwatch` when done.

        With `since` (a resourceVersion), the queue starts with the kept events that came after
        it; `Expired` when events after it are no longer kept."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        if since is not None:
            if since < self._history_floor:
                raise Expired(
                    f"too old resource version: {since} (the oldest kept is "
                    f"{self._history_floor}); list again and watch from the list's resourceVersion"
                )
            for rv, event in self._history:
                if rv > since:
                    queue.put_nowait(event)
        self._watchers.append(queue)
        return queue

    def unwatch(self, queue: asyncio.Queue[Event]) -> None:
        if queue in self._watchers:
            self._watchers.remove(queue)

    def _notify(self, event_type: str, kind: Kind, obj: dict[str, Any]) -> None:
        if self._dry:
            return  # a dry run changed nothing
        event = Event(event_type, kind, copy.deepcopy(obj))
        if len(self._history) == HISTORY:
            self._history_floor = self._history[0][0]  # what falls out can no longer be resumed
        self._history.append((int(obj["metadata"]["resourceVersion"]), event))
        for queue in list(self._watchers):
            queue.put_nowait(event)
