"""The plan as JSON. Its shape is documented by ``plan.schema.json`` beside this module;
extend it, never break it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from controller.plan.diff import Action
from controller.plan.items import Plan, PlanItem


@cache
def schema() -> Mapping[str, Any]:
    text = resources.files("controller.plan").joinpath("plan.schema.json").read_text()
    loaded: Mapping[str, Any] = json.loads(text)
    return loaded


def to_dict(plan: Plan) -> dict[str, Any]:
    counts = plan.counts()
    return {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": "Plan",
        "source": plan.source,
        "revision": plan.revision,
        "summary": {
            **counts,
            "nodes": len(plan.nodes),
            "nodesFailed": sum(1 for n in plan.nodes if n.error),
            "inSync": plan.exit_code == 0,
            "exitCode": plan.exit_code,
        },
        "nodes": [
            {
                "node": n.node,
                "platform": n.platform,
                "status": "error" if n.error else "ok",
                "error": n.error,
                "errorType": n.error_type,
                "resources": len(n.items),
                "seconds": round(n.seconds, 3),
            }
            for n in plan.nodes
        ],
        "changes": [_item(i) for n in plan.nodes for i in n.items if i.action is not Action.NOOP],
        "warnings": [str(w) for w in plan.warnings],
    }


def _item(item: PlanItem) -> dict[str, Any]:
    out: dict[str, Any] = {
        "node": item.node,
        "kind": item.kind,
        "name": item.name,
        "action": item.action.value,
        "changes": [
            {
                "field": c.field,
                "live": c.live,
                "desired": c.desired,
                **({"diff": c.diff} if c.diff else {}),
            }
            for c in item.changes
        ],
    }
    if item.error:
        out["error"] = item.error
    if item.adopt:
        out["adopt"] = True
        out["adoptedId"] = item.adopt
    return out


def render(plan: Plan) -> str:
    return json.dumps(to_dict(plan), indent=2, sort_keys=False) + "\n"
