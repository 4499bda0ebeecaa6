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
* ``node.restoring`` / ``node.recovering``: a restore about to start (written before it,
  as a restore is not a journalled transaction of its own).
* ``trail.keyed``: the first record with an audit key (or a new one): its key id.

Records are appended in the same SQLite transaction as the state change they describe
(a transaction's commit, a node's result, a run's start), so a crash leaves both or
neither; the append reads the last record and inserts the next one inside that one
``BEGIN IMMEDIATE`` transaction, so two processes appending at once never fork the chain.
See ``chain`` for the digests and the check. Nothing secret is written: payloads go
through :func:`~controller.store.redact.redact` and the password-hash mask, messages
(a node's error may quote a command line) through :func:`clean_text`, and digests are
taken of redacted values.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller.errors import AuditKeyError
from controller.hashes import mask_hashes
from controller.store import chain
from controller.store.database import Database, iso
from controller.store.redact import MASK, is_secret_key, redact

_COLUMNS = "seq, time, actor, trigger, run_id, node, action, payload, alg, prev, digest"
_AUDITED = ("apply", "rollback")  # the runs that write to nodes: each has its run.started


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

# ``name=value``, ``name: value``, ``"name": "value"`` in free text (an error quoting a
# command line or a config file): the value is masked when the name is a secret's. Only
# the name and separator are matched, so a pair's value never hides the next pair's name.
_NAME = re.compile(r"""(?<![\w.-])(?P<name>[A-Za-z_][\w.-]*)["']?\s*[=:]\s*""")
_VALUE = re.compile(r""""[^"]*"|'[^']*'|[^\s,;&"']+""")
_URL_PASSWORD = re.compile(r"(?P<user>[A-Za-z][\w+.-]*://[^/\s:@]*:)[^/\s@]+@")


def clean_text(text: str) -> str:
    """``text`` with password hashes and the values of secret-named pairs masked."""
    text = mask_hashes(text) if "$" in text else text
    if "=" not in text and ":" not in text:
        return text
    if "@" in text:  # https://user:password@host/: the password
        text = _URL_PASSWORD.sub(lambda m: f"{m['user']}{MASK}@", text)
    out: list[str] = []
    at = 0
    for name in _NAME.finditer(text):
        if name.start() < at or not secret_key(name["name"]):
            continue
        value = _VALUE.match(text, name.end())
        if value is None:
            continue
        quote = value[0][0] if value[0][0] in "\"'" else ""
        out += [text[at : name.end()], quote, MASK, quote]
        at = value.end()
    return "".join(out) + text[at:]


def clean(value: Any) -> Any:
    """``value`` as :func:`~controller.store.redact.redact` masks it (in one pass, the
    names' verdicts cached: a plan of thousands of items is recorded at each apply), with
    password hashes masked in every string too."""
    if isinstance(value, str):
        return mask_hashes(value) if "$" in value else value
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return chain.plain_float(value)  # as chain.canonical writes it
    if isinstance(value, Mapping):
        return {
            chain.plain_key(k): MASK if v is not None and secret_key(str(k)) else clean(v)
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
    payload = {"command": command, "source": clean_text(source), "revision": revision}
    if plan_json is not None:
        payload["plan"] = hashlib.sha256(plan_json.encode()).hexdigest()
    return Entry("run.started", payload)


class AuditLog:
    """The store's side of the trail (a mixin of StateStore)."""

    _db: Database
    _now: Callable[[], datetime]
    audit_key: chain.KeyRef | None

    def _keys(self) -> chain.Keyring | None:
        # Read once, at the first append (an apply's run.started, before it writes
        # anything), then kept: a key file removed mid-run must not make the commit of a
        # node already written fail, which would leave its transaction to be rolled back.
        if self.audit_key is None:
            return None
        opened: chain.Keyring | None = getattr(self, "_opened_audit_keys", None)
        if opened is None:
            opened = chain.load_keys(self.audit_key)
            self._opened_audit_keys = opened
        return opened

    def _audit(self, cur: sqlite3.Cursor, entry: Entry, when: str | None = None) -> chain.Record:
        """Append ``entry`` inside the caller's write transaction (BEGIN IMMEDIATE: the
        last record read here is the last one, whoever else appends); ``when``: the time
        the change it records carries, else now. AuditKeyError, appending nothing, when
        the trail is keyed and this process has not that key: a plain record after keyed
        ones would make the whole trail read as forged."""
        keys = self._keys()
        key = None if keys is None else keys.signer
        actor, trigger = entry.actor, entry.trigger
        if (actor is None or trigger is None) and entry.run_id is not None:
            row = cur.execute(
                "SELECT actor, trigger FROM runs WHERE id = ?", (entry.run_id,)
            ).fetchone()
            if row is not None:
                actor = actor if actor is not None else row[0]
                trigger = trigger if trigger is not None else row[1]
        last = cur.execute(
            "SELECT seq, digest, alg FROM audit ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        prior = (int(last[0]), str(last[1])) if last else None
        last_alg = str(last[2]) if last else None
        kid = None if last_alg is None else chain.kid_of(last_alg)
        if kid is not None and (keys is None or keys.get(kid) is None):
            raise AuditKeyError(
                str(self._db.path),
                f"this trail is keyed with key id {kid}; set ${chain.KEY_ENV} or "
                f"${chain.KEY_FILE_ENV} to that key (or to a file of keys, the new one first "
                "and that one after it) to write to it; nothing was written",
            )
        stamp = when or iso(self._now())
        who = (actor or "", trigger or "")
        if key is not None and last_alg is not None and last_alg != chain.alg_for(key):
            # The first record of this key: from here on a plain record is a forgery.
            marker = chain.dumps({"after": clean(last_alg), "kid": key.kid})
            made = self._insert(cur, prior, "trail.keyed", None, None, marker, stamp, who, key)
            prior = (made.seq, made.digest)
        payload = chain.dumps(entry.payload if entry.cleaned else clean(dict(entry.payload)))
        return self._insert(
            cur, prior, entry.action, entry.run_id, entry.node, payload, stamp, who, key
        )

    def _insert(
        self,
        cur: sqlite3.Cursor,
        last: tuple[int, str] | None,
        action: str,
        run_id: int | None,
        node: str | None,
        payload: str,
        when: str,
        who: tuple[str, str],
        key: chain.Key | None,
    ) -> chain.Record:
        """Insert the record after ``last`` (its seq and digest; None: the first)."""
        seq, prev = (last[0] + 1, last[1]) if last else (1, chain.GENESIS)
        alg = chain.alg_for(key)
        unsigned = chain.Record(seq, when, *who, run_id, node, action, payload, alg, prev, "")
        record = dataclasses.replace(unsigned, digest=chain.digest(unsigned.material(), alg, key))
        cur.execute(
            f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            record.row(),
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
            yield chain.from_row(row)

    def audit_verify(self, expect_head: str | None = None) -> chain.Verified:
        """Check the whole chain, and that every apply and rollback run since the trail
        began has its ``run.started`` record; AuditKeyError when it cannot be checked (a
        keyed record and no key set, or none with its key id)."""
        keys = None if self.audit_key is None else chain.load_keys(self.audit_key)
        # One snapshot for both: a run started between two reads would look unrecorded.
        with self._db.read("reading the audit trail") as cur:
            rows = cur.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY seq").fetchall()
            runs = cur.execute(
                "SELECT id, started, command FROM runs WHERE command IN (?, ?) ORDER BY id",
                _AUDITED,
            ).fetchall()
        records = [chain.from_row(row) for row in rows]
        verified = chain.verify(records, keys, expect_head)
        if verified.problem is not None:
            return verified
        problem = _runs_unrecorded(records, runs, keyed=keys is not None)
        return verified if problem is None else dataclasses.replace(verified, problem=problem)


def _runs_unrecorded(
    records: list[chain.Record], runs: list[Any], *, keyed: bool
) -> chain.Problem | None:
    """A run that writes to nodes whose ``run.started`` record is gone. Runs older than
    the first recorded one predate the trail (a state file upgraded), unless a key is set
    and the trail is empty: then its records were all removed."""
    started = {r.run_id for r in records if r.action == "run.started" and r.run_id}
    first = min(started, default=None)
    for run_id, when, command in runs:
        if run_id in started:
            continue
        if first is None and not (keyed and not records):
            return None  # no run recorded yet: all of them predate the trail
        if first is not None and run_id < first:
            continue
        after = next((r for r in records if r.time >= str(when)), None)
        return chain.Problem(
            after.seq if after else (records[-1].seq + 1 if records else 1),
            after.time if after else "",
            "removed",
            f"the {command} run {run_id} (started {when}) has no run.started record: its "
            "records were removed",
        )
    return None
