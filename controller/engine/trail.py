"""What the audit trail records of plans, runs, approvals and policy denials.

The trail itself (append-only, hash-chained) is the state store's
(``controller.store.audit``); this module turns the plan's typed items, their verdicts and
the run's actor into its entries, above both the plan and the store.
"""

from __future__ import annotations

import hashlib
import os
import pwd
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from controller.plan.items import PlanItem
from controller.plan.verdicts import RunContext, Verdict
from controller.store import audit, chain
from controller.store.redact import MASK


def os_actor(environ: Mapping[str, str] | None = None) -> str:
    """The person behind a CLI command: the OS user of the effective uid (not $LOGNAME or
    $USER, which anyone sets), and under sudo who ran sudo. $SUDO_USER is believed only
    with root's euid and $SUDO_UID set, as sudo leaves them (a user setting it for
    themselves is not root)."""
    env = os.environ if environ is None else environ
    uid = os.geteuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = "?"
    actor = f"{user} (uid {uid})"
    sudo, sudo_uid = env.get("SUDO_USER"), env.get("SUDO_UID")
    if uid == 0 and sudo and sudo_uid and sudo_uid.isdigit() and sudo_uid != "0":
        return f"{actor} (sudo by {audit.clean_text(sudo)}, uid {sudo_uid})"
    return actor


def commit_actor(author: str, signature: str | None) -> str:
    """The actor of a git-triggered run: the commit's author, and what its signature
    check said (``None``: the source does not check signatures)."""
    return f"{author} [{signature or 'signature not checked'}]"


def context_for(trigger: str, run: RunContext | None) -> RunContext:
    """``run``, or the context a caller that gave none runs in: the OS user."""
    if run is not None:
        return run
    return RunContext(trigger=trigger, mode="apply", actor=os_actor())


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
    return MASK if value is not None and audit.secret_key(name) else value


def item_digest(item: PlanItem) -> str:
    """The digest of one plan item as the trail records it: node, kind, name, action,
    adopt and each change's field, live and desired values (and diff), secrets masked.
    Equal digests: the same change, judged on the same live values (what the engine checks
    before it writes a plan that was judged or approved)."""
    return _digest(item, _changes(item))


def _changes(item: PlanItem) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = audit.clean(
        [
            {
                "field": c.field,
                "live": _masked(c.field, c.live),
                "desired": _masked(c.field, c.desired),
            }
            for c in item.changes
        ]
    )
    return changes


def _digest(item: PlanItem, changes: list[dict[str, Any]]) -> str:
    # The digest covers the item as the plan shows it (its diffs too), secrets masked.
    whole = {
        "node": audit.clean(item.node),
        "kind": audit.clean(item.kind),
        "name": audit.clean(item.name),
        "action": item.action.value,
        "changes": [
            {**c, "diff": None if audit.secret_key(ch.field) else audit.clean(ch.diff)}
            for c, ch in zip(changes, item.changes, strict=True)
        ],
        "adopt": audit.clean(item.adopt),
    }
    return hashlib.sha256(chain.dumps(whole).encode()).hexdigest()


def item_payload(item: PlanItem) -> dict[str, Any]:
    """One plan item as the trail records it: its digest, changes (no secret), verdicts."""
    changes = _changes(item)
    out: dict[str, Any] = {
        "kind": audit.clean(item.kind),
        "name": audit.clean(item.name),
        "action": item.action.value,
        "digest": _digest(item, changes),
        "changes": changes,
        "verdicts": audit.clean([_verdict(v) for v in item.verdicts]),
    }
    if item.adopt:
        out["adopt"] = audit.clean(item.adopt)
    return out


class _Seen(Protocol):
    @property
    def live(self) -> Mapping[str, Any] | None: ...


def live_digest(resources: Mapping[Any, _Seen]) -> str:
    """The digest of what a verifying read found (documents -> observed), redacted."""
    return audit.digest_of({f"{d.kind}/{d.name}": seen.live for d, seen in resources.items()})


def node_entry(
    run_id: int,
    node: str,
    items: Sequence[PlanItem],
    result: str,
    message: str = "",
    *,
    before: str | None = None,
    after: str | None = None,
) -> audit.Entry:
    """The record of one node transaction of an apply (``before``/``after``: digests of
    the snapshot and of the verified live state)."""
    written = [i for i in items if i.action.value in ("create", "update", "delete")]
    return audit.Entry(
        "node.transaction",
        {
            "items": [item_payload(i) for i in written],
            "before": before,
            "after": after,
            "result": result,
            "message": audit.clean_text(message),
        },
        run_id=run_id,
        node=node,
        cleaned=True,
    )


def node_event(
    action: str, run_id: int, node: str, result: str, message: str, **extra: Any
) -> audit.Entry:
    """A node's restore (``node.restoring`` before it, ``node.restored`` after) or recovery
    (``node.recovering``, ``node.recovered``: by whoever runs the recovery, not the actor
    of the run it was part of)."""
    payload = {"result": result, "message": audit.clean_text(message), **audit.clean(extra)}
    actor = os_actor() if action.startswith("node.recover") else None
    return audit.Entry(action, payload, run_id=run_id, node=node, actor=actor)


class Store(Protocol):
    """What the functions for other modules need of the state store."""

    def audit_append(self, entry: audit.Entry) -> chain.Record: ...


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
        audit.Entry(
            "policy.denied",
            {
                "mode": run.mode,
                "source": audit.clean(source),
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
    """An approval given (``approved``), refused (``refused``: by a policy on the fresh
    plan, because the approver set the change going, or because a newer offer superseded
    it; ``reason`` says which) or dropped (``aborted``). A token without the approver role
    or outside the approval's scope is refused by the API (403) before any approval is
    looked at, and leaves no record here."""
    payload: dict[str, Any] = {
        "approval": approval_id,
        "source": audit.clean(source),
        "revision": revision,
        "nodes": list(nodes),
    }
    if plan is not None:
        payload["plan"] = audit.digest_of(plan)
    if reason:
        payload["reason"] = audit.clean_text(reason)
    return store.audit_append(
        audit.Entry(f"approval.{decision}", payload, actor=actor, trigger="api")
    )


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
