"""The plan as JSON, made only at the edges (files, the API, the store, events) and read
back by :func:`from_dict`. Its shape is documented by ``plan.schema.json`` beside this
module; extend it, never break it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from controller.diagnostics import Diagnostic, Location, Severity, format_path
from controller.errors import PlanFormatError
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
    if item.reason is not None:
        out["reason"] = item.reason
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


def render(plan: Plan) -> str:
    return json.dumps(to_dict(plan), indent=2, sort_keys=False) + "\n"


def item_dict(item: PlanItem) -> dict[str, Any]:
    """One entry of ``changes``: an item as JSON (an event's items, the API's drift)."""
    return _item(item)


def from_dict(document: Mapping[str, Any], file: str = "<plan>") -> Plan:
    """The plan that ``document`` (as :func:`to_dict` writes it) describes, for reading
    plans back from the store or a file. Checked against ``plan.schema.json`` first;
    raises PlanFormatError naming the first field that does not fit.

    The document lists no noop item (it counts them), so the plan read back holds the
    changes of each node; its warnings are read back from the text they were written as.
    ``to_dict(from_dict(d))`` is ``d`` for a document with no noop item. ``file`` names
    the document in the error (a file given to ``fazai policy test``)."""
    _check(document, schema(), file)
    by_node: dict[str, list[PlanItem]] = {}
    for entry in document["changes"]:
        by_node.setdefault(str(entry["node"]), []).append(_read_item(entry))
    nodes = []
    for entry in document["nodes"]:
        items = tuple(by_node.pop(str(entry["node"]), ()))
        nodes.append(
            NodePlan(
                str(entry["node"]),
                str(entry["platform"]),
                items,
                entry["error"],
                entry["errorType"],
                float(entry["seconds"]),
            )
        )
    if by_node:
        stray = sorted(by_node)[0]
        index = next(i for i, c in enumerate(document["changes"]) if c["node"] == stray)
        raise PlanFormatError(f"node {stray!r} is not in nodes", f"changes[{index}].node", file)
    warnings = tuple(_warning(str(text)) for text in document["warnings"])
    return Plan(str(document["source"]), document["revision"], tuple(nodes), warnings)


def item_from_dict(entry: Mapping[str, Any]) -> PlanItem:
    """One entry of ``changes`` (as :func:`item_dict` writes it, e.g. in an event's
    items) read back; checked against the schema's item shape first."""
    _check(entry, schema()["properties"]["changes"]["items"])
    return _read_item(entry)


def _read_item(entry: Mapping[str, Any]) -> PlanItem:
    changes = tuple(
        Change(str(c["field"]), c["live"], c["desired"], c.get("diff")) for c in entry["changes"]
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
        node=str(entry["node"]),
        kind=str(entry["kind"]),
        name=str(entry["name"]),
        action=Action(entry["action"]),
        changes=changes,
        error=entry.get("error"),
        adopt=entry.get("adoptedId") if entry.get("adopt") else None,
        verdicts=verdicts,
        command=entry.get("command"),
        reason=entry.get("reason"),
    )


def _check(value: Any, shape: Mapping[str, Any], file: str = "<plan>") -> None:
    validator = jsonschema.Draft202012Validator(shape)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        raise PlanFormatError(error.message, format_path(tuple(error.absolute_path)), file)


# A warning as Diagnostic.__str__ writes it: LOCATION: warning: REST.
_WARNING = re.compile(
    r"(?P<file>.*?)(?::(?P<line>\d+):(?P<column>\d+))?: warning: (?P<rest>.*)", re.S
)


def _warning(text: str) -> Diagnostic:
    """A warning read back from its text: printed again, it reads the same."""
    found = _WARNING.fullmatch(text)
    if found is None:
        where, _, message = text.partition(": ")
        return Diagnostic(Location(where), message, severity=Severity.WARNING)
    location = Location(found["file"], int(found["line"] or 0), int(found["column"] or 0))
    return Diagnostic(location, found["rest"], severity=Severity.WARNING)
