"""The audit trail: an append-only, hash-chained record of every write FazAI makes.

What is recorded (``action`` of each record, with its payload):

* ``run.started`` / ``run.finished``: an apply or rollback run, who started it (the actor
  the run carries), the source and revision, the digest of its plan; its final status.
* ``node.transaction``: one node of an apply: the plan items written (each one's digest,
  its field changes with secrets masked, the policy verdicts on it), the digest of the
  snapshot taken before and of the verified live state after, and the result
  (``converged``, ``rolled_back``, ``failed``) with its message.
* ``node.restored`` (``fazai rollback``) and ``node.recovered`` (an interrupted
  transaction rolled back at the next start).
* ``policy.denied``: an apply the policy stage refused (nothing written to any node).
* ``approval.approved`` / ``approval.refused`` / ``approval.aborted``.

Records are appended in the same SQLite transaction as the state change they describe
(a transaction's commit, a node's result, a run's start), so a crash leaves both or
neither; the append reads the last record and inserts the next one inside that one
``BEGIN IMMEDIATE`` transaction, so two processes appending at once never fork the chain.
See ``chain`` for the digests and the check. Nothing secret is written: payloads go
through :func:`~controller.store.redact.redact` and the password-hash mask, and digests
are taken of redacted values.
"""

from __future__ import annotations

import functools
import hashlib
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller.errors import StoreError
from controller.hashes import mask_hashes
from controller.store import chain
from controller.store.database import Database, iso
from controller.store.redact import MASK, is_secret_key, redact

_COLUMNS = "seq, time, actor, trigger, run_id, node, action, payload, alg, prev, digest"


@dataclass(frozen=True)
class Entry:
    """A record to append. ``actor``/``trigger`` None: those of run ``run_id``."""

    action: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    run_id: int | None = None
    node: str | None = None
    actor: str | None = None
    trigger: str | None = None
    cleaned: bool = False  # the payload is already masked and plain (see ``_clean``)


secret_key = functools.lru_cache(maxsize=4096)(is_secret_key)  # few names, many items


def clean(value: Any) -> Any:
    """``value`` as :func:`~controller.store.redact.redact` masks it (in one pass, the
    names' verdicts cached: a plan of thousands of items is recorded at each apply), with
    password hashes masked in every string too."""
    if isinstance(value, str):
        return mask_hashes(value) if "$" in value else value
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return repr(value)  # as chain.canonical writes it: one text in every language
    if isinstance(value, Mapping):
        return {
            str(k): MASK if v is not None and secret_key(str(k)) else clean(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    masked = redact(value)  # a Secret, a Sealed: masked as the store masks them
    return masked if isinstance(masked, str) else str(masked)


def digest_of(value: Any) -> str:
    """The SHA-256 of ``value`` redacted (a digest of a secret could be guessed at)."""
    return hashlib.sha256(chain.dumps(clean(value)).encode()).hexdigest()


def run_started(command: str, source: str, revision: str | None, plan_json: str | None) -> Entry:
    """``plan_json``: the plan as the run log stores it (redacted, canonical): its digest
    names the plan the run applies, at no cost of encoding it again."""
    payload = {"command": command, "source": clean(source), "revision": revision}
    if plan_json is not None:
        payload["plan"] = hashlib.sha256(plan_json.encode()).hexdigest()
    return Entry("run.started", payload)


class AuditLog:
    """The store's side of the trail (a mixin of StateStore)."""

    _db: Database
    _now: Callable[[], datetime]
    audit_key: chain.KeyRef | None

    def _key(self) -> chain.Key | None:
        # Read once, at the first append (an apply's run.started, before it writes
        # anything), then kept: a key file removed mid-run must not make the commit of a
        # node already written fail, which would leave its transaction to be rolled back.
        if self.audit_key is None:
            return None
        opened: chain.Key | None = getattr(self, "_opened_audit_key", None)
        if opened is None:
            opened = chain.load_key(self.audit_key)
            self._opened_audit_key = opened
        return opened

    def _audit(self, cur: sqlite3.Cursor, entry: Entry, when: str | None = None) -> chain.Record:
        """Append ``entry`` inside the caller's write transaction (BEGIN IMMEDIATE: the
        last record read here is the last one, whoever else appends); ``when``: the time
        the change it records carries, else now."""
        key = self._key()
        actor, trigger = entry.actor, entry.trigger
        if (actor is None or trigger is None) and entry.run_id is not None:
            row = cur.execute(
                "SELECT actor, trigger FROM runs WHERE id = ?", (entry.run_id,)
            ).fetchone()
            if row is not None:
                actor = actor if actor is not None else row[0]
                trigger = trigger if trigger is not None else row[1]
        last = cur.execute("SELECT seq, digest FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (int(last[0]) + 1, str(last[1])) if last else (1, chain.GENESIS)
        payload = chain.dumps(entry.payload if entry.cleaned else clean(dict(entry.payload)))
        alg = chain.alg_for(key)
        unsigned = chain.Record(
            seq,
            when or iso(self._now()),
            actor or "",
            trigger or "",
            entry.run_id,
            entry.node,
            entry.action,
            payload,
            alg,
            prev,
            "",
        )
        record = chain.Record(
            **{**vars(unsigned), "digest": chain.digest(unsigned.material(), alg, key)}
        )
        cur.execute(
            f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            tuple(vars(record).values()),
        )
        return record

    def audit_append(self, entry: Entry) -> chain.Record:
        """Append a record on its own (for events with no state change of their own)."""
        with self._db.write(f"recording {entry.action} in the audit trail") as cur:
            return self._audit(cur, entry)

    def audit_records(self, since: datetime | None = None) -> Iterator[chain.Record]:
        """The records in seq order (from ``since``, when given), read in one snapshot."""
        with self._db.read("reading the audit trail") as cur:
            if since is None:
                rows = cur.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY seq").fetchall()
            else:
                rows = cur.execute(
                    f"SELECT {_COLUMNS} FROM audit WHERE time >= ? ORDER BY seq", (iso(since),)
                ).fetchall()
        for row in rows:
            yield chain.Record(*row)

    def audit_verify(self, expect_head: str | None = None) -> chain.Verified:
        """Check the whole chain; AuditKeyError when it is keyed and no key is set."""
        records = list(self.audit_records())
        key = None
        if chain.needs_key(records):
            if self.audit_key is None:
                return chain.verify(records, None, expect_head)  # raises, naming what to set
            key = chain.load_key(self.audit_key)
        try:
            return chain.verify(records, key, expect_head)
        except (TypeError, ValueError) as exc:  # a column of the wrong type, by hand
            raise StoreError(str(self._db.path), f"the audit trail is unreadable: {exc}") from exc
