"""The Tool kind: a verified solution kept as desired state.

A tool is a read-only ``check`` (is it so?), an idempotent ``apply``, what to
``snapshot`` before it and an optional ``rollback``. A Goal that names one in
``resolvedBy`` (with params checked against the tool's ``params`` schema) is resolved
deterministically: its node's read runs the tool's check with the goal's, and when the
goal is unmet and the check says "not converged" the plan holds an update that the
node's transaction applies (snapshot, apply, verify, commit or roll back), with no
model call.

Params never become syntax of the layer below. On Linux the scripts read them from the
environment (``FAZAI_PARAM_<name>``), never spliced into the script text; in a check's
argv a ``${name}`` fills one argument (no shell parses it) and the argv with the values
in place must still pass the allow-list of probes. On OPNsense ``${name}`` fills a
value in a call's JSON body (a whole ``"${port}"`` keeps the param's type), never a
key or the path.

The loader binds each goal to its tool (:func:`bind`), so that providers, which see
only a node's targeted documents, find the tool in the goal's spec
(:func:`resolution_of`); a tool edited in a pull request therefore changes every goal
bound to it, which is what the review of untrusted checks needs.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from controller.diagnostics import Diagnostic
from controller.model import kinds, probes, validate
from controller.model.crosscheck import CheckContext
from controller.model.document import Document
from controller.model.goal import DEFAULT_TIMEOUT, ApiCheck, api_check_problems, platform_of
from controller.secrets import is_secret_key

PARAM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# Beyond the store's rule for secret names: settings that name secrets without its
# words (db_pass, redis' requirepass and masterauth, an authkey, a session cookie).
_SECRET_PARTS = ("pass", "auth", "cookie")


def secret_param(name: str) -> bool:
    """Whether a param's value is a secret: the one rule for every place that must treat
    it so (the step's stdin, the escrow, masking, commit-back's refusal)."""
    if is_secret_key(name):
        return True
    flat = re.sub(r"[^a-z0-9]", "", name.lower())
    return any(part in flat for part in _SECRET_PARTS) and not flat.startswith("author")


PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
ENV_PREFIX = "FAZAI_PARAM_"
# Where the bound tool sits in a goal's resolvedBy (the schema lets no user write it).
BOUND = "_tool"
# A tool's check, as an unmet goal's essence shows it (field ``Tool/<name>``): every
# provider says it in these words, so a plan reads the same on every platform.
CONVERGED = "converged"
NOT_CONVERGED = "not converged"

# The OPNsense modules a tool may call: services whose settings a configuration backup
# holds and whose reload a rollback replays. Not firewall/ (rules and aliases are typed
# documents whose writes are checked for a self-lockout and armed with the firewall's
# dead-man timer), nor core/ (firmware, the configuration history every rollback
# restores from, services such as the web GUI), auth/, routes/, interfaces/, the VPNs,
# diagnostics/ or cron/: they can cut the controller off or outlive a rollback.
TOOL_MODULES = frozenset({
    "unbound", "dnsmasq", "kea", "dhcrelay", "syslog", "monit", "ids", "proxy",
    "trafficshaper", "captiveportal", "haproxy", "nginx", "acmeclient", "bind", "chrony",
    "postfix", "collectd", "telegraf", "zabbixagent", "nodeexporter", "nut", "dyndns",
    "dnscryptproxy", "ntpd",
})  # fmt: skip
# Actions no tool call may take: they power the firewall off or change its software,
# or stop a service (a rollback replays reloads, not starts).
_REFUSED_ACTIONS = {"reboot", "halt", "poweroff", "upgrade", "update", "factoryreset", "stop"}


@dataclass(frozen=True)
class Snapshot:
    """What a Linux tool's apply may change: read before it, restored by a rollback."""

    paths: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    services: tuple[str, ...] = ()


@dataclass(frozen=True)
class ApiCall:
    """One OPNsense step: POST ``path`` with ``body`` (params in place)."""

    path: str
    body: Mapping[str, Any]


@dataclass(frozen=True)
class Steps:
    """An apply or a rollback: a shell script (Linux) or API calls (OPNsense)."""

    script: str | None = None
    timeout: int | None = None
    calls: tuple[ApiCall, ...] = ()


