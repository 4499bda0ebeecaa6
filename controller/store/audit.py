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
import getpass
import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from controller.errors import StoreError
from controller.hashes import mask_hashes
from controller.plan.items import PlanItem
from controller.plan.verdicts import RunContext, Verdict
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


def os_actor(environ: Mapping[str, str] | None = None) -> str:
    """The person behind a CLI command: the OS user, and under sudo who ran sudo."""
    env = os.environ if environ is None else environ
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    sudo = env.get("SUDO_USER")
    return f"{user} (sudo by {sudo})" if sudo and sudo != user else user


def commit_actor(author: str, signature: str | None) -> str:
    """The actor of a git-triggered run: the commit's author, and what its signature
    check said (``None``: the source does not check signatures)."""
    return f"{author} [{signature or 'signature not checked'}]"


def context_for(trigger: str, run: RunContext | None) -> RunContext:
    """``run``, or the context a caller that gave none runs in: the OS user."""
    if run is not None:
        return run
    return RunContext(trigger=trigger, mode="apply", actor=os_actor())


_secret_key = functools.lru_cache(maxsize=4096)(is_secret_key)  # few names, many items


def _clean(value: Any) -> Any:
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
            str(k): MASK if v is not None and _secret_key(str(k)) else _clean(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    masked = redact(value)  # a Secret, a Sealed: masked as the store masks them
    return masked if isinstance(masked, str) else str(masked)


def digest_of(value: Any) -> str:
    """The SHA-256 of ``value`` redacted (a digest of a secret could be guessed at)."""
    return hashlib.sha256(chain.dumps(_clean(value)).encode()).hexdigest()


def _verdict(v: Verdict) -> dict[str, Any]:
    out: dict[str, Any] = {
        "policy": v.policy,
        "rule": v.rule,
        "effect": v.effect.value,
        "message": v.message,
    }
    if v.approvals != 1:
        out["approvals"] = v.approvals
    if v.reason:
        out["reason"] = v.reason
    return out


def _masked(name: str, value: Any) -> Any:
    """A field change's value, masked when the field is named like a secret."""
    return MASK if value is not None and _secret_key(name) else value


def item_payload(item: PlanItem) -> dict[str, Any]:
    """One plan item as the trail records it: its digest, changes (no secret), verdicts."""
    changes = _clean(
        [
            {
                "field": c.field,
                "live": _masked(c.field, c.live),
                "desired": _masked(c.field, c.desired),
            }
            for c in item.changes
        ]
    )
    # The digest covers the item as the plan shows it (its diffs too), secrets masked.
    whole = {
        "node": _clean(item.node),
        "kind": _clean(item.kind),
        "name": _clean(item.name),
        "action": item.action.value,
        "changes": [
            {**c, "diff": None if _secret_key(ch.field) else _clean(ch.diff)}
            for c, ch in zip(changes, item.changes, strict=True)
        ],
        "adopt": _clean(item.adopt),
    }
    out: dict[str, Any] = {
        "kind": _clean(item.kind),
        "name": _clean(item.name),
        "action": item.action.value,
        "digest": hashlib.sha256(chain.dumps(whole).encode()).hexdigest(),
        "changes": changes,
        "verdicts": _clean([_verdict(v) for v in item.verdicts]),
    }
    if item.adopt:
        out["adopt"] = _clean(item.adopt)
    return out


class _Seen(Protocol):
    @property
    def live(self) -> Mapping[str, Any] | None: ...


def live_digest(resources: Mapping[Any, _Seen]) -> str:
    """The digest of what a verifying read found (documents -> observed), redacted."""
    return digest_of({f"{d.kind}/{d.name}": seen.live for d, seen in resources.items()})


def node_entry(
    run_id: int,
    node: str,
    items: Sequence[PlanItem],
    result: str,
    message: str = "",
    *,
    before: str | None = None,
    after: str | None = None,
) -> Entry:
    """The record of one node transaction of an apply (``before``/``after``: digests of
    the snapshot and of the verified live state)."""
    written = [i for i in items if i.action.value in ("create", "update", "delete")]
    return Entry(
        "node.transaction",
        {
            "items": [item_payload(i) for i in written],
            "before": before,
            "after": after,
            "result": result,
            "message": _clean(message),
        },
        run_id=run_id,
        node=node,
        cleaned=True,
    )


def node_event(
    action: str, run_id: int, node: str, result: str, message: str, **extra: Any
) -> Entry:
    """A node's restore (``node.restored``) or recovery (``node.recovered``: by whoever
    runs the recovery, not the actor of the run it was part of)."""
    payload = {"result": result, "message": _clean(message), **_clean(extra)}
    actor = os_actor() if action == "node.recovered" else None
    return Entry(action, payload, run_id=run_id, node=node, actor=actor)


def run_started(command: str, source: str, revision: str | None, plan_json: str | None) -> Entry:
    """``plan_json``: the plan as the run log stores it (redacted, canonical): its digest
    names the plan the run applies, at no cost of encoding it again."""
    payload = {"command": command, "source": _clean(source), "revision": revision}
    if plan_json is not None:
        payload["plan"] = hashlib.sha256(plan_json.encode()).hexdigest()
    return Entry("run.started", payload)


class Store(Protocol):
    """What the functions for other modules need of the state store."""

    def audit_append(self, entry: Entry) -> chain.Record: ...


def record_denied(
    store: Store,
    run: RunContext,
    items: Sequence[PlanItem],
    *,
    source: str = "",
    revision: str | None = None,
    run_id: int | None = None,
) -> chain.Record:
    """An apply the policy stage refused: nothing was written to any node, and the trail
    says who asked for what, and which rules said no (``items``: the denied ones, or the
    whole plan's items; each carries its verdicts)."""
    return store.audit_append(
        Entry(
            "policy.denied",
            {
                "mode": run.mode,
                "source": _clean(source),
                "revision": revision,
                "items": [{"node": i.node, **item_payload(i)} for i in items],
            },
            run_id=run_id,
            actor=run.actor,
            trigger=run.trigger,
        )
    )


def record_approval(
    store: Store,
    *,
    approval_id: str,
    decision: str,
    actor: str,
    source: str,
    revision: str | None,
    nodes: Sequence[str],
    plan: Any = None,
    reason: str = "",
) -> chain.Record:
    """An approval given (``approved``), refused (``refused``: a token without the role)
    or dropped (``aborted``)."""
    payload: dict[str, Any] = {
        "approval": approval_id,
        "source": _clean(source),
        "revision": revision,
        "nodes": list(nodes),
    }
    if plan is not None:
        payload["plan"] = digest_of(plan)
    if reason:
        payload["reason"] = _clean(reason)
    return store.audit_append(Entry(f"approval.{decision}", payload, actor=actor, trigger="api"))


class _Approval(Protocol):
    """A pending approval (``reconcile.handle.PendingApproval``), as far as it is recorded."""

    @property
    def id(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def revision(self) -> str | None: ...
    @property
    def nodes(self) -> Sequence[str]: ...
    @property
    def plan(self) -> Any: ...


def approval_event(
    store: Store, approval: _Approval, decision: str, actor: str = "api", reason: str = ""
) -> chain.Record:
    """:func:`record_approval` of a pending approval (one call where it is decided)."""
    return record_approval(
        store,
        approval_id=approval.id,
        decision=decision,
        actor=actor,
        source=approval.source,
        revision=approval.revision,
        nodes=approval.nodes,
        plan=approval.plan,
        reason=reason,
    )


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
        payload = chain.dumps(entry.payload if entry.cleaned else _clean(dict(entry.payload)))
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
