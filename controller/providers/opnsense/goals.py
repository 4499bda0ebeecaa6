"""Goals on OPNsense: their checks' API reads and the judgement of each answer.

A Goal in sync is every check passing; ``desired`` is ``{check: "pass"}`` and ``live``
the verdict of each, so a failing check shows as that one field differing and the plan
item is unresolved with the failing checks as its reason. Nothing read from the
firewall goes into a verdict beyond a few fixed words (a value may be a secret: a
pre-shared key, a password hash), and a check whose path is not a plain relative API
path is never sent (validation refuses such paths; this is the last line).

A goal resolved by a Tool (``resolvedBy``) has the tool's check read in the same pass. A
met goal is in sync whatever the tool says; an unmet one whose tool check does not hold
plans as an update (``Tool/<name>``: "not converged" to "converged"), which the node's
transaction makes by the tool's API calls; an unmet one whose tool check holds, or
cannot be read, stays unresolved: applying the tool cannot help, or cannot be judged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from controller.model.document import Document
from controller.model.goal import PASS, ApiCheck, checks_of, failing_reason
from controller.model.tool import CONVERGED, NOT_CONVERGED, Resolution, resolution_of
from controller.plan.diff import Observed
from controller.providers.opnsense.live import ReadFailed

KIND = "Goal"
# module/controller/action[/arg...]: relative, so the client's base URL keeps it under
# /api/; no ".", "..", empty segment, query, fragment or escape can take it elsewhere.
_SEGMENT = r"[A-Za-z0-9_:-]+(?:\.[A-Za-z0-9_:-]+)*"
_PLAIN = re.compile(rf"[a-z][a-z0-9_]*(?:/{_SEGMENT}){{2,6}}")
_MISSING = object()


def is_goal(doc: Document) -> bool:
    return doc.kind == KIND


def plain_path(path: str) -> bool:
    """Whether ``path`` is a relative API path that cannot leave /api/."""
    return _PLAIN.fullmatch(path) is not None and all(s not in (".", "..") for s in path.split("/"))


def api_checks(doc: Document) -> tuple[ApiCheck, ...]:
    return tuple(c for c in checks_of(doc.spec) if isinstance(c, ApiCheck))


def tool_check(doc: Document) -> ApiCheck | None:
    """The API check of the OPNsense tool that resolves ``doc``; None when none does."""
    resolution = resolution_of(doc.spec)
    return resolution.check_api if resolution is not None else None


def paths(resources: Iterable[Document]) -> set[str]:
    """The API paths the Goals among ``resources`` read (their tools' checks too), each
    once."""
    found = set()
    for doc in resources:
        if not is_goal(doc):
            continue
        checks = list(api_checks(doc))
        tool = tool_check(doc)
        if tool is not None:
            checks.append(tool)
        found |= {c.path for c in checks if plain_path(c.path)}
    return found


def observe(doc: Document, answers: Mapping[str, Any]) -> Observed:
    """The Goal's verdicts from ``answers`` (path -> JSON answer or ReadFailed)."""
    checks = checks_of(doc.spec)
    desired = {c.name: PASS for c in checks}
    live = {
        c.name: judge(c, answers)
        if isinstance(c, ApiCheck)
        else "fail: a command check does not run on OPNsense"
        for c in checks
    }
    failing = failing_reason(live)
    resolution = resolution_of(doc.spec)
    if resolution is None or failing is None:
        # Met is in sync, whatever a tool would say: nothing to write.
        return Observed(desired, live, unresolved=failing)
    return _resolvable(resolution, desired, live, failing, answers)


def _resolvable(
    resolution: Resolution,
    desired: dict[str, str],
    live: dict[str, str],
    failing: str,
    answers: Mapping[str, Any],
) -> Observed:
    """An unmet goal with a tool: an update when the tool's check does not hold,
    unresolved when it holds (the tool cannot help) or cannot be read."""
    name = f"Tool/{resolution.tool}"
    state = tool_state(resolution.check_api, answers)
    desired = {**desired, name: CONVERGED}
    live = {**live, name: state}
    if state == NOT_CONVERGED:
        return Observed(desired, live)
    if state == CONVERGED:
        why = f"{failing}; {name} reports it converged, so applying it cannot help"
    else:
        why = f"{failing}; {name}'s check {state.removeprefix('error: ')}"
    return Observed(desired, live, unresolved=why)


def tool_state(check: ApiCheck | None, answers: Mapping[str, Any]) -> str:
    """``converged`` when the tool's check holds, ``not converged`` when the firewall's
    answer says otherwise, ``error: <why>`` (fixed words) when there is no answer to
    judge."""
    if check is None:
        return "error: is not an OPNsense API check (a linux tool cannot run here)"
    if not plain_path(check.path):
        return "error: is not a plain API path, not read"
    answer = answers.get(check.path, _MISSING)
    if answer is _MISSING:
        return "error: was not read"
    if isinstance(answer, ReadFailed):
        return f"error: could not be read: {answer.why}"
    return CONVERGED if judge(check, answers) == PASS else NOT_CONVERGED


def judge(check: ApiCheck, answers: Mapping[str, Any]) -> str:
    """``pass``, or ``fail: <why>`` in fixed words."""
    if not plain_path(check.path):
        return "fail: not a plain API path"
    answer = answers.get(check.path, _MISSING)
    if answer is _MISSING:
        return "fail: not read"
    if isinstance(answer, ReadFailed):
        return f"fail: {answer.why}"
    value = at(answer, check.at) if check.at is not None else answer
    if check.exists is not None:
        found = value is not _MISSING
        if found == check.exists:
            return PASS
        return "fail: path missing" if check.exists else "fail: path present"
    if value is _MISSING:
        return "fail: path missing"
    if check.has_equals:
        return PASS if same(value, check.equals) else "fail: value differs"
    if check.contains is not None:
        return _contains(value, check.contains)
    return "fail: no expectation"


def at(answer: Any, dotted: str) -> Any:
    """The value at ``dotted`` (dict keys; list items by index), or the missing marker."""
    value = answer
    for part in dotted.split("."):
        if isinstance(value, Mapping):
            if part not in value:
                return _MISSING
            value = value[part]
        elif isinstance(value, list) and part.isdecimal() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def same(live: Any, expected: Any) -> bool:
    """Equal as OPNsense writes values: "1", 1 and true are one value, "0", 0 and false
    another, and a number equals its text ("443" is 443: the API answers every field as
    text, documents write ports as numbers); anything else equal with equal types, all
    the way down a list or a map."""
    if isinstance(live, Mapping) and isinstance(expected, Mapping):
        return live.keys() == expected.keys() and all(same(live[k], expected[k]) for k in live)
    if isinstance(live, list) and isinstance(expected, list):
        return len(live) == len(expected) and all(
            same(a, b) for a, b in zip(live, expected, strict=True)
        )
    live_flag, expected_flag = _flag(live), _flag(expected)
    if live_flag is not None or expected_flag is not None:
        return live_flag == expected_flag
    live_number, expected_number = _number(live), _number(expected)
    if live_number is not None and expected_number is not None:
        return live_number == expected_number
    return type(live) is type(expected) and bool(live == expected)


def _number(value: Any) -> str | None:
    """A number, or a string that is one as JSON writes it, as that text (else None)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and re.fullmatch(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?", value):
        return value
    return None


def _flag(value: Any) -> str | None:
    if value is True or value == "1" or (type(value) is int and value == 1):
        return "1"
    if value is False or value == "0" or (type(value) is int and value == 0):
        return "0"
    return None


def _contains(value: Any, wanted: str) -> str:
    if isinstance(value, str):
        return PASS if wanted in value else "fail: not contained"
    if isinstance(value, list):
        items = (_text(v) for v in value)
        return PASS if wanted in items else "fail: not contained"
    return "fail: neither text nor a list"


def _text(value: Any) -> str | None:
    """A list item as text, to compare with ``contains`` (numbers as JSON writes them)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str | int | float):
        return str(value)
    return None
