"""Per-kind rules for Linux: which facts a resource needs, and its desired and live essence.

Each kind contributes to one shared fact request (so a node is read in one round trip)
and turns its part of the answer into an :class:`Observed`. Desired essences hold only
the fields the document sets.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.model import probes
from controller.model.document import Document
from controller.model.goal import PASS, CommandCheck, checks_of, failing_reason
from controller.model.tool import CONVERGED, NOT_CONVERGED, resolution_of
from controller.plan.diff import Observed
from controller.source.tree import SourceTree, resolve_relative

SYSCTL_FILE = "/etc/sysctl.d/99-fazai.conf"
# The seconds a node spends on Goal checks when the provider sets no budget of its own
# (it derives one from the node's command timeout; see LinuxProvider.gather).
DEFAULT_CHECK_BUDGET = 45.0


@dataclass
class FactRequest:
    """The request sent to remote_facts.py; positions in ``files``/``nft``/``checks``
    index answers."""

    packages: set[str] = field(default_factory=set)
    files: list[dict[str, Any]] = field(default_factory=list)
    users: set[str] = field(default_factory=set)
    sysctls: set[str] = field(default_factory=set)
    nft: list[dict[str, Any]] = field(default_factory=list)
    services: set[str] = field(default_factory=set)
    # Goal checks, each {"argv": [...], "timeout": seconds}, run in order on the node
    # within ``check_budget`` seconds all together.
    checks: list[dict[str, Any]] = field(default_factory=list)
    check_budget: float = DEFAULT_CHECK_BUDGET
    # Seconds after which the fact process ends itself, whatever it is doing (the
    # node's command timeout: the controller has given up on the read by then).
    watchdog: float | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "packages": sorted(self.packages),
                "files": self.files,
                "users": sorted(self.users),
                "sysctls": sorted(self.sysctls),
                "sysctl_file": SYSCTL_FILE,
                "nft": self.nft,
                "services": sorted(self.services),
                "checks": self.checks,
                "check_budget": self.check_budget,
                **({"watchdog": self.watchdog} if self.watchdog is not None else {}),
            }
        )


Answer = Mapping[str, Any]
Reader = Callable[[Answer], Observed]


def prepare(doc: Document, tree: SourceTree, request: FactRequest) -> Reader:
    """Add what ``doc`` needs to ``request``; return how to read its answer."""
    return _PREPARERS[doc.kind](doc, tree, request)


def desired_file_bytes(doc: Document, tree: SourceTree) -> bytes:
    if "content" in doc.spec:
        return str(doc.spec["content"]).encode()
    resolved = resolve_relative(doc.file, doc.spec["source"])
    assert resolved is not None  # cross-checks refuse sources outside the tree
    return tree.read(resolved)


def normalize_mode(mode: str) -> str:
    return f"{int(mode, 8):04o}"


# The key of the fingerprints that stand for the content of a secret file in essences,
# and so in plans (which a pull request comment shows), reports and the run log: drawn at
# random by each process and written nowhere. A plain digest of a short secret lets anyone
# who reads it confirm guesses offline; a keyed one does not. Within one process equal
# contents have equal fingerprints, so a change still shows; across processes they differ.
_FINGERPRINT_KEY = secrets.token_bytes(32)
FINGERPRINT = "fingerprint:"


def fingerprint(sha256_hex: str) -> str:
    """A secret content's stand-in, from its SHA-256 (hex): a keyed, truncated digest."""
    mac = hmac.new(_FINGERPRINT_KEY, sha256_hex.encode(), hashlib.sha256).hexdigest()
    return FINGERPRINT + mac[:24]


def _content(sha256_hex: str, hidden: bool) -> str:
    return fingerprint(sha256_hex) if hidden else "sha256:" + sha256_hex


