"""The JSON the API answers with, one function per record.

Times are ISO 8601 in UTC. Plans of runs are the plan JSON the store keeps, redacted when
written; plans and drift items the loop holds in memory are redacted here, on the way out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from controller.plan import plan_json
from controller.reconcile.handle import NodeDrift, PendingApproval, SourceStatus
from controller.store import Run, RunSummary, redact


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def source(status: SourceStatus) -> dict[str, Any]:
    return {
        "name": status.name,
        "location": status.location,
        "branch": status.branch,
        "revision": status.revision,
        "lastSync": _time(status.last_sync),
        "error": status.error,
        "retryAt": _time(status.retry_at),
        "busy": status.busy,
        "up": source_up(status),
    }


def source_up(status: SourceStatus) -> bool:
    """Down while it has an unresolved failure or is backing off."""
    return status.error is None and status.retry_at is None


def readiness(status: SourceStatus) -> dict[str, Any]:
    """What the unauthenticated /readyz shows of a source: no location, no error text."""
    return {"name": status.name, "synced": status.last_sync is not None, "up": source_up(status)}


def run_summary(run: RunSummary) -> dict[str, Any]:
    return {
        "id": run.id,
        "command": run.command.value,
        "trigger": run.trigger.value,
        "status": run.status.value,
        "started": _time(run.started),
        "finished": _time(run.finished),
        "source": run.source,
        "sourceName": run.source_name or None,  # the configured source (fazai serve)
        "revision": run.revision,
        "nodes": [
            {"node": n.node, "status": n.status.value, "message": n.message, "seconds": n.seconds}
            for n in run.nodes
        ],
    }


def run(record: Run) -> dict[str, Any]:
    return {**run_summary(record), "plan": record.plan}


def drift(node: NodeDrift) -> dict[str, Any]:
    return {
        "node": node.node,
        "source": node.source,
        "mode": node.mode.value,
        "checked": _time(node.checked),
        "revision": node.revision,
        "drifted": node.drifted,
        # JSON made here, at the edge; redacted again: the API trusts no caller with it.
        "items": redact([plan_json.item_dict(item) for item in node.items]),
        "error": node.error,
    }


def approval(pending: PendingApproval) -> dict[str, Any]:
    return {
        "id": pending.id,
        "source": pending.source,
        "revision": pending.revision,
        "created": _time(pending.created),
        "nodes": list(pending.nodes),
        "reasons": list(pending.reasons),
        "actors": list(pending.actors),
        **approval_count(pending),
        "plan": redact(dict(pending.plan)),
    }


def approval_count(pending: PendingApproval) -> dict[str, Any]:
    """How many approvals a pending plan has and needs, and by whom."""
    return {
        "required": pending.required,
        "approvals": len(pending.approved_by),
        "approvedBy": list(pending.approved_by),
    }
