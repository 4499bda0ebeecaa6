"""What a rule's CEL expression sees of one plan item: the activation.

Four variables, the same for every rule:

- ``item``: the plan item: ``node``, ``kind``, ``name``, ``action`` (create, update,
  delete, unmanaged, or unresolved for what the agent proposes), ``adopt`` (bool),
  ``changes`` (a list of ``{field, live, desired}``), ``fields`` (the same changes as a
  map field -> ``{live, desired}``) and ``spec`` (the document's spec as written, without
  ``target`` and without a File's ``content``; empty when the plan has no document for
  the item, as for a plan read from JSON or an unmanaged object).
- ``node``: ``name``, ``platform``, ``labels`` and ``facts``: what the plan knows of the
  node. ``facts.controllerInterfaces`` lists the firewall interfaces the controller
  reaches the firewall through (the Node's ``controllerInterfaces``; empty: unknown, so
  any interface may be one, as the anti-lockout check assumes).
- ``run``: ``trigger`` (cli, commit, schedule, webhook, api, agent), ``mode``, ``actor``
  and ``source``.
- ``command``: the command or tool call the agent proposes for the item, or null.

Values are what the plan shows and nothing more: a File's content is its sha256 in the
essence, a sensitive file has no diff, password hashes never reach a plan. So no
expression can read a secret in clear. Diffs of text contents are left out.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from controller.model.document import Document
from controller.model.tool import BOUND
from controller.plan.items import PlanItem
from controller.plan.verdicts import RunContext
from controller.secrets import Secret
from controller.store.redact import is_secret_key, redact
from controller.store.sealed import Sealed

VARIABLES = ("item", "node", "run", "command")

# The typed parts of the activation: a name under them that is not listed is a mistake
# ``fazai validate`` reports. ``fields``, ``spec`` and ``labels`` are maps whose keys
# depend on the item: a missing key there fails closed at run time instead.
TYPED_FIELDS: Mapping[str, frozenset[str]] = {
    "item": frozenset({"node", "kind", "name", "action", "adopt", "changes", "fields", "spec"}),
    "node": frozenset({"name", "platform", "labels", "facts"}),
    "run": frozenset({"trigger", "mode", "actor", "source"}),
    "node.facts": frozenset({"controllerInterfaces"}),
}

# Spec fields never shown to an expression: where a node is chosen (the node variable
# says that), and a File's content, which may be a secret.
_HIDDEN_SPEC = {"target"}
_HIDDEN_FILE_SPEC = {"target", "content"}


def node_view(
    name: str, platform: str, document: Document | None, facts: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``node`` variable; built once per node, shared by its items."""
    spec = document.spec if document is not None else {}
    known: dict[str, Any] = {"controllerInterfaces": list(spec.get("controllerInterfaces", []))}
    if facts:
        known.update(facts)
    return {
        "name": name,
        "platform": str(spec.get("platform", platform)),
        "labels": dict(document.labels) if document is not None else {},
        "facts": known,
    }


def run_view(run: RunContext) -> dict[str, Any]:
    return {"trigger": run.trigger, "mode": run.mode, "actor": run.actor, "source": run.source}


def spec_view(document: Document | None) -> dict[str, Any]:
    """The spec as written, less hidden fields; a FirewallRule's ``interface`` always as
    a list of single names (``"lan,opt1"`` is two, as OPNsense reads it), so a rule
    comparing names cannot be passed by the string form."""
    if document is None:
        return {}
    hidden = _HIDDEN_FILE_SPEC if document.kind == "File" else _HIDDEN_SPEC
    # Masked as the store masks (a Secret, a secret-named key): a rule sees no more of a
    # document than the plan's JSON shows of its changes.
    out: dict[str, Any] = {k: v for k, v in document.spec.items() if k not in hidden}
    if _has_secret(out):
        out = redact(out)
    if document.kind == "FirewallRule" and "interface" in out:
        out["interface"] = _interface_names(out["interface"])
    if document.kind == "File" and isinstance(out.get("path"), str):
        out["path"] = _normal_path(out["path"])
    if document.kind == "Goal":
        out = _with_tool(out)
    return out


def _with_tool(spec: dict[str, Any]) -> dict[str, Any]:
    """A goal's bound tool as rules see it: ``tool.name``, ``tool.platform``,
    ``tool.paths`` (what its snapshot lists, normalized: what it may change) and
    ``tool.calls`` (its API calls' paths), so that a rule about who can log in holds a
    tool that writes /etc/ssh/ as it holds a File there."""
    by = spec.get("resolvedBy")
    if not isinstance(by, Mapping) or BOUND not in by:
        return spec
    bound = by[BOUND]
    tool_spec = bound.get("spec", {}) if isinstance(bound, Mapping) else {}
    paths = tool_spec.get("snapshot", {}).get("paths", [])
    calls = [
        str(c.get("post"))
        for part in ("apply", "rollback")
        for c in (tool_spec.get(part) or {}).get("calls", [])
        if isinstance(c, Mapping)
    ]
    view = {
        "name": str(bound.get("name", "")) if isinstance(bound, Mapping) else "",
        "platform": str(tool_spec.get("platform", "")),
        "paths": [_normal_path(str(p)) for p in paths],
        "calls": calls,
    }
    resolved = {k: v for k, v in by.items() if k != BOUND}
    return {**spec, "resolvedBy": resolved, "tool": view}


