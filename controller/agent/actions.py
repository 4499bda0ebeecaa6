"""The agent's protocol: one JSON action per turn, typed once parsed.

The model answers under a grammar made from ``schemas/action.json`` (every action, or
only ``done`` on the last turn); grammars can fall back to generic JSON without saying
so, and endpoints may ignore ``response_format``, so every answer is parsed and
validated again here: whatever does not match is an :class:`InvalidAction`, never an
action. Actions are data: none of them runs anything by itself (the loop decides what
each one may do, the policy stage and the probe allow-list gate what touches a node).
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

NAMES = ("plan", "ask", "research", "shell", "toolspec", "usetool", "observe", "commitkb", "done")
# What a model may answer with, at most: a longer answer is cut by max_tokens anyway.
MAX_ANSWER_CHARS = 16_000


class InvalidAction(ValueError):
    """The model's answer is not one valid action (said in a line for its next prompt)."""


@dataclass(frozen=True)
class Plan:
    steps: tuple[str, ...]


@dataclass(frozen=True)
class Ask:
    question: str


@dataclass(frozen=True)
class Research:
    query: str


@dataclass(frozen=True)
class Shell:
    argv: tuple[str, ...]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    tool: Mapping[str, Any] = field(compare=False)
    canonical: str = ""  # the tool as sorted JSON: what equality and repeats compare


@dataclass(frozen=True)
class UseTool:
    tool: str
    params: Mapping[str, Any] = field(compare=False)
    canonical: str = ""


@dataclass(frozen=True)
class Observe:
    pass


@dataclass(frozen=True)
class CommitKb:
    note: str = ""


@dataclass(frozen=True)
class Done:
    outcome: str  # resolved | unresolved
    summary: str


Action = Plan | Ask | Research | Shell | ToolSpec | UseTool | Observe | CommitKb | Done


@cache
def _full_schema() -> Mapping[str, Any]:
    text = resources.files("controller.agent").joinpath("schemas", "action.json").read_text()
    loaded: Mapping[str, Any] = json.loads(text)
    return loaded


def schema(allowed: Sequence[str] = NAMES) -> dict[str, Any]:
    """The JSON Schema of the actions in ``allowed`` (the grammar is made from it)."""
    unknown = set(allowed) - set(NAMES)
    if unknown:
        raise ValueError(f"unknown actions: {', '.join(sorted(unknown))}")
    full = _full_schema()
    branches = [b for b in full["oneOf"] if b["properties"]["action"]["const"] in allowed]
    out: dict[str, Any] = {k: v for k, v in full.items() if k != "oneOf"}
    if len(branches) == 1:
        out.update(branches[0])
    else:
        out["oneOf"] = branches
    return out


def parse(text: str, allowed: Sequence[str] = NAMES) -> Action:
    """The one action ``text`` holds; InvalidAction (a short reason) for anything else."""
    if len(text) > MAX_ANSWER_CHARS:
        raise InvalidAction(f"the answer is {len(text)} characters long; one action is wanted")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidAction(f"not JSON: {exc.msg} at character {exc.pos}") from None
    if not isinstance(value, dict):
        raise InvalidAction("an action is a JSON object")
    name = value.get("action")
    if name not in NAMES:
        raise InvalidAction(f"'action' must be one of {', '.join(allowed)}")
    if name not in allowed:
        raise InvalidAction(f"{name!r} is not allowed now; allowed: {', '.join(allowed)}")
    branch = next(b for b in _full_schema()["oneOf"] if b["properties"]["action"]["const"] == name)
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(branch).iter_errors(value)
    )
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the action"
        raise InvalidAction(f"{name}: {where}: {error.message[:200]}")
    return _typed(value)


def _typed(value: Mapping[str, Any]) -> Action:
    name = value["action"]
    if name == "plan":
        return Plan(tuple(value["steps"]))
    if name == "ask":
        return Ask(value["question"])
    if name == "research":
        return Research(value["query"])
    if name == "shell":
        return Shell(tuple(value["argv"]))
    if name == "toolspec":
        return ToolSpec(value["name"], value["tool"], _canonical(value["tool"]))
    if name == "usetool":
        params = value.get("params", {})
        return UseTool(value["tool"], params, _canonical(params))
    if name == "observe":
        return Observe()
    if name == "commitkb":
        return CommitKb(value.get("note", ""))
    return Done(value["outcome"], value["summary"])


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def digest(value: Any) -> str:
    """A short digest of a JSON value, as canonical text (a tool's spec)."""
    return hashlib.sha256(_canonical(value).encode()).hexdigest()[:16]


def usetool_command(tool: str, params: Mapping[str, Any]) -> str:
    """The one spelling of a tool call the policy stage sees (every caller uses this:
    two spellings would let a rule written against one miss the other)."""
    return f"usetool {tool} {_canonical(params)}"


def name_of(action: Action) -> str:
    return {
        Plan: "plan", Ask: "ask", Research: "research", Shell: "shell", ToolSpec: "toolspec",
        UseTool: "usetool", Observe: "observe", CommitKb: "commitkb", Done: "done",
    }[type(action)]  # fmt: skip


def command(action: Action) -> str | None:
    """What the policy stage sees as ``command`` for an action that touches a node: the
    probe's argv quoted as a shell would read it, or the tool and its params; None for
    the rest (they stay inside FazAI)."""
    if isinstance(action, Shell):
        return "shell " + shlex.join(action.argv)
    if isinstance(action, UseTool):
        return usetool_command(action.tool, action.params)
    return None


def render(action: Action) -> str:
    """The action as the model wrote it, normalized: what goes back into the prompt."""
    name = name_of(action)
    if isinstance(action, Plan):
        body: dict[str, Any] = {"steps": list(action.steps)}
    elif isinstance(action, Ask):
        body = {"question": action.question}
    elif isinstance(action, Research):
        body = {"query": action.query}
    elif isinstance(action, Shell):
        body = {"argv": list(action.argv)}
    elif isinstance(action, ToolSpec):
        body = {"name": action.name, "tool": action.tool}
    elif isinstance(action, UseTool):
        body = {"tool": action.tool, "params": action.params}
    elif isinstance(action, CommitKb):
        body = {"note": action.note} if action.note else {}
    elif isinstance(action, Done):
        body = {"outcome": action.outcome, "summary": action.summary}
    else:
        body = {}
    return json.dumps({"action": name, **body}, sort_keys=True)
