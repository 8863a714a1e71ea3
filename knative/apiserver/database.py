"""The SQLite files of the plane (objects, events): opened the same way, written in transactions.

WAL lets readers go on while one writer commits; `synchronous=NORMAL` survives a crash of the
process (what the plane promises), `FULL` also a power loss. Autocommit is off in sqlite3's sense
(`isolation_level=None`) so that `transaction` decides exactly where each one begins and ends.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def open_database(path: str | Path, schema: str, *, fsync: bool = False) -> sqlite3.Connection:
    """Open (creating its folder and `schema` if needed) a WAL database at `path` or ':memory:'."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
    db.executescript(schema)
    return db


@contextmanager
def transaction(db: sqlite3.Connection, commit: bool = True) -> Iterator[sqlite3.Connection]:
    """A write transaction that takes the lock at once (no upgrade deadlock), rolled back on error
    (and at its end when not `commit`: a dry run)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT" if commit else "ROLLBACK")
