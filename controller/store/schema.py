"""The schema of the state file and the steps that bring an older file up to date.

``PRAGMA user_version`` holds the schema version: 0 for a new (empty) file. Each entry of
:data:`MIGRATIONS` takes the file from version *i* to *i + 1*; it is applied in one write
transaction together with the version bump, so a crash mid-migration leaves the old
version intact. A file newer than this FazAI knows is refused, never touched: an older
controller cannot know what the newer one's journal means.

To change the schema, append a migration; never edit a published one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

Migration = Sequence[str]  # statements, run in order

_V1: Migration = (
    """
    CREATE TABLE runs (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, even after pruning
        started   TEXT NOT NULL,
        finished  TEXT,
        trigger   TEXT NOT NULL
                  CHECK (trigger IN ('cli', 'schedule', 'webhook', 'watch', 'api')),
        command   TEXT NOT NULL CHECK (command IN ('plan', 'apply', 'rollback', 'drift')),
        source    TEXT NOT NULL,
        revision  TEXT,
        plan      TEXT,
        status    TEXT NOT NULL
                  CHECK (status IN ('in_progress', 'succeeded', 'partial', 'failed',
                                    'interrupted'))
    )
    """,
    """
    CREATE TABLE run_nodes (
        run_id   INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        node     TEXT NOT NULL,
        status   TEXT NOT NULL
                 CHECK (status IN ('converged', 'rolled_back', 'failed', 'skipped',
                                   'in_progress')),
        message  TEXT NOT NULL,
        seconds  REAL NOT NULL,
        PRIMARY KEY (run_id, node)
    )
    """,
    """
    CREATE TABLE transactions (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id    INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        node      TEXT NOT NULL,
        started   TEXT NOT NULL,
        finished  TEXT,
        status    TEXT NOT NULL CHECK (status IN ('open', 'committed', 'rolled_back')),
        message   TEXT NOT NULL DEFAULT '',
        UNIQUE (run_id, node)
    )
    """,
    # Recovery at start-up asks for the open ones; keep that cheap however long the history.
    "CREATE INDEX transactions_open ON transactions(id) WHERE status = 'open'",
    """
    CREATE TABLE snapshots (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,  -- recording order
        txn_id    INTEGER NOT NULL REFERENCES transactions(id) ON DELETE CASCADE,
        kind      TEXT NOT NULL,
        name      TEXT NOT NULL,
        key       TEXT NOT NULL,
        before    TEXT,                               -- NULL: the object did not exist
        recorded  TEXT NOT NULL,
        UNIQUE (txn_id, kind, name, key)
    )
    """,
    """
    CREATE TABLE steps (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        txn_id    INTEGER NOT NULL REFERENCES transactions(id) ON DELETE CASCADE,
        seq       INTEGER NOT NULL,
        kind      TEXT NOT NULL,
        name      TEXT NOT NULL,
        action    TEXT NOT NULL,
        payload   TEXT NOT NULL,
        status    TEXT NOT NULL CHECK (status IN ('intended', 'done', 'failed')),
        message   TEXT NOT NULL DEFAULT '',
        intended  TEXT NOT NULL,
        finished  TEXT,
        UNIQUE (txn_id, seq)
    )
    """,
    """
    CREATE TABLE owned (
        node         TEXT NOT NULL,
        kind         TEXT NOT NULL,
        name         TEXT NOT NULL,
        platform_id  TEXT NOT NULL,
        run_id       INTEGER REFERENCES runs(id) ON DELETE SET NULL,
        created      TEXT NOT NULL,
        PRIMARY KEY (node, kind, name)
    )
    """,
)

# The audit trail (see ``audit``) and who started each run. Records carry no foreign key:
# they outlive the runs they describe. The triggers refuse edits through SQLite; an
# attacker editing the file drops them, which is why ``audit.verify`` checks the chain.
_V2: Migration = (
    "ALTER TABLE runs ADD COLUMN actor TEXT NOT NULL DEFAULT ''",
    """
    CREATE TABLE audit (
        seq      INTEGER PRIMARY KEY,  -- 1, 2, 3...: no gaps, never reused
        time     TEXT NOT NULL,
        actor    TEXT NOT NULL,
        trigger  TEXT NOT NULL,
        run_id   INTEGER,
        node     TEXT,
        action   TEXT NOT NULL,
        payload  TEXT NOT NULL,        -- canonical JSON, redacted
        alg      TEXT NOT NULL,        -- sha256, or hmac-sha256:<key id>
        prev     TEXT NOT NULL,        -- the digest of record seq - 1 (64 zeros for seq 1)
        digest   TEXT NOT NULL
    )
    """,
    "CREATE INDEX audit_time ON audit(time)",
    """
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END
    """,
    """
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END
    """,
)

# The name of the configured source (sources[].name) a run of ``fazai serve`` reconciled:
# several sources can share one repository and branch (folders of a monorepo), so the
# recorded location alone does not tell which ("" for runs without one, and older runs).
_V3: Migration = ("ALTER TABLE runs ADD COLUMN source_name TEXT NOT NULL DEFAULT ''",)

# Tools the agent verified for a goal (``agenttools``): what the loop applies again with
# no model call until the goal's resolvedBy is desired state (its pull request merged).
# ``masked``: the store's redaction masked a part of the spec or params, so the record
# tells what was verified but cannot be applied again as it is.
_V4: Migration = (
    """
    CREATE TABLE agent_tools (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        goal         TEXT NOT NULL,
        node         TEXT,                  -- the node it was verified on (NULL: unknown)
        tool         TEXT NOT NULL,
        spec         TEXT NOT NULL,         -- JSON, redacted
        params       TEXT NOT NULL,         -- JSON, redacted
        masked       INTEGER NOT NULL CHECK (masked IN (0, 1)),
        verified_at  TEXT NOT NULL,
        run_id       INTEGER REFERENCES runs(id) ON DELETE SET NULL,
        reference    TEXT NOT NULL DEFAULT ''  -- the commit or pull request it went back as
    )
    """,
    "CREATE INDEX agent_tools_goal ON agent_tools(goal, id)",
)

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3, _V4)
SCHEMA_VERSION = len(MIGRATIONS)


class NewerSchemaError(Exception):
    """The file was written by a newer FazAI; ``found`` is its version."""

    def __init__(self, found: int, known: int) -> None:
        self.found = found
        self.known = known
        super().__init__(f"schema version {found} is newer than {known}, the newest known")


def version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the file behind ``conn`` (autocommit mode) to ``len(migrations)``; returns the
    version found before. Raises NewerSchemaError, or sqlite3 errors for the caller to map.

    The version is read again under the write lock, so two controllers starting at once on
    an old file migrate it once."""
    known = len(migrations)
    found = version(conn)
    if found > known:
        raise NewerSchemaError(found, known)
    if found == known:
        return found
    conn.execute("BEGIN IMMEDIATE")
    try:
        start = version(conn)
        if start > known:
            raise NewerSchemaError(start, known)
        for target in range(start + 1, known + 1):
            for statement in migrations[target - 1]:
                conn.execute(statement)
            # PRAGMA does not take parameters; ``target`` is an int we computed.
            conn.execute(f"PRAGMA user_version = {int(target)}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite already rolled back on some errors (I/O, full)
            conn.execute("ROLLBACK")
        raise
    return found
