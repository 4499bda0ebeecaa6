"""The drift report as JSON. Its shape is documented by ``schemas/report.schema.json``;
extend it, never break it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from controller.reports.model import DriftReport

API_VERSION = "fazai.dev/v1alpha1"


@cache
def schema() -> Mapping[str, Any]:
    text = resources.files("controller.reports").joinpath("schemas/report.schema.json")
    loaded: Mapping[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return loaded


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def to_dict(report: DriftReport) -> dict[str, Any]:
    nodes = report.nodes
    return {
        "apiVersion": API_VERSION,
        "kind": "DriftReport",
        "title": report.title,
        "generated": report.generated.isoformat(),
        "status": report.status,
        "exitCode": report.exit_code,
        "windowDays": report.window_days,
        "summary": {
            "nodes": len(nodes),
            "nodesDrifted": sum(1 for n in nodes if n.drifted),
            "nodesFailed": report.failed_nodes,
            "drifted": report.drifted,
            "create": sum(n.create for n in nodes),
            "update": sum(n.update for n in nodes),
            "delete": sum(n.delete for n in nodes),
            "errors": sum(n.errors for n in nodes),
        },
        "sources": [
            {
                "name": s.name,
                "location": s.location,
                "branch": s.branch,
                "revision": s.revision,
                "lastSync": _time(s.last_sync),
                "error": s.error,
            }
            for s in report.sources
        ],
        "nodes": [
            {
                "node": n.node,
                "source": n.source,
                "platform": n.platform,
                "mode": n.mode,
                "checked": _time(n.checked),
                "revision": n.revision,
                "create": n.create,
                "update": n.update,
                "delete": n.delete,
                "errors": n.errors,
                "drifted": n.drifted,
                "inSync": n.in_sync,
                "error": n.error,
            }
            for n in nodes
        ],
        "resources": [
            {
                "node": r.node,
                "source": r.source,
                "kind": r.kind,
                "name": r.name,
                "action": r.action,
                "error": r.error,
                "changes": [
                    {
                        "field": c.field,
                        "live": c.live,
                        "desired": c.desired,
                        **({"diff": c.diff} if c.diff else {}),
                    }
                    for c in r.changes
                ],
            }
            for r in report.resources
        ],
        "series": [
            {
                "runId": p.run_id,
                "time": p.time.isoformat(),
                "source": p.source,
                "revision": p.revision,
                "command": p.command,
                "trigger": p.trigger,
                "drifted": p.drifted,
                "errors": p.errors,
                "nodes": dict(p.nodes),
            }
            for p in report.series
        ],
    }


def render(report: DriftReport) -> str:
    return json.dumps(to_dict(report), indent=2, ensure_ascii=False) + "\n"