def _text(data: bytes) -> str | None:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def _package(doc: Document, tree: SourceTree, request: FactRequest) -> Reader:
    name = doc.spec["name"]
    request.packages.add(name)
    desired: dict[str, Any] | None = None
    if doc.spec["state"] == "present":
        desired = {"installed": True}
        if "version" in doc.spec:
            desired["version"] = doc.spec["version"]

    def read(answer: Answer) -> Observed:
        manager = answer.get("host", {}).get("package_manager")
        if manager is None:
            # Nothing to read the packages with: none is installed as far as FazAI can
            # tell, and none can be installed. An absent package is in sync.
            return Observed(desired, None, unresolved=NO_PACKAGE_MANAGER)
        facts = answer.get("packages", {})
        if "error" in facts:
            return Observed(desired, None, facts["error"])
        version = facts.get("installed", {}).get(name)
        live = None if version is None else {"installed": True, "version": version}
        # rpm is read (the plan shows the difference) but never written: the apply's
        # package steps are apt's (operations refuses any other manager).
        unresolved = None if manager == "dpkg" else package_reason(str(manager))
        return Observed(desired, live, unresolved=unresolved)

    return read


NO_PACKAGE_MANAGER = (
    "FazAI applies packages with dpkg/apt; this node has no package manager it can read "
    "(neither dpkg nor rpm)"
)
NO_SYSTEMD = "FazAI applies services with systemd; this node does not run it"


def package_reason(manager: str) -> str:
    return f"FazAI applies packages with dpkg/apt; this node uses {manager}"


def _file(doc: Document, tree: SourceTree, request: FactRequest) -> Reader:
    spec = doc.spec
    sensitive = bool(spec.get("sensitive"))
    # What a file to delete holds nobody declared: it may be a secret. Either way its
    # content shows only as a fingerprint.
    hidden = sensitive or spec["state"] != "present"
    desired: dict[str, Any] | None = None
    content = b""
    if spec["state"] == "present":
        content = desired_file_bytes(doc, tree)
        desired = {"type": "file", "content": _content(hashlib.sha256(content).hexdigest(), hidden)}
        if "mode" in spec:
            desired["mode"] = normalize_mode(spec["mode"])
        for key in ("owner", "group"):
            if key in spec:
                desired[key] = spec[key]
    desired_text = None if sensitive else _text(content)
    index = len(request.files)
    request.files.append(
        {
            "path": spec["path"],
            "sha256": hashlib.sha256(content).hexdigest(),
            "want_content": desired is not None and desired_text is not None,
        }
    )

    def read(answer: Answer) -> Observed:
        fact = answer["files"][index]
        if "error" in fact:
            return Observed(desired, None, f"{spec['path']}: {fact['error']}")
        if not fact["exists"]:
            texts = {"content": ("", desired_text)} if desired_text is not None else {}
            return Observed(desired, None, texts=texts)
        live: dict[str, Any] = {k: fact[k] for k in ("type", "mode", "owner", "group")}
        if "sha256" in fact:
            live["content"] = _content(fact["sha256"], hidden)
        texts = {}
        if desired_text is not None and "content_b64" in fact:
            live_text = _text(base64.b64decode(fact["content_b64"]))
            if live_text is not None:
                texts["content"] = (live_text, desired_text)
        return Observed(desired, live, texts=texts)

    return read


def _service(doc: Document, tree: SourceTree, request: FactRequest) -> Reader:
    name = doc.spec["name"]
    request.services.add(name)
    desired = {k: doc.spec[k] for k in ("running", "enabled") if k in doc.spec}

    def read(answer: Answer) -> Observed:
        if answer.get("host", {}).get("service_manager") != "systemd":
            # No unit can be read or started: a difference no handler can write.
            return Observed(desired, None, unresolved=NO_SYSTEMD)
        facts = answer.get("services", {})
        if "error" in facts:
            return Observed(desired, None, facts["error"])
        unit = facts["units"].get(name, {})
        if not unit.get("exists"):
            return Observed(desired, None, f"no unit named {name!r} on this node")
        return Observed(desired, {"running": unit["running"], "enabled": unit["enabled"]})

    return read


