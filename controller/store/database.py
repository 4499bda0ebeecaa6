"""One SQLite connection, its settings, its lock, and the mapping of its errors.

Settings, and why:

* ``journal_mode=WAL``: readers (``fazai history``, a second controller) never block the
  writer, and a commit is one append to the WAL.
* ``synchronous=FULL``: in WAL mode this fsyncs the WAL at every commit, so a journal
  intent that :meth:`Database.write` returned from is on disk before the caller sends the
  change (NORMAL would survive a process kill but not a power cut).
* ``foreign_keys=ON``: SQLite leaves it off per connection by default.
* ``busy_timeout``: another process holding the write lock is waited for, then reported
  as :class:`StoreLockedError` (retryable) rather than failing at once.

The connection runs in autocommit mode and every operation takes an explicit ``BEGIN
IMMEDIATE`` (writes) or ``BEGIN`` (reads of several statements): taking the write lock up
front avoids the deadlock of two readers upgrading to writers at once in WAL mode.

Threads: one :class:`threading.Lock` serializes all use, so the store may be shared by
threads (``asyncio.to_thread``) as well as called straight from a coroutine; every
operation is a single small transaction, milliseconds plus one fsync. Where many records
go together (the intents of a batch of steps), one operation writes them all: one fsync.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.errors import StoreError, StoreLockedError
from controller.store import schema
from controller.store.redact import redact

DEFAULT_BUSY_TIMEOUT = 5.0  # seconds

# Primary result codes (the low byte of an extended code such as SQLITE_BUSY_SNAPSHOT).
_LOCKED = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
_READ_ONLY = {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM}
_CORRUPT = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


class Database:
    def __init__(self, path: Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        # Write transactions committed through this connection: each is one fsync of the
        # WAL, the cost that batching journal records saves (read by tests and benchmarks).
        self.commits = 0
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                str(path), f"cannot create its directory: {exc.strerror or exc}"
            ) from exc
        try:
            # check_same_thread=False: the lock above, not the thread, guards the connection.
            self._conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
            )
        except sqlite3.Error as exc:
            raise self.error(exc, "cannot open it") from exc
        try:
            self._configure()
        except BaseException:
            self._conn.close()
            raise

    def _configure(self) -> None:
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            self._conn.execute("PRAGMA foreign_keys = ON")
            # Reading the schema first tells a corrupt or foreign file apart from one that is
            # merely read-only, which the journal_mode switch would report as "readonly".
            schema.version(self._conn)
            self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(str(self.path), f"cannot use WAL mode (got {mode!r})")
            self._conn.execute("PRAGMA synchronous = FULL")
            schema.migrate(self._conn)
        except schema.NewerSchemaError as exc:
            raise StoreError(
                str(self.path),
                f"written by a newer FazAI (schema version {exc.found}; this FazAI knows up "
                f"to {exc.known}); upgrade FazAI or point it at another state file",
            ) from exc
        except sqlite3.Error as exc:
            raise self.error(exc, "cannot open it") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def error(self, exc: sqlite3.Error, doing: str) -> StoreError:
        """``exc`` as a StoreError naming the file and the likely cause."""
        # Errors raised by the sqlite3 module itself (a closed connection) carry no code.
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        text = str(exc)
        path = str(self.path)
        if code in _LOCKED:
            return StoreLockedError(
                path,
                f"{doing}: locked by another process for over {self.busy_timeout:g}s ({text})",
            )
        if code in _READ_ONLY:
            return StoreError(
                path, f"{doing}: not writable; check the file and its directory ({text})"
            )
        if code in _CORRUPT:
            return StoreError(path, f"{doing}: corrupt or not a FazAI state file ({text})")
        if code == sqlite3.SQLITE_FULL:
            return StoreError(path, f"{doing}: the disk is full ({text})")
        return StoreError(path, f"{doing}: {text}")

    @contextmanager
    def write(self, doing: str) -> Iterator[sqlite3.Cursor]:
        """A write transaction, durable once the block exits without raising."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn.cursor()
                    self._conn.execute("COMMIT")
                    self.commits += 1
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self.error(exc, doing) from exc

    @contextmanager
    def read(self, doing: str) -> Iterator[sqlite3.Cursor]:
        """A read transaction: the statements in the block see one consistent snapshot."""
        with self._lock:
            try:
                self._conn.execute("BEGIN")
                try:
                    yield self._conn.cursor()
                finally:
                    if self._conn.in_transaction:
                        self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self.error(exc, doing) from exc


def to_json(value: Any, what: str, path: Path) -> str:
    """``value`` redacted and encoded; every JSON the store writes comes through here."""
    try:
        return json.dumps(redact(value), sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise StoreError(str(path), f"{what} is not JSON: {exc}") from exc


def from_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def last_id(cur: sqlite3.Cursor) -> int:
    """The id of the row the cursor just inserted."""
    rowid = cur.lastrowid
    assert rowid is not None  # set by every successful INSERT
    return rowid


def iso(moment: datetime) -> str:
    """UTC ISO 8601 text; naive datetimes are refused rather than guessed at."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat()


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def utc_now() -> datetime:
    return datetime.now(UTC)