def _normal_path(path: str) -> str:
    """The path the node resolves (symlinks aside): /etc//ssh/x, /etc/./ssh/x and
    /etc/x/../ssh/x are /etc/ssh/x, so a prefix check cannot be passed by spelling."""
    normal = posixpath.normpath(path)
    # POSIX keeps a leading '//' apart; Linux does not.
    return "/" + normal.lstrip("/") if normal.startswith("/") else normal


_secret_key = cache(is_secret_key)  # spec keys repeat across documents: check each once


def _has_secret(value: Any) -> bool:
    """Whether ``redact`` would mask anything in ``value``: most specs have nothing to
    mask, and walking them with cached key checks costs a fraction of copying them
    (plain types first: an isinstance check against an ABC is slow)."""
    kind = type(value)
    if kind in _PLAIN:
        return False
    if kind is dict or isinstance(value, Mapping):
        return any(_secret_key(str(k)) or _has_secret(v) for k, v in value.items())
    if kind is list or kind is tuple:
        return any(type(v) not in _PLAIN and _has_secret(v) for v in value)
    return isinstance(value, Secret | Sealed)


_PLAIN = frozenset({str, int, float, bool, type(None)})


def _interface_names(value: Any) -> list[str]:
    items = value if isinstance(value, list | tuple) else [value]
    return sorted({p.strip() for i in items for p in str(i).split(",") if p.strip()})


@dataclass(frozen=True)
class Needs:
    """What one expression reads of the activation; None: all of that part. Handing the
    library only this matters: its conversion of Python values costs some 4 us each,
    most of an evaluation, and most rules read two or three values."""

    variables: frozenset[str]
    item: frozenset[str] | None = None  # fields of ``item``
    fields: frozenset[str] | None = None  # keys of ``item.fields``
    spec: frozenset[str] | None = None  # keys of ``item.spec``
    node: frozenset[str] | None = None  # fields of ``node``


EVERYTHING = Needs(frozenset(VARIABLES))


def item_view(item: PlanItem, spec: Mapping[str, Any], needs: Needs = EVERYTHING) -> dict[str, Any]:
    """The ``item`` variable, or only what ``needs`` says. Leaving out a map key that no
    expression names changes no result: the expression cannot tell it apart from a key
    the item does not have."""
    want = needs.item
    out: dict[str, Any] = {
        "node": item.node,
        "kind": item.kind,
        "name": item.name,
        "action": item.action.value,
        "adopt": item.adopt is not None,
    }
    if want is None or "changes" in want:
        out["changes"] = [
            {"field": c.field, "live": c.live, "desired": c.desired} for c in item.changes
        ]
    if want is None or "fields" in want:
        keys = needs.fields
        out["fields"] = {
            c.field: {"live": c.live, "desired": c.desired}
            for c in item.changes
            if keys is None or c.field in keys
        }
    if want is None or "spec" in want:
        keys = needs.spec
        out["spec"] = dict(spec) if keys is None else {k: spec[k] for k in keys if k in spec}
    if want is not None:
        out = {k: v for k, v in out.items() if k in want}
    return out


def activation(
    item: Mapping[str, Any],
    node: Mapping[str, Any],
    run: Mapping[str, Any],
    command: str | None,
    needs: Needs = EVERYTHING,
) -> dict[str, Any]:
    """The variables ``needs`` names (all four by default)."""
    out: dict[str, Any] = {}
    for name in needs.variables:
        if name == "item":
            out[name] = item
        elif name == "node":
            keys = needs.node
            out[name] = node if keys is None else {k: node[k] for k in keys if k in node}
        elif name == "run":
            out[name] = run
        else:
            out[name] = command
    return out


def sample() -> dict[str, Any]:
    """A typed activation with every field set, for the dry evaluation at validate."""
    change = {"field": "mode", "live": "0644", "desired": "0600"}
    return activation(
        {
            "node": "web-1",
            "kind": "File",
            "name": "/etc/example",
            "action": "update",
            "adopt": False,
            "changes": [change],
            "fields": {"mode": {"live": "0644", "desired": "0600"}},
            "spec": {},
        },
        {
            "name": "web-1",
            "platform": "linux",
            "labels": {},
            "facts": {"controllerInterfaces": ["lan"]},
        },
        {"trigger": "cli", "mode": "plan", "actor": "someone", "source": "."},
        "true",
    )