def _user(doc: Document, tree: SourceTree, request: FactRequest) -> Reader:
    spec = doc.spec
    request.users.add(spec["name"])
    desired: dict[str, Any] | None = None
    if spec["state"] == "present":
        desired = {k: spec[k] for k in ("uid", "shell", "home", "comment") if k in spec}
        if "groups" in spec:
            desired["groups"] = sorted(spec["groups"])

    def read(answer: Answer) -> Observed:
        fact = answer["users"][spec["name"]]
        if not fact["exists"]:
            return Observed(desired, None)
        live = {k: fact[k] for k in ("uid", "shell", "home", "comment", "groups")}
        return Observed(desired, live)

    return read


def normalize_sysctl(value: Any) -> str:
    return " ".join(str(value).split())


def _sysctl(doc: Document, tree: SourceTree, request: FactRequest) -> Reader:
    key = str(doc.spec["key"]).replace("/", ".")
    request.sysctls.add(key)
    if doc.spec.get("state", "present") != "present":
        return _sysctl_absent(key)
    value = normalize_sysctl(doc.spec["value"])
    desired = {"value": value, "persisted": value}

    def read(answer: Answer) -> Observed:
        fact = answer["sysctls"][key]
        if "error" in fact:
            return Observed(desired, None, f"{key}: {fact['error']}")
        return Observed(desired, {"value": fact["value"], "persisted": fact["persisted"]})

    return read


def _sysctl_absent(key: str) -> Reader:
    """The object of an absent Sysctl is its line in FazAI's persisted file: a kernel
    parameter cannot be removed, so its running value is neither compared nor changed.
    A key the kernel does not have (a module not loaded) can still leave the file."""

    def read(answer: Answer) -> Observed:
        persisted = answer["sysctls"][key].get("persisted")
        return Observed(None, None if persisted is None else {"persisted": persisted})

    return read


def nft_essence(ruleset: Any) -> str:
    """A digest of nft's JSON for a table, without handles and version metadata."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("handle", "metainfo")}
        if isinstance(value, list):
            return [strip(v) for v in value if not (isinstance(v, dict) and "metainfo" in v)]
        return value

    canonical = json.dumps(strip(ruleset), sort_keys=True).encode()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def _nft_table(doc: Document, tree: SourceTree, request: FactRequest) -> Reader:
    spec = doc.spec
    present = spec["state"] == "present"
    index = len(request.nft)
    request.nft.append(
        {
            "family": spec["family"],
            "name": spec["name"],
            "definition": spec.get("definition") if present else None,
        }
    )

    def read(answer: Answer) -> Observed:
        fact = answer["nft"][index]
        if "error" in fact:
            return Observed(None, None, fact["error"])
        desired = None
        desired_text = ""
        if present:
            wanted = fact.get("desired", {})
            if "error" in wanted:
                return Observed(None, None, wanted["error"])
            desired = {"definition": nft_essence(wanted.get("json"))}
            desired_text = wanted.get("text", "")
        if not fact["exists"]:
            return Observed(
                desired, None, texts={"definition": ("", desired_text)} if present else {}
            )
        live = {"definition": nft_essence(fact.get("json"))}
        return Observed(desired, live, texts={"definition": (fact.get("text", ""), desired_text)})

    return read


def _goal(doc: Document, tree: SourceTree, request: FactRequest) -> Reader:
    """A goal's essence is each check's verdict: desired all "pass", live what the node's
    run of it came to. Only the verdict is kept, never the command's output (a probe's
    output can hold secrets): a failing check says why in words of FazAI's own."""
    every = checks_of(doc.spec)
    commands = [c for c in every if isinstance(c, CommandCheck)]
    if len(commands) != len(every):  # validation keeps API checks off Linux nodes
        return lambda answer: Observed(None, None, "an API check cannot run on a Linux node")
    # Validation refused these already; this is the last line before the node runs them.
    refused = next((r for c in commands if (r := probes.refusal(c.command)) is not None), None)
    if refused is not None:
        return lambda answer: Observed(None, None, f"not a read-only probe, not run: {refused}")
    resolution = resolution_of(doc.spec)
    tool_argv = resolution.check_command if resolution is not None else None
    if resolution is not None and tool_argv is None:
        return lambda answer: Observed(None, None, "an opnsense tool cannot run on a Linux node")
    if tool_argv is not None and (refused := probes.refusal(list(tool_argv))) is not None:
        return lambda answer: Observed(None, None, f"the tool's check is not run: {refused}")
    start = len(request.checks)
    for check in commands:
        request.checks.append(
            {
                "argv": list(check.command),
                "timeout": check.timeout,
                # Judged on the node: the output itself never comes back.
                "contains": check.stdout_contains,
                "matches": check.stdout_matches,
            }
        )
    if resolution is not None and tool_argv is not None:
        request.checks.append({"argv": list(tool_argv), "timeout": resolution.check_timeout})
    desired = {check.name: PASS for check in commands}
    wanted = start + len(commands) + (resolution is not None)

    def read(answer: Answer) -> Observed:
        answers = answer.get("checks")
        if not isinstance(answers, list) or len(answers) < wanted:
            return Observed(desired, None, "the node did not answer the goal's checks")
        live = {
            check.name: verdict(check, answers[start + index])
            for index, check in enumerate(commands)
        }
        failing = failing_reason(live)
        if resolution is None or failing is None:
            # Met is in sync, whatever a tool would say: nothing to write.
            return Observed(desired, live, unresolved=failing)
        return _resolvable(resolution.tool, desired, live, failing, answers[wanted - 1])

    return read