@dataclass(frozen=True)
class Resolution:
    """A goal's ``resolvedBy`` with its tool bound and the params in place."""

    tool: str
    platform: str
    description: str
    params: Mapping[str, Any]
    apply: Steps
    rollback: Steps | None = None
    snapshot: Snapshot = Snapshot()
    check_command: tuple[str, ...] | None = None  # linux: exit 0 converged, 1 not
    check_timeout: int = DEFAULT_TIMEOUT
    check_api: ApiCheck | None = None  # opnsense: converged when it holds

    def environment(self) -> dict[str, str]:
        """The params as a Linux script sees them."""
        return {ENV_PREFIX + name: render(value) for name, value in sorted(self.params.items())}


def render(value: Any) -> str:
    """A param's value as text: strings as they are, JSON for everything else."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def place_text(text: str, params: Mapping[str, Any]) -> str:
    def value(match: re.Match[str]) -> str:
        return render(params[match.group(1)])

    return PLACEHOLDER.sub(value, text)


def place_value(value: Any, params: Mapping[str, Any]) -> Any:
    """``value`` (a JSON body) with params in its strings; keys stay as written."""
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value)
        if whole is not None:
            return params[whole.group(1)]
        return place_text(value, params)
    if isinstance(value, Mapping):
        return {k: place_value(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [place_value(v, params) for v in value]
    return value


def placeholders(value: Any) -> Iterator[str]:
    """Every param name a text, argv or body refers to."""
    if isinstance(value, str):
        yield from PLACEHOLDER.findall(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from placeholders(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from placeholders(item)


def params_with_defaults(tool_spec: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    properties = tool_spec.get("params", {}).get("properties", {})
    defaults = {
        name: schema["default"]
        for name, schema in properties.items()
        if isinstance(schema, Mapping) and "default" in schema
    }
    return {**defaults, **given}


def _steps(raw: Mapping[str, Any] | None, params: Mapping[str, Any]) -> Steps | None:
    if raw is None:
        return None
    calls = tuple(
        ApiCall(str(c["post"]), place_value(dict(c.get("body", {})), params))
        for c in raw.get("calls", ())
    )
    return Steps(raw.get("script"), raw.get("timeout"), calls)


def resolve(name: str, tool_spec: Mapping[str, Any], given: Mapping[str, Any]) -> Resolution:
    """The resolution of a goal naming tool ``name`` (of spec ``tool_spec``) with ``given``
    params; both valid (validation checked them)."""
    params = params_with_defaults(tool_spec, given)
    check = tool_spec["check"]
    raw_snapshot = tool_spec.get("snapshot", {})
    apply = _steps(tool_spec["apply"], params)
    assert apply is not None
    command = check.get("command")
    api = None
    if "get" in check:
        expect = check.get("expect", {})
        api = ApiCheck(
            name="tool",
            path=str(check["get"]),
            at=expect.get("path"),
            equals=place_value(expect.get("equals"), params),
            has_equals="equals" in expect,
            contains=place_value(expect.get("contains"), params),
            exists=expect.get("exists"),
        )
    return Resolution(
        tool=name,
        platform=str(tool_spec["platform"]),
        description=str(tool_spec["description"]),
        params=params,
        apply=apply,
        rollback=_steps(tool_spec.get("rollback"), params),
        snapshot=Snapshot(
            tuple(raw_snapshot.get("paths", ())),
            tuple(raw_snapshot.get("packages", ())),
            tuple(raw_snapshot.get("users", ())),
            tuple(raw_snapshot.get("services", ())),
        ),
        check_command=tuple(place_text(a, params) for a in command) if command else None,
        check_timeout=int(check.get("timeout", DEFAULT_TIMEOUT)),
        check_api=api,
    )


def resolution_of(goal_spec: Mapping[str, Any]) -> Resolution | None:
    """The bound resolution of a loaded goal; None when it names no tool."""
    by = goal_spec.get("resolvedBy")
    if not isinstance(by, Mapping) or BOUND not in by:
        return None
    bound = by[BOUND]
    return resolve(str(bound["name"]), bound["spec"], by.get("params", {}))


def bind(documents: Sequence[Document]) -> list[Document]:
    """``documents`` with every goal's ``resolvedBy`` carrying its tool (validation made
    sure it exists)."""
    tools = {d.name: d for d in documents if d.kind == "Tool"}
    out = []
    for doc in documents:
        by = doc.spec.get("resolvedBy") if doc.kind == "Goal" else None
        tool = tools.get(str(by.get("tool"))) if isinstance(by, Mapping) else None
        if by is None or tool is None:
            out.append(doc)
            continue
        bound = {**by, BOUND: {"name": tool.name, "spec": tool.spec}}
        out.append(replace(doc, spec={**doc.spec, "resolvedBy": bound}))
    return out


# -- validation -----------------------------------------------------------------------

Problem = Callable[[tuple[str | int, ...], str], Diagnostic]


def check_tool(doc: Document, context: CheckContext) -> Iterator[Diagnostic]:
    spec = doc.spec

    def problem(path: tuple[str | int, ...], message: str) -> Diagnostic:
        where = "spec." + ".".join(str(p) for p in path) if path else "spec"
        return Diagnostic(doc.location(("spec", *path)), message, doc.subject, where)

    declared: set[str] = set()
    if "params" in spec:
        schema = spec["params"]
        why = validate.schema_problem(schema)
        if why is None and schema.get("type") != "object":
            why = "the params schema must say type: object"
        if why is not None:
            yield problem(("params",), why)
        else:
            for name in schema.get("properties", {}):
                if not PARAM_NAME.match(str(name)):
                    yield problem(
                        ("params", "properties", name),
                        f"param name {name!r}: lowercase letters, digits and _ only, "
                        "starting with a letter (it becomes an environment variable)",
                    )
                declared.add(str(name))
    for part in ("check", "apply", "rollback"):
        if part in spec:
            for name in sorted(set(placeholders(spec[part])) - declared):
                yield problem((part,), f"${{{name}}} names no param of this tool's params schema")
    if spec["platform"] == "linux":
        yield from _linux_problems(spec, problem)
    else:
        yield from _opnsense_problems(spec, problem)


# Where a snapshot cannot take or give back a file (a read of it acts, or it is the
# kernel's): the same places a File document may not name.
_UNSNAPSHOTTABLE = ("/proc", "/sys", "/dev")


def _snapshot_path_problem(path: str) -> str | None:
    if posixpath.normpath(path) != path or path.startswith("//"):
        return f"{path!r} is not a normalized absolute path"
    if path == "/":
        return "'/' is not a file"
    if any(path == p or path.startswith(p + "/") for p in _UNSNAPSHOTTABLE):
        return f"{path!r} is under /proc, /sys or /dev: not a file a snapshot can keep"
    return None


def _linux_problems(spec: Mapping[str, Any], problem: Problem) -> Iterator[Diagnostic]:
    check = spec["check"]
    for index, path in enumerate(spec.get("snapshot", {}).get("paths", ())):
        why = _snapshot_path_problem(str(path))
        if why is not None:
            yield problem(("snapshot", "paths", index), why)
    for key in ("get", "expect"):
        if key in check:
            yield problem(("check", key), f"'{key}' is for opnsense tools; linux checks a command")
    if "command" not in check:
        yield problem(("check",), "a linux tool's check needs 'command' (exit 0: converged)")
    else:
        # Every plan runs it, dry runs included: a read-only probe, as a goal's checks.
        reason = probes.refusal(list(check["command"]))
        if reason is not None:
            yield problem(("check", "command"), reason)
    for part in ("apply", "rollback"):
        steps = spec.get(part)
        if steps is None:
            continue
        if "calls" in steps:
            yield problem((part, "calls"), "'calls' are for opnsense tools; linux runs 'script'")
        if "script" not in steps:
            yield problem((part,), f"a linux tool's {part} needs 'script'")


def _opnsense_problems(spec: Mapping[str, Any], problem: Problem) -> Iterator[Diagnostic]:
    check = spec["check"]
    if "command" in check:
        yield problem(("check", "command"), "'command' is for linux tools; opnsense checks a 'get'")
    if "get" not in check or "expect" not in check:
        yield problem(("check",), "an opnsense tool's check needs 'get' and 'expect'")
    else:

        def at(path: tuple[str | int, ...], message: str, sub: str = "") -> Diagnostic:
            return problem(("check", *path), message)

        yield from api_check_problems(check, check["expect"], at)
    if "snapshot" in spec:
        yield problem(
            ("snapshot",),
            "opnsense tools are rolled back to the configuration backup: no snapshot list",
        )
    for part in ("apply", "rollback"):
        steps = spec.get(part)
        if steps is None:
            continue
        for key in ("script", "timeout"):
            if key in steps:
                yield problem((part, key), f"'{key}' is for linux tools; opnsense makes 'calls'")
        if "calls" not in steps:
            yield problem((part,), f"an opnsense tool's {part} needs 'calls'")
        for index, call in enumerate(steps.get("calls", ())):
            why = _call_refusal(str(call["post"]))
            if why is not None:
                yield problem((part, "calls", index, "post"), why)


def _call_refusal(path: str) -> str | None:
    segments = path.split("/")
    if any(s in ("", ".", "..") for s in segments):
        return f"{path!r} is not a plain API path"
    if len(segments) < 3:
        return f"{path!r} names no action (module/controller/action)"
    module, action = segments[0].lower(), segments[2].lower()
    if module not in TOOL_MODULES:
        return (
            f"{module}/ is not among the modules a tool may call "
            f"({', '.join(sorted(TOOL_MODULES))}): "
            "firewall rules and aliases are FirewallRule and FirewallAlias documents, whose "
            "writes are checked for a lockout; firmware, system, auth, routes, interfaces, "
            "VPNs and cron can cut the controller off or outlive a rollback"
        )
    if action.split(".")[0] in _REFUSED_ACTIONS:
        return f"{path!r}: a tool may not {action} (a rollback would not undo it)"
    return None


def check_resolved_by(doc: Document, context: CheckContext) -> Iterator[Diagnostic]:
    """A goal's ``resolvedBy``: an existing tool of the goal's platform, params that its
    schema takes, and (linux) a check that stays a read-only probe with them in place."""
    by = doc.spec.get("resolvedBy")
    if not isinstance(by, Mapping):
        return

    def problem(path: tuple[str | int, ...], message: str) -> Diagnostic:
        where = "spec.resolvedBy" + "".join(f".{p}" for p in path)
        return Diagnostic(doc.location(("spec", "resolvedBy", *path)), message, doc.subject, where)

    name = str(by["tool"])
    tool = next((t for t in context.of_kind("Tool") if t.name == name), None)
    if tool is None:
        known = sorted(t.name for t in context.of_kind("Tool"))
        hint = f"; tools: {', '.join(known)}" if known else "; there is no Tool document"
        yield problem(("tool",), f"no Tool named {name!r}{hint}")
        return
    platform = platform_of(doc.spec)
    if platform is not None and tool.spec["platform"] != platform:
        yield problem(
            ("tool",), f"Tool/{name} is for {tool.spec['platform']} nodes, this goal for {platform}"
        )
        return
    given = by.get("params", {})
    schema = tool.spec.get("params")
    if schema is None:
        if given:
            yield problem(("params",), f"Tool/{name} takes no params")
        return
    if validate.schema_problem(schema) is not None:
        return  # the tool's own validation says why
    declared = set(schema.get("properties", {}))
    odd = [k for k in given if not PARAM_NAME.match(str(k)) or str(k) not in declared]
    for key in odd:
        # A name becomes an environment variable of the tool's script: only the names
        # its schema declares, each a plain lowercase word.
        yield problem(("params", str(key)), f"Tool/{name} declares no param {str(key)!r}")
    found = validate.errors_against(schema, given, "Tool")
    for path, message in found:
        yield problem(("params", *path), message)
    if found or odd:
        return
    params = params_with_defaults(tool.spec, given)
    missing = sorted(set(placeholders(tool.spec)) - set(params))
    if missing:
        yield problem(("params",), f"Tool/{name} needs a value for {', '.join(missing)}")
        return
    if tool.spec.get("platform") != "linux" or "command" not in tool.spec["check"]:
        return
    placed = [place_text(a, params) for a in tool.spec["check"]["command"]]
    reason = probes.refusal(placed)
    if reason is not None:
        yield problem(
            ("params",),
            f"with these params Tool/{name}'s check is not a read-only probe: {reason}",
        )


TOOL = kinds.register(kinds.Kind("Tool", check=check_tool, targeted=False))
