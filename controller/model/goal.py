"""The Goal kind: an outcome stated as read-only acceptance checks.

A goal is in sync when every check passes. When one fails no deterministic handler can
make it so: the plan shows the goal as ``unresolved`` with the failing checks as its
reason, and only such items are ever handed to the agent. Checks are read in the same
round trip as every other fact of the node: a command (argv, never a shell) on Linux,
an API GET with an expectation on a JSON path on OPNsense. A goal's platform follows
from its checks, so one goal is one platform.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.diagnostics import Diagnostic
from controller.model import probes
from controller.model.crosscheck import CheckContext
from controller.model.document import Document
from controller.model.kinds import Kind, register

DEFAULT_TIMEOUT = 10
DEFAULT_ITERATIONS = 32

# The API actions that read on OPNsense (its controllers name them; anything else, such
# as set, add, del, apply, reconfigure, may change the firewall even on a GET).
READ_ACTIONS = frozenset(
    {"get", "search", "status", "show", "list", "info", "stats", "dump", "read"}
)


@dataclass(frozen=True)
class CommandCheck:
    """A Linux probe: argv run without a shell; passes when every expectation holds."""

    name: str
    command: tuple[str, ...]
    timeout: int = DEFAULT_TIMEOUT
    exit_code: int = 0
    stdout_contains: str | None = None
    stdout_matches: str | None = None


@dataclass(frozen=True)
class ApiCheck:
    """An OPNsense probe: GET ``path``; passes when the value at ``at`` meets the test."""

    name: str
    path: str
    at: str | None = None  # dotted path into the JSON answer; None: the whole answer
    equals: Any = None
    has_equals: bool = False  # ``equals: null`` is an expectation too
    contains: str | None = None
    exists: bool | None = None


Check = CommandCheck | ApiCheck


@dataclass(frozen=True)
class Budget:
    """What the agent may spend on a goal: iterations, and optionally tokens and seconds."""

    iterations: int = DEFAULT_ITERATIONS
    tokens: int | None = None
    seconds: int | None = None


# A check's verdict: PASS, or "fail: " and why in a few words of FazAI's own (never
# what the probe read). A goal's desired essence is every check at PASS, its live one
# each check's verdict; both platforms judge this way.
PASS = "pass"


def failing_reason(verdicts: Mapping[str, str]) -> str | None:
    """``checks failing: name (why), ...`` for the checks not passing; None when all do."""
    failing = [
        f"{name} ({verdict.removeprefix('fail: ')})"
        for name, verdict in verdicts.items()
        if verdict != PASS
    ]
    return "checks failing: " + ", ".join(failing) if failing else None


def digest(spec: Mapping[str, Any]) -> str:
    """What a tool was verified against: the goal's description and checks, as canonical
    JSON's SHA-256 (a goal edited since is another goal)."""
    what = {"description": spec.get("description"), "checks": spec.get("checks")}
    text = json.dumps(what, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def platform_of(spec: Mapping[str, Any]) -> str | None:
    """linux for command checks, opnsense for API ones; None for a mix or none."""
    found = {_platform_of_check(c) for c in spec.get("checks", ()) if isinstance(c, Mapping)}
    found.discard(None)
    return found.pop() if len(found) == 1 else None


def _platform_of_check(check: Mapping[str, Any]) -> str | None:
    if "command" in check and "get" not in check:
        return "linux"
    if "get" in check and "command" not in check:
        return "opnsense"
    return None


def checks_of(spec: Mapping[str, Any]) -> tuple[Check, ...]:
    """The typed checks of a valid Goal spec."""
    out: list[Check] = []
    for raw in spec["checks"]:
        expect = raw["expect"]
        if "command" in raw:
            out.append(
                CommandCheck(
                    name=raw["name"],
                    command=tuple(raw["command"]),
                    timeout=int(raw.get("timeout", DEFAULT_TIMEOUT)),
                    exit_code=int(expect.get("exitCode", 0)),
                    stdout_contains=expect.get("stdoutContains"),
                    stdout_matches=expect.get("stdoutMatches"),
                )
            )
        else:
            out.append(
                ApiCheck(
                    name=raw["name"],
                    path=raw["get"],
                    at=expect.get("path"),
                    equals=expect.get("equals"),
                    has_equals="equals" in expect,
                    contains=expect.get("contains"),
                    exists=expect.get("exists"),
                )
            )
    return tuple(out)


def budget_of(spec: Mapping[str, Any]) -> Budget:
    raw = spec.get("budget", {})
    return Budget(
        iterations=int(raw.get("iterations", DEFAULT_ITERATIONS)),
        tokens=raw.get("tokens"),
        seconds=raw.get("seconds"),
    )


_LINUX_EXPECT = ("exitCode", "stdoutContains", "stdoutMatches")
_API_EXPECT = ("path", "equals", "contains", "exists")
_API_TESTS = ("equals", "contains", "exists")


def check_goal(doc: Document, context: CheckContext) -> Iterator[Diagnostic]:
    checks: Sequence[Mapping[str, Any]] = doc.spec.get("checks", ())
    seen: dict[str, int] = {}
    platforms: dict[str, int] = {}
    for index, check in enumerate(checks):
        here = ("spec", "checks", index)
        field = f"spec.checks[{index}]"

        def problem(
            path: tuple[str | int, ...],
            message: str,
            sub: str = "",
            here: tuple[str | int, ...] = here,
            field: str = field,
        ) -> Diagnostic:
            where = field + (f".{sub}" if sub else "")
            return Diagnostic(doc.location(here + path), message, doc.subject, where)

        name = check.get("name")
        if name in seen:
            yield problem(("name",), f"check name {name!r} is used twice in this goal", "name")
        elif isinstance(name, str):
            seen[name] = index
        has_command, has_get = "command" in check, "get" in check
        if has_command == has_get:
            yield problem((), "a check takes either 'command' (linux) or 'get' (opnsense)")
            continue
        platform = "linux" if has_command else "opnsense"
        platforms.setdefault(platform, index)
        expect = check.get("expect", {})
        if has_command:
            yield from _command_problems(check, expect, problem)
        else:
            yield from api_check_problems(check, expect, problem)
    if len(platforms) > 1:
        yield Diagnostic(
            doc.location(("spec", "checks", platforms["opnsense"])),
            "a goal's checks are all linux commands or all opnsense API reads: "
            "split it into one goal per platform",
            doc.subject,
            f"spec.checks[{platforms['opnsense']}]",
        )
    from controller.model.tool import check_resolved_by  # tool.py builds on this module

    yield from check_resolved_by(doc, context)


def _command_problems(check: Mapping[str, Any], expect: Mapping[str, Any], problem: Any) -> Any:
    for key in _API_EXPECT:
        if key in expect:
            message = f"'{key}' applies to API checks ('get')"
            yield problem(("expect", key), message, f"expect.{key}")
    # A check runs during every plan, dry runs and review plans included: only what the
    # allow-list of probes (controller/model/probes.py) knows to be read-only.
    reason = probes.refusal(check["command"])
    if reason is not None:
        yield problem(("command",), reason, "command")
    pattern = expect.get("stdoutMatches")
    if isinstance(pattern, str):
        try:
            re.compile(pattern, re.MULTILINE)
        except (re.error, OverflowError, RecursionError) as exc:
            # OverflowError: a repetition count over the engine's limit (a{4294967296}).
            yield problem(
                ("expect", "stdoutMatches"),
                f"not a regular expression: {exc}",
                "expect.stdoutMatches",
            )
        else:
            if _newer_syntax(pattern):
                yield problem(
                    ("expect", "stdoutMatches"),
                    "atomic groups (?>...) and possessive quantifiers (*+ ++ ?+ {m,n}+) "
                    "need Python 3.11 on the node, where the pattern is searched; write it "
                    "without them",
                    "expect.stdoutMatches",
                )


def _newer_syntax(pattern: str) -> bool:
    """Whether ``pattern`` uses syntax older Pythons (3.6-3.10, a node's) do not have."""
    bare = re.sub(r"\[(?:\\.|[^\]\\])*\]", "", re.sub(r"\\.", "", pattern))
    return re.search(r"\(\?>|[*+?}]\+", bare) is not None


def api_check_problems(check: Mapping[str, Any], expect: Mapping[str, Any], problem: Any) -> Any:
    for key in (*_LINUX_EXPECT, "timeout"):
        where = ("expect", key) if key != "timeout" else ("timeout",)
        if key in (expect if key != "timeout" else check):
            sub = f"expect.{key}" if key != "timeout" else "timeout"
            yield problem(where, f"'{key}' applies to linux checks ('command')", sub)
    path = str(check["get"])
    segments = path.split("/")
    if any(s in ("", ".", "..") for s in segments):
        yield problem(("get",), f"{path!r} is not a plain API path", "get")
    elif len(segments) < 3 or segments[2].split(".")[0].lower() not in READ_ACTIONS:
        yield problem(
            ("get",),
            f"{path!r} does not name a reading action (module/controller/action with "
            f"action one of {', '.join(sorted(READ_ACTIONS))}): a check must not change "
            "the firewall",
            "get",
        )
    tests = [k for k in _API_TESTS if k in expect]
    if len(tests) != 1:
        yield problem(
            ("expect",),
            "an API check's expect takes one of 'equals', 'contains' or 'exists'",
            "expect",
        )
    elif "path" not in expect and tests[0] != "equals":
        yield problem(("expect",), f"'{tests[0]}' needs 'path'", "expect")


GOAL = register(Kind("Goal", check=check_goal, platform_for=platform_of, claims_object=False))