def _resolvable(
    tool: str, desired: dict[str, str], live: dict[str, str], failing: str, answer: Answer
) -> Observed:
    """An unmet goal with a tool: an update when the tool's check says "not converged"
    (exit 1), unresolved when it says converged (the tool cannot help) or fails."""
    field = f"Tool/{tool}"
    state = tool_state(answer)
    desired = {**desired, field: CONVERGED}
    live = {**live, field: state}
    if state == NOT_CONVERGED:
        return Observed(desired, live)
    if state == CONVERGED:
        why = f"{failing}; Tool/{tool} reports it converged, so applying it cannot help"
    else:
        why = f"{failing}; Tool/{tool}'s check {state.removeprefix('error: ')}"
    return Observed(desired, live, unresolved=why)


def tool_state(answer: Mapping[str, Any]) -> str:
    """A tool check's answer: exit 0 converged, 1 not, anything else an error."""
    if "error" in answer:
        return "error: " + str(answer["error"])
    if answer.get("timed_out"):
        return f"error: timed out after {float(answer.get('timeout', 0)):g}s"
    code = answer.get("exit")
    if code == 0:
        return CONVERGED
    if code == 1:
        return NOT_CONVERGED
    if isinstance(code, int) and code < 0:
        return f"error: killed by signal {-code}"
    return f"error: exit {code}" if isinstance(code, int) else "error: no exit status"


def verdict(check: CommandCheck, answer: Mapping[str, Any]) -> str:
    """The verdict on one check from its answer: "pass", or "fail: " and why."""
    if "error" in answer:
        return "fail: " + str(answer["error"])
    if answer.get("timed_out"):
        seconds = float(answer.get("timeout", check.timeout))
        why = f"fail: timed out after {seconds:g}s"
        return why + " (the node's check time budget ran out)" if answer.get("budget") else why
    code = answer.get("exit")
    if not isinstance(code, int):
        return "fail: the node reported no exit status"
    if code != check.exit_code:
        return f"fail: killed by signal {-code}" if code < 0 else f"fail: exit {code}"
    # Only the first 64 KiB of the output are judged: say so when the text may be beyond.
    cut = " (only the first 64 KiB of the output are read)" if answer.get("truncated") else ""
    if check.stdout_contains is not None and answer.get("contains") is not True:
        return "fail: output lacks the expected text" + cut
    if check.stdout_matches is not None and answer.get("matches") is not True:
        return "fail: output does not match" + cut
    return PASS


_PREPARERS: dict[str, Callable[[Document, SourceTree, FactRequest], Reader]] = {
    "Goal": _goal,
    "Package": _package,
    "File": _file,
    "Service": _service,
    "User": _user,
    "Sysctl": _sysctl,
    "NftTable": _nft_table,
}
