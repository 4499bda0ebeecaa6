"""The plan as JSON. Its shape is documented by ``plan.schema.json`` beside this module;
extend it, never break it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from controller.errors import InvalidInputError
from controller.model.diagnostics import Diagnostic, Location, Severity, format_path
from controller.plan.diff import Action, Change
from controller.plan.items import NodePlan, Plan, PlanItem
from controller.plan.verdicts import Effect, Verdict


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
    if item.command is not None:
        out["command"] = item.command
    if item.verdicts:
        out["verdicts"] = [_verdict(v) for v in item.verdicts]
    return out


def _verdict(verdict: Verdict) -> dict[str, Any]:
    out: dict[str, Any] = {
        "policy": verdict.policy,
        "rule": verdict.rule,
        "effect": verdict.effect.value,
        "message": verdict.message,
        "approvals": verdict.approvals,
    }
    if verdict.reason is not None:
        out["reason"] = verdict.reason
    return out


def from_dict(data: Any, file: str = "<plan>") -> Plan:
    """The typed plan of ``to_dict``'s output (``fazai plan --output json``), checked
    against the schema first; InvalidInputError naming the file and field otherwise.
    What the JSON leaves out comes back empty: in-sync items (only counted there) and
    diffs of sensitive contents (never written)."""
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise InvalidInputError(
            [
                Diagnostic(Location(file), e.message, "Plan", format_path(tuple(e.absolute_path)))
                for e in errors[:20]
            ]
        )
    by_node: dict[str, list[PlanItem]] = {n["node"]: [] for n in data["nodes"]}
    for entry in data["changes"]:
        by_node.setdefault(entry["node"], []).append(_item_from(entry))
    known = {n["node"] for n in data["nodes"]}
    nodes = [
        NodePlan(
            n["node"],
            n["platform"],
            tuple(by_node[n["node"]]),
            n["error"],
            n["errorType"],
            float(n["seconds"]),
        )
        for n in data["nodes"]
    ]
    # Changes of a node the JSON does not list (a hand-written plan): platform unknown.
    nodes += [
        NodePlan(name, "", tuple(items)) for name, items in by_node.items() if name not in known
    ]
    warnings = tuple(_warning(w) for w in data["warnings"])
    return Plan(data["source"], data["revision"], tuple(nodes), warnings)


def _item_from(entry: Mapping[str, Any]) -> PlanItem:
    changes = tuple(
        Change(c["field"], c["live"], c["desired"], c.get("diff")) for c in entry["changes"]
    )
    verdicts = tuple(
        Verdict(
            v["policy"],
            v["rule"],
            Effect(v["effect"]),
            v["message"],
            v.get("approvals", 1),
            v.get("reason"),
        )
        for v in entry.get("verdicts", ())
    )
    return PlanItem(
        entry["node"],
        entry["kind"],
        entry["name"],
        Action(entry["action"]),
        changes,
        entry.get("error"),
        entry.get("adoptedId") if entry.get("adopt") else None,
        verdicts,
        entry.get("command"),
    )


_WARNING = re.compile(r"^(?P<file>[^:]*)(?::(?P<line>\d+):(?P<column>\d+))?: (?P<rest>.*)$", re.S)


def _warning(text: str) -> Diagnostic:
    """A warning line back as the Diagnostic that prints the same."""
    found = _WARNING.match(text)
    if found is None:
        return Diagnostic(Location(text), "", severity=Severity.WARNING)
    location = Location(found["file"], int(found["line"] or 0), int(found["column"] or 0))
    rest = found["rest"]
    if rest.startswith("warning: "):
        return Diagnostic(location, rest[len("warning: ") :], severity=Severity.WARNING)
    return Diagnostic(location, rest)


def render(plan: Plan) -> str:
    return json.dumps(to_dict(plan), indent=2, sort_keys=False) + "\n"
