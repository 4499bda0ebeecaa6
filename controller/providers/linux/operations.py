"""The shell commands that converge a Linux node, as pure functions of data.

Forward: (what the documents want, the node's state as the snapshot read it) -> steps.
Rollback: (the snapshot, the node's state now) -> steps that put every object back.
Nothing here talks to a node, so every command FazAI can send is tested as data
(tests/data/linux_operations). An object already in the wanted state gets no step, so
both directions are idempotent.

A step is one POSIX shell script, run on the node with ``sh -c`` (many steps to one SSH
round trip: see batch.py); data (file contents, nft scripts) travels base64-encoded on
its standard input, never in a command line, so the journal, which records the script,
never holds the content of a sensitive file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import posixpath
import re
import secrets
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.model.tool import ENV_PREFIX, resolution_of, secret_param
from controller.providers.linux import nftbody
from controller.store.redact import MASK

SYSCTL_FILE = "/etc/sysctl.d/99-fazai.conf"
APT_ENV = "DEBIAN_FRONTEND=noninteractive"
APT_LOCK = "-o DPkg::Lock::Timeout=120"
# Creates and updates go in this order (a file may need its owner, a service its
# package, a goal's tool what the other documents set up); deletes go after them, in
# the reverse order.
KIND_ORDER = ("Package", "User", "File", "Sysctl", "NftTable", "Service", "Goal")
# Password fields that hold no secret: empty, locked without a hash, "see shadow".
_NO_SECRET = ("", "*", "x")

q = shlex.quote


class OperationError(Exception):
    """The change cannot be made safely; raised before anything is sent to the node."""


@dataclass(frozen=True)
class Target:
    """One object to converge. ``spec`` is the document's spec (defaults applied); for a
    delete it is ``{"state": "absent"}`` plus what identifies the object."""

    kind: str
    name: str  # the document's name, for the journal and messages
    key: str  # the object on the node: a path, a package or user name, "inet filter"...
    action: str  # create, update, delete
    spec: Mapping[str, Any]
    data: bytes | None = None  # a present File's content
    sensitive: bool = False

    @property
    def present(self) -> bool:
        return self.action != "delete" and self.spec.get("state", "present") == "present"


@dataclass(frozen=True)
class Step:
    kind: str
    name: str
    action: str
    script: str
    stdin: str = ""  # base64 text (ASCII), fed to the script's standard input
    keys: tuple[str, ...] = ()  # the objects it touches
    slow: bool = False  # package manager steps: they get a longer timeout
    # its stdin carries a secret (a sensitive file, account lines): whatever the node
    # prints about the step is masked of that data before it is journaled or shown
    sensitive: bool = False
    timeout: float | None = None  # seconds; the node's command timeout (or slow's) if None
    # Values to mask in whatever the node prints about the step, besides its stdin (the
    # bare values of a tool's secret params): never journaled themselves.
    masks: tuple[str, ...] = field(default=(), compare=False, repr=False)
    # A tool's script, which may do anything: nothing it starts outlives the step.
    contain: bool = False

    def payload(self) -> dict[str, Any]:
        """What the journal records: the script, and only a digest of the data sent; for
        data holding a secret not even that (a plain digest of a short secret lets it be
        guessed offline from the state file), only that there was some."""
        out: dict[str, Any] = {"script": self.script, "objects": list(self.keys)}
        if self.stdin and self.sensitive:
            out["stdin"] = MASK
        elif self.stdin:
            out["stdinSha256"] = hashlib.sha256(self.stdin.encode()).hexdigest()
        return out

    def as_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "action": self.action,
            "script": self.script,
        }
        if self.stdin:
            out["stdin"] = base64.b64decode(self.stdin).decode("utf-8", "replace")
        return out


Facts = Mapping[str, Any]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unit_name(name: str) -> str:
    return name if "." in name else name + ".service"


def normalize_mode(mode: str) -> str:
    return f"{int(mode, 8):04o}"


def sysctl_file_content(values: Mapping[str, str]) -> bytes:
    """The persisted file: every Sysctl document of the node, sorted, so that the same
    documents always give the same bytes (no rewrite when nothing changed)."""
    lines = ["# Managed by FazAI: every Sysctl document of this node. Edits are overwritten."]
    lines += [f"{k} = {values[k]}" for k in sorted(values)]
    return ("\n".join(lines) + "\n").encode()


# -- building blocks shared by apply and rollback -------------------------------------


def _owner_arg(owner: str | int | None, group: str | int | None) -> str | None:
    if owner is None and group is None:
        return None
    if group is None:
        return str(owner)
    return f"{'' if owner is None else owner}:{group}"


# A transaction's temp files are named ``.fazai-TAG-XXXXXX``, TAG drawn at its snapshot
# and kept in it: rollback removes the leftovers of that transaction only, never a file
# of the node that merely looks alike (``.fazai-settings``) nor another transaction's.
TEMP_TAG = re.compile(r"^[a-z0-9]{4,32}$")
# For a snapshot of an earlier FazAI, which kept no tag: its rollback still writes
# through temp files, and removes none it cannot tell are its own.
LEGACY_TAG = "rollback"


def new_tag() -> str:
    return secrets.token_hex(6)


def temp_prefix(tag: str) -> str:
    if not TEMP_TAG.match(tag):
        raise OperationError(f"not a temp file tag: {tag!r}")
    return f".fazai-{tag}-"


def write_file_script(
    path: str,
    mode: str,
    owner: str | int | None,
    group: str | int | None,
    mkdirs: bool,
    *,
    tag: str,
) -> str:
    """Atomic replacement: a temp file in the same directory (so the rename cannot cross
    filesystems), owner and mode set before the rename, fsync'd, then ``mv -fT`` (-T: a
    directory at ``path`` is an error, never a place to move the file into). ``tag``
    names the transaction's temp files (see :data:`TEMP_TAG`)."""
    parent = posixpath.dirname(path)
    lines = ["set -e"]
    if mkdirs:
        lines.append(f"mkdir -p -- {q(parent)}")
    template = posixpath.join(parent, temp_prefix(tag) + "XXXXXX")
    lines += [
        f"t=$(mktemp -- {q(template)})",
        "trap 'rm -f -- \"$t\"' EXIT",
        'base64 -d > "$t"',
    ]
    chown = _owner_arg(owner, group)
    if chown is not None:
        # chown before chmod: chown clears setuid/setgid bits the mode may ask for
        lines.append(f'chown {q(chown)} -- "$t"')
    lines += [
        f'chmod {mode} -- "$t"',
        'sync -- "$t"',
        f'mv -fT -- "$t" {q(path)}',
        "trap - EXIT",
    ]
    return "\n".join(lines)


def nft_replace_script(family: str, name: str, body: str | None) -> str:
    """One nft transaction: declaring the table first makes the delete safe when it is
    absent; with ``body`` the new table is created in the same atomic load."""
    script = f"table {family} {name}\ndelete table {family} {name}\n"
    if body is not None:
        script += body if body.endswith("\n") else body + "\n"
    return script


NFT_LOAD = "\n".join(
    [
        "set -e",
        "f=$(mktemp)",
        "trap 'rm -f -- \"$f\"' EXIT",
        'base64 -d > "$f"',
        # -c first: a script nft rejects never reaches the ruleset (the load itself is
        # atomic too; the check makes the failure cheaper and clearer)
        'nft -c -f "$f"',
        'nft -f "$f"',
    ]
)


def apt_install(specs: Iterable[str], downgrades: bool = False) -> str:
    extra = " --allow-downgrades" if downgrades else ""
    names = " ".join(q(s) for s in specs)
    return f"{APT_ENV} apt-get install -y {APT_LOCK}{extra} -- {names}"


def apt_remove(names: Iterable[str], purge: bool = False) -> str:
    verb = "purge" if purge else "remove"
    return f"{APT_ENV} apt-get {verb} -y {APT_LOCK} -- {' '.join(q(n) for n in names)}"


# -- forward --------------------------------------------------------------------------


def resets_others(kind: str, key: str) -> bool:
    """Writing a forwarding switch makes the kernel reset other keys (net.ipv4.ip_forward
    flips conf.*.accept_redirects, inet_forward_change in devinet.c): it must be written
    before them, forward and in rollback, or their values are lost."""
    return kind == "Sysctl" and key.replace("/", ".").endswith(("ip_forward", ".forwarding"))


def ordered(targets: Iterable[Target]) -> list[Target]:
    """Creates/updates by KIND_ORDER, then deletes in the reverse kind order."""
    items = list(targets)
    rank = {k: i for i, k in enumerate(KIND_ORDER)}
    ups = sorted(
        (t for t in items if t.present),
        key=lambda t: (rank[t.kind], not resets_others(t.kind, t.key), t.key),
    )
    downs = sorted((t for t in items if not t.present), key=lambda t: (-rank[t.kind], t.key))
    return ups + downs


def _fact(facts: Facts, section: str, key: str, target: Target) -> Mapping[str, Any]:
    fact: Mapping[str, Any] | None = facts.get(section, {}).get(key)
    if fact is None:
        raise OperationError(f"{target.kind}/{target.name}: the snapshot has no state of {key}")
    if "error" in fact:
        raise OperationError(f"{target.kind}/{target.name}: {fact['error']}")
    return fact


def forward_steps(
    targets: Sequence[Target],
    facts: Facts,
    sysctl_values: Mapping[str, str] | None = None,
    *,
    tag: str,
) -> list[Step]:
    """Every step that converges ``targets`` from the state in ``facts`` (the snapshot's
    gather answer), in apply order. ``sysctl_values`` are ALL the Sysctl documents of
    the node (key -> value): the persisted file holds them all; ``tag`` is the
    snapshot's temp file tag. Raises OperationError, before anything is sent, for a
    change that cannot be made safely."""
    host: Mapping[str, Any] = facts.get("host", {})
    by_kind: dict[str, list[Target]] = {}
    for target in ordered(targets):
        by_kind.setdefault(target.kind, []).append(target)
    ups: list[Step] = []
    downs: list[Step] = []
    install, remove = _package_steps(by_kind.get("Package", []), facts, host)
    ups += install
    for target in by_kind.get("User", []):
        (ups if target.present else downs).extend(_user_steps(target, facts))
    for target in by_kind.get("File", []):
        (ups if target.present else downs).extend(_file_steps(target, facts, tag))
    ups += _sysctl_steps(by_kind.get("Sysctl", []), facts, sysctl_values, tag)
    for target in by_kind.get("NftTable", []):
        (ups if target.present else downs).extend(_nft_steps(target, facts))
    for target in by_kind.get("Service", []):
        ups += _service_steps(target, facts, host)
    for target in by_kind.get("Goal", []):
        ups.append(_tool_step(target))
    # deletes in reverse kind order: nft tables, files, users, then the package removal
    rank = {k: i for i, k in enumerate(KIND_ORDER)}
    downs.sort(key=lambda s: -rank[s.kind])
    return ups + downs + remove


def _package_steps(
    targets: Sequence[Target], facts: Facts, host: Mapping[str, Any]
) -> tuple[list[Step], list[Step]]:
    installs: list[tuple[Target, str]] = []
    removals: list[Target] = []
    for target in targets:
        fact = _fact(facts, "packages", target.key, target)
        version = target.spec.get("version")
        if target.present:
            if not fact["exists"]:
                installs.append((target, f"{target.key}={version}" if version else target.key))
            elif version is not None and fact["version"] != version:
                installs.append((target, f"{target.key}={version}"))
        elif fact["exists"]:
            removals.append(target)
    if (installs or removals) and host.get("packageManager") != "dpkg":
        raise OperationError("packages: unsupported on this node: apply needs dpkg/apt")
    install: list[Step] = []
    if installs:
        actions = {t.action for t, _ in installs}
        install.append(
            Step(
                "Package",
                ",".join(t.name for t, _ in installs),
                "create" if actions == {"create"} else "update",
                apt_install(s for _, s in installs),
                keys=tuple(t.key for t, _ in installs),
                slow=True,
            )
        )
    remove: list[Step] = []
    if removals:
        remove.append(
            Step(
                "Package",
                ",".join(t.name for t in removals),
                "delete",
                apt_remove(t.key for t in removals),
                keys=tuple(t.key for t in removals),
                slow=True,
            )
        )
    return install, remove


def _user_steps(target: Target, facts: Facts) -> list[Step]:
    fact = _fact(facts, "users", target.key, target)
    spec, name = target.spec, target.key
    if not target.present:
        if not fact["exists"]:
            return []
        # never -r: the home directory holds data no snapshot keeps
        return [Step("User", target.name, "delete", f"userdel -- {q(name)}", keys=(name,))]
    args: list[str] = []
    if "uid" in spec and (not fact["exists"] or fact.get("uid") != spec["uid"]):
        args += ["-u", str(int(spec["uid"]))]
    for option, field_name in (("-d", "home"), ("-s", "shell"), ("-c", "comment")):
        if field_name in spec and (not fact["exists"] or fact.get(field_name) != spec[field_name]):
            args += [option, q(str(spec[field_name]))]
    if "groups" in spec:
        wanted = sorted(spec["groups"])
        if (fact["exists"] and fact["memberOf"] != wanted) or (not fact["exists"] and wanted):
            args += ["-G", q(",".join(wanted))]
    if not fact["exists"]:
        # no -m: FazAI manages the account, not a home directory it could not snapshot
        script = " ".join(["useradd", *args, "--", q(name)])
        return [Step("User", target.name, target.action, script, keys=(name,))]
    if not args:
        return []
    # usermod -d without -m: the account points elsewhere, no data is moved
    script = " ".join(["usermod", *args, "--", q(name)])
    return [Step("User", target.name, "update", script, keys=(name,))]


def _file_steps(target: Target, facts: Facts, tag: str) -> list[Step]:
    fact = _fact(facts, "files", target.key, target)
    path = target.key
    if fact["exists"] and fact["type"] != "file":
        raise OperationError(
            f"File/{target.name}: {path} is a {fact['type']}; FazAI only replaces regular files"
        )
    if not target.present:
        if not fact["exists"]:
            return []
        return [Step("File", target.name, "delete", f"rm -f -- {q(path)}", keys=(path,))]
    spec = target.spec
    data = target.data if target.data is not None else b""
    mode = normalize_mode(spec["mode"]) if "mode" in spec else None
    owner, group = spec.get("owner"), spec.get("group")
    if not fact["exists"] or base64.b64decode(fact.get("content", "")) != data:
        # an existing file keeps what the document does not set (numeric: exact)
        script = write_file_script(
            path,
            mode or (fact["mode"] if fact["exists"] else "0644"),
            owner if owner is not None else (fact["uid"] if fact["exists"] else None),
            group if group is not None else (fact["gid"] if fact["exists"] else None),
            bool(fact.get("missingDirs")),
            tag=tag,
        )
        return [Step("File", target.name, target.action, script, b64(data), (path,),
                     sensitive=target.sensitive)]  # fmt: skip
    parts = []
    new_owner = owner if owner is not None and owner != fact["owner"] else None
    new_group = group if group is not None and group != fact["group"] else None
    chown = _owner_arg(new_owner, new_group)
    if chown is not None:
        parts.append(f"chown {q(chown)} -- {q(path)}")
    if mode is not None and (mode != fact["mode"] or chown is not None):
        # after chown (which may clear setuid bits), and again if chown ran
        parts.append(f"chmod {mode} -- {q(path)}")
    if not parts:
        return []
    return [Step("File", target.name, "update", " && ".join(parts), keys=(path,))]


def _sysctl_steps(
    targets: Sequence[Target], facts: Facts, values: Mapping[str, str] | None, tag: str
) -> list[Step]:
    if not targets:
        return []
    steps: list[Step] = []
    for target in targets:
        if not target.present:
            continue  # a kernel parameter cannot be deleted; it leaves the persisted file
        fact = _fact(facts, "sysctls", target.key, target)
        value = " ".join(str(target.spec["value"]).split())
        if fact["value"] != value:
            script = f"sysctl -w -- {q(f'{target.key}={value}')}"
            steps.append(Step("Sysctl", target.name, target.action, script, keys=(target.key,)))
    if values is None:
        values = {t.key: " ".join(str(t.spec["value"]).split()) for t in targets if t.present}
    fact = facts.get("files", {}).get(SYSCTL_FILE)
    if fact is None or "error" in fact:
        why = fact["error"] if fact else "not in the snapshot"
        raise OperationError(f"Sysctl: {SYSCTL_FILE}: {why}")
    names = ",".join(t.name for t in targets)
    if not values:
        if fact["exists"]:
            steps.append(Step("Sysctl", names, "delete", f"rm -f -- {q(SYSCTL_FILE)}",
                              keys=(SYSCTL_FILE,)))  # fmt: skip
        return steps
    content = sysctl_file_content(values)
    current = base64.b64decode(fact.get("content", "")) if fact["exists"] else None
    if current != content or (fact["exists"] and fact["mode"] != "0644"):
        script = write_file_script(
            SYSCTL_FILE, "0644", "root", "root", bool(fact.get("missingDirs")), tag=tag
        )
        steps.append(Step("Sysctl", names, "update", script, b64(content), (SYSCTL_FILE,)))
    return steps


def _nft_steps(target: Target, facts: Facts) -> list[Step]:
    fact = _fact(facts, "nft", target.key, target)
    family, name = target.key.split(" ", 1)
    if not target.present:
        if not fact["exists"]:
            return []
        body = None
    else:
        definition = str(target.spec["definition"])
        # Checked at validate already; again here, because this text is about to be
        # loaded into the node's live ruleset, where an escape acts on every table.
        problem = nftbody.check(definition)
        if problem is not None:
            raise OperationError(f"NftTable/{target.name}: {problem}")
        # The plan compared nft's own rendering of both sides and found a difference;
        # the snapshot's text cannot tell, so a create/update always replaces the table.
        body = f"table {family} {name} {{\n{definition.rstrip()}\n}}\n"
    script = nft_replace_script(family, name, body)
    action = target.action if target.present else "delete"
    return [Step("NftTable", target.name, action, NFT_LOAD, b64(script.encode()), (target.key,))]


def _service_steps(target: Target, facts: Facts, host: Mapping[str, Any]) -> list[Step]:
    if host.get("serviceManager") != "systemd":
        raise OperationError(f"Service/{target.name}: unsupported on this node: no systemd")
    if not target.present:
        return []  # a Service document no longer there: the unit is left as it is
    fact = _fact(facts, "services", target.key, target)
    if not fact["exists"]:
        raise OperationError(f"Service/{target.name}: no unit named {target.key!r}")
    return _service_commands(target.kind, target.name, target.key, target.spec, fact)


def _service_commands(
    kind: str, name: str, unit: str, want: Mapping[str, Any], fact: Mapping[str, Any]
) -> list[Step]:
    parts = []
    if "enabled" in want and want["enabled"] != fact["enabled"]:
        verb = "enable" if want["enabled"] else "disable"
        parts.append(f"systemctl {verb} -- {q(unit_name(unit))}")
    if "running" in want and want["running"] != fact["running"]:
        verb = "start" if want["running"] else "stop"
        parts.append(f"systemctl {verb} -- {q(unit_name(unit))}")
    if not parts:
        return []
    return [Step(kind, name, "update", " && ".join(parts), keys=(unit,))]


_ENV_NAME = re.compile(r"^FAZAI_PARAM_[a-z][a-z0-9_]{0,62}$")


def tool_step(
    kind: str,
    name: str,
    action: str,
    script: str,
    environment: Mapping[str, str],
    keys: tuple[str, ...],
    timeout: float | None,
) -> Step:
    """A tool's script as a step: its own ``sh`` with nothing on its standard input and
    the params in its environment. The values travel on the step's stdin (base64 of
    shell-quoted assignments, read back with ``eval``), never in the script text that the
    journal records: the step is sensitive (its stdin and whatever the node prints of
    it masked) when a param is named like a secret."""
    names = sorted(environment)
    bad = [n for n in names if not _ENV_NAME.match(n)]
    if bad:
        # Validation refuses such names; this is the last line before they would be shell.
        raise OperationError(f"{kind}/{name}: not a param's name: {bad[0]!r}")
    runner = [
        "__fazai_env=$(base64 -d) || exit 125",
        'eval "$__fazai_env"; unset __fazai_env',
        *([f"export {' '.join(names)}"] if names else []),
        f"sh -c {q(script)} fazai-tool </dev/null",
    ]
    assignments = "".join(f"{n}={q(environment[n])}\n" for n in names)
    hidden = tuple(environment[n] for n in names if secret_param(n.removeprefix(ENV_PREFIX)))
    return Step(kind, name, action, "\n".join(runner), b64(assignments.encode()), keys,
                sensitive=bool(hidden), timeout=timeout, masks=hidden,
                contain=True)  # fmt: skip


def _tool_step(target: Target) -> Step:
    resolution = resolution_of(target.spec)
    if resolution is None or resolution.apply.script is None:
        raise OperationError(f"Goal/{target.name}: no linux tool resolves it")
    paths = resolution.snapshot.paths
    return tool_step(
        "Goal", target.name, "update", resolution.apply.script, resolution.environment(),
        (f"Tool/{resolution.tool}", *paths), resolution.apply.timeout,
    )  # fmt: skip


def tool_record(target: Target) -> dict[str, Any] | None:
    """The snapshot record that runs a tool's own rollback script after the restore of
    its snapshot (the record is first in the snapshot, so restored last); None when the
    tool has none. The environment is [name, value] pairs (the journal masks values
    under keys named like secrets, and a param may be called ``password_file``); the
    values of secret-named params sit apart under ``secretEnvironment``, which the
    journal's escrow keeps encrypted (snapshot.ESCROW)."""
    resolution = resolution_of(target.spec)
    if resolution is None or resolution.rollback is None or resolution.rollback.script is None:
        return None
    plain: list[list[str]] = []
    secret: dict[str, str] = {}
    for key, value in sorted(resolution.environment().items()):
        if secret_param(key.removeprefix(ENV_PREFIX)):
            secret[key] = value
        else:
            plain.append([key, value])
    before: dict[str, Any] = {"exists": True, "tool": resolution.tool,
                              "rollback": resolution.rollback.script, "environment": plain,
                              "timeout": resolution.rollback.timeout}  # fmt: skip
    if secret:
        before["secretEnvironment"] = secret
    return {"kind": "Goal", "name": target.name, "key": target.key, "before": before}


def _restore_tool(record: Mapping[str, Any], current: Facts, plan: RollbackPlan, tag: str) -> None:
    before = record["before"]
    environment = {str(k): str(v) for k, v in before.get("environment", [])}
    secret = before.get("secretEnvironment")
    if secret is not None:
        if not isinstance(secret, Mapping) or MASK in secret.values():
            # Sealed in the journal and not opened (the escrow's key is missing): the
            # script would run with "***" for a secret.
            plan.problems.append(
                f"Goal/{record['name']}: Tool/{before.get('tool')}'s rollback script needs "
                "a secret param the journal's escrow could not open; it was not run"
            )
            return
        environment.update({str(k): str(v) for k, v in secret.items()})
    plan.steps.append(
        tool_step("Goal", record["name"], "rollback", str(before["rollback"]), environment,
                  (f"Tool/{before.get('tool')}",), before.get("timeout"))
    )  # fmt: skip


# -- snapshot records and rollback ----------------------------------------------------


@dataclass
class RollbackPlan:
    steps: list[Step] = field(default_factory=list)
    # what cannot be put back as it was, said plainly (the rest is still restored)
    problems: list[str] = field(default_factory=list)


def split_secret(line: str | None) -> tuple[str | None, str | None]:
    """A shadow/gshadow line without its password hash, and the hash (None when the
    field holds no secret). The store masks the hash, so the journal never holds it."""
    if line is None:
        return None, None
    fields = line.split(":")
    if len(fields) < 2 or fields[1].lstrip("!") in _NO_SECRET:
        return line, None
    secret = fields[1]
    fields[1] = MASK
    return ":".join(fields), secret


def _join_secret(line: str | None, secret: Any, current: str | None) -> tuple[str | None, bool]:
    """Put the hash back. When the journal masked it, the node's current hash is kept
    (FazAI never changes passwords, so it is the same one); ``False`` when neither is
    there, and the account is restored locked."""
    if line is None:
        return None, True
    fields = line.split(":")
    if len(fields) < 2 or fields[1] != MASK:
        return line, True
    if isinstance(secret, str) and secret != MASK:
        fields[1] = secret
        return ":".join(fields), True
    now = current.split(":") if current else []
    if len(now) > 1:
        fields[1] = now[1]
        return ":".join(fields), True
    fields[1] = "!"
    return ":".join(fields), False


def _content(fact: Mapping[str, Any]) -> str | None:
    value = fact.get("content", fact.get("secretContent"))
    return None if value is None else str(value)


def rollback_steps(objects: Sequence[Mapping[str, Any]], current: Facts) -> RollbackPlan:
    """Steps that put every object of a snapshot back (``objects`` in the order the
    transaction touched them; restored in reverse), given the node's state now."""
    plan = RollbackPlan()
    tag = tag_of(objects) or LEGACY_TAG
    reinstall: list[str] = []
    uninstall: list[str] = []
    purge: list[str] = []
    handlers: dict[str, Callable[[Mapping[str, Any], Facts, RollbackPlan, str], None]] = {
        "User": _restore_user,
        "File": _restore_file,
        "Sysctl": _restore_sysctl,
        "NftTable": _restore_nft,
        "Service": _restore_service,
        "Goal": _restore_tool,
    }
    # Reverse order, except that among the sysctl records forwarding switches go before
    # the keys they reset; every other record keeps its place.
    restore = list(reversed(objects))
    slots = [i for i, r in enumerate(restore) if r["kind"] == "Sysctl"]
    sysctls = sorted(
        (restore[i] for i in slots), key=lambda r: not resets_others(r["kind"], r["key"])
    )
    for slot, record in zip(slots, sysctls, strict=True):
        restore[slot] = record
    for record in restore:
        kind, key, before = record["kind"], record["key"], record["before"]
        if key == TEMP_KEY:
            continue  # not an object: the tag of the transaction's temp files
        if "error" in before:
            plan.problems.append(f"{kind} {key}: no snapshot: {before['error']}")
            continue
        if kind == "Package":
            now = current.get("packages", {}).get(key, {})
            if "error" in now:
                plan.problems.append(f"Package {key}: {now['error']}")
            elif before["exists"] and now.get("version") != before["version"]:
                reinstall.append(f"{key}={before['version']}")
            elif not before["exists"] and now.get("exists"):
                # purge what was not there at all; keep the configuration of an "rc" one
                kept_config = str(before.get("status") or "").startswith("r")
                (uninstall if kept_config else purge).append(key)
            continue
        handlers[kind](record, current, plan, tag)
    steps = plan.steps
    # The node lists only names with this transaction's tag; the objects themselves are
    # never among them, even if one had such a name.
    objects_keys = {str(r["key"]) for r in objects}
    prefix = temp_prefix(tag) if tag != LEGACY_TAG else None
    temps = sorted(
        str(p)
        for p in current.get("temps", [])
        if prefix is not None
        and posixpath.basename(str(p)).startswith(prefix)
        and str(p) not in objects_keys
    )
    if temps:
        # A step killed before its rename (a dropped connection) leaves its temp file,
        # holding the new content: nothing of the transaction may stay behind.
        script = "rm -f -- " + " ".join(q(p) for p in temps)
        steps.append(Step("File", TEMP_FILES, "rollback", script, keys=tuple(temps)))
    if reinstall:
        # reverse of "removals last": reinstall first. May fail offline: reported.
        steps.insert(0, Step("Package", ",".join(sorted(reinstall)), "rollback",
                             apt_install(sorted(reinstall), downgrades=True),
                             keys=tuple(sorted(reinstall)), slow=True))  # fmt: skip
    for names, purging in ((uninstall, False), (purge, True)):
        if names:
            steps.append(Step("Package", ",".join(sorted(names)), "rollback",
                              apt_remove(sorted(names), purge=purging),
                              keys=tuple(sorted(names)), slow=True))  # fmt: skip
    return plan


def _restore_file(record: Mapping[str, Any], current: Facts, plan: RollbackPlan, tag: str) -> None:
    path, before, name = record["key"], record["before"], record["name"]
    now: Mapping[str, Any] = current.get("files", {}).get(path, {})
    if "error" in now and not now.get("exists"):
        plan.problems.append(f"{record['kind']} {path}: cannot read it now: {now['error']}")
        return
    kind = record["kind"]
    if before["exists"]:
        if before["type"] != "file":
            return  # apply never touches anything but regular files
        content = _content(before)
        same_meta = bool(now.get("exists")) and all(
            now.get(k) == before[k] for k in ("type", "mode", "uid", "gid")
        )
        if content == MASK:
            plan.problems.append(
                f"{kind} {path}: the previous content was sensitive and is not kept in the "
                "journal; it was not restored (mode and owner were)"
            )
            if now.get("exists") and now.get("type") == "file" and not same_meta:
                script = (f"chown {before['uid']}:{before['gid']} -- {q(path)}"
                          f" && chmod {before['mode']} -- {q(path)}")  # fmt: skip
                plan.steps.append(Step(kind, name, "rollback", script, keys=(path,)))
            return
        if same_meta and now.get("content") == content:
            return
        if now.get("exists") and now.get("type") != "file":
            plan.problems.append(f"{kind} {path}: is now a {now.get('type')}; left alone")
            return
        script = write_file_script(path, before["mode"], before["uid"], before["gid"],
                                   bool(now.get("missingDirs")), tag=tag)  # fmt: skip
        plan.steps.append(Step(kind, name, "rollback", script, content or "", (path,),
                               sensitive="secretContent" in before))  # fmt: skip
        return
    lines = []
    if now.get("exists"):
        if now.get("type") != "file":
            plan.problems.append(f"{kind} {path}: is now a {now.get('type')}; left alone")
            return
        lines.append(f"rm -f -- {q(path)}")
    # Directories apply created for the file, deepest first. rmdir refuses non-empty ones,
    # and that is no failure: a sibling file restored later in this rollback (or one made
    # by hand) still lives there; the last sibling's step removes the emptied directory.
    still_missing = set(now.get("missingDirs", []))
    for directory in reversed(before.get("missingDirs", [])):
        if directory not in still_missing:
            lines.append(
                f"if [ -d {q(directory)} ]; then rmdir -- {q(directory)} 2>/dev/null || true; fi"
            )
    if lines:
        plan.steps.append(Step(kind, name, "rollback", "\n".join(["set -e", *lines]),
                               keys=(path,)))  # fmt: skip


def _restore_sysctl(
    record: Mapping[str, Any], current: Facts, plan: RollbackPlan, tag: str
) -> None:
    if record["key"].startswith("/"):  # the persisted file: restored like any file
        _restore_file(record, current, plan, tag)
        return
    key, before = record["key"], record["before"]
    now = current.get("sysctls", {}).get(key, {})
    if now.get("value") != before["value"]:
        setting = f"{key}={before['value']}"
        script = f"sysctl -w -- {q(setting)}"
        plan.steps.append(Step("Sysctl", record["name"], "rollback", script, keys=(key,)))


# The name of the rollback step that removes FazAI's leftover temp files, and the key
# of the snapshot record that keeps their tag.
TEMP_FILES = "(temp files)"
TEMP_KEY = "temp-files"


def temp_record(tag: str) -> dict[str, Any]:
    temp_prefix(tag)  # refuses a malformed tag
    # "tag", not "token": the journal masks values under secret-like names.
    return {"kind": "File", "name": TEMP_FILES, "key": TEMP_KEY,
            "before": {"exists": True, "tag": tag}}  # fmt: skip


def tag_of(objects: Iterable[Mapping[str, Any]]) -> str | None:
    """The temp file tag a snapshot recorded (None: an earlier FazAI's snapshot)."""
    for record in objects:
        if record.get("key") == TEMP_KEY and record.get("name") == TEMP_FILES:
            tag = record.get("before", {}).get("tag")
            if isinstance(tag, str) and TEMP_TAG.match(tag):
                return tag
    return None


# The snapshot record of the tables an NftTable transaction does not manage.
RULESET_KEY = "ruleset"
RULESET_NAME = "(other tables)"


def ruleset_changes(before: Mapping[str, Any], now: Mapping[str, Any] | None) -> list[str]:
    """The tables outside the transaction that differ from the snapshot ("inet x": how).

    Only what declares the table counts: its chains, rules and set, map and object
    declarations, never the elements of its sets and maps, which other programs change
    all the time (a fail2ban ban, an element timing out) and FazAI never touches."""
    if now is None or "error" in now:
        return [f"the ruleset cannot be read: {now['error'] if now else 'not read'}"]
    managed = set(before.get("managed", []))
    tables_now: Mapping[str, str] = now.get("tables", {})
    shapes_now: Mapping[str, str] = now.get("declarations", {})
    shapes_before = _pairs(before, "declarations")
    out = []
    for table in sorted(_pairs(before, "tables")):
        if table not in tables_now:
            out.append(f"table {table} is gone")
        elif table in shapes_before and shapes_now.get(table) != shapes_before[table]:
            # A snapshot of an earlier FazAI has no declarations: existence only.
            out.append(f"table {table} changed")
    for table in sorted(set(tables_now) - set(_pairs(before, "tables")) - managed):
        out.append(f"table {table} appeared")
    return out


def _pairs(before: Mapping[str, Any], section: str) -> dict[str, str]:
    """A section of the snapshot's other tables (kept as [table, text] pairs), by table."""
    return {str(table): str(text) for table, text in before.get(section, [])}


def _restore_ruleset(record: Mapping[str, Any], current: Facts, plan: RollbackPlan) -> None:
    """Recreate the other tables that are gone; report, never touch, those still there.

    A table FazAI does not manage that is still there belongs to someone else: deleting
    and recreating it from the snapshot would drop what was added to it since (a new
    ban, a rule of its owner) and reset its counters and quotas."""
    before = record["before"]
    now = current.get("nftRuleset")
    if now is None or "error" in now:
        plan.problems.append(f"NftTable {RULESET_NAME}: {ruleset_changes(before, now)[0]}")
        return
    tables_now = now.get("tables", {})
    for table, text in sorted(_pairs(before, "tables").items()):
        if table in tables_now:
            continue
        family, name = table.split(" ", 1)
        script = nft_replace_script(family, name, text)
        plan.steps.append(Step("NftTable", RULESET_NAME, "rollback", NFT_LOAD,
                               b64(script.encode()), (table,)))  # fmt: skip
    for change in ruleset_changes(before, now):
        if change.endswith(" changed"):
            plan.problems.append(
                f"NftTable {change[len('table ') : -len(' changed')]}: its chains, rules or "
                "declarations changed during the transaction; not FazAI's, left as it is"
            )
        elif change.endswith(" appeared"):
            # Not FazAI's and not there at the snapshot: someone else may have made it since.
            table = change[len("table ") : -len(" appeared")]
            plan.problems.append(
                f"NftTable {table}: appeared during the transaction; left as it is"
            )


def _restore_nft(record: Mapping[str, Any], current: Facts, plan: RollbackPlan, tag: str) -> None:
    key, before = record["key"], record["before"]
    if key == RULESET_KEY:
        _restore_ruleset(record, current, plan)
        return
    now = current.get("nft", {}).get(key, {})
    if "error" in now:
        plan.problems.append(f"NftTable {key}: {now['error']}")
        return
    family, name = key.split(" ", 1)
    if before["exists"]:
        if now.get("exists") and now.get("text") == before["text"]:
            return
        script = nft_replace_script(family, name, before["text"])
    elif now.get("exists"):
        script = nft_replace_script(family, name, None)
    else:
        return
    plan.steps.append(Step("NftTable", record["name"], "rollback", NFT_LOAD,
                           b64(script.encode()), (key,)))  # fmt: skip


def _restore_service(
    record: Mapping[str, Any], current: Facts, plan: RollbackPlan, tag: str
) -> None:
    key, before = record["key"], record["before"]
    now = current.get("services", {}).get(key, {})
    if "error" in now or not now.get("exists"):
        plan.problems.append(f"Service {key}: {now.get('error', 'the unit is gone')}")
        return
    plan.steps.extend(_service_commands("Service", record["name"], key, before, now))


def _restore_user(record: Mapping[str, Any], current: Facts, plan: RollbackPlan, tag: str) -> None:
    user, before = record["key"], record["before"]
    now: Mapping[str, Any] = current.get("users", {}).get(user, {})
    if "error" in now:
        plan.problems.append(f"User {user}: {now['error']}")
        return
    shadow, whole = _join_secret(before.get("shadow"), before.get("passwordHash"),
                                 now.get("shadow"))  # fmt: skip
    if not whole:
        plan.problems.append(
            f"User {user}: the password hash is not kept in the journal and the account "
            "is gone; it was restored locked (set its password again)"
        )
    hashes = before.get("groupPasswordHashes")
    gshadow: dict[str, str | None] | None = None
    now_gshadow = now.get("gshadowLines") or {}
    if before.get("gshadowLines") is not None:
        gshadow = {}
        for group, line in before["gshadowLines"].items():
            secret = hashes.get(group) if isinstance(hashes, Mapping) else MASK
            gshadow[group], _ = _join_secret(line, secret, now_gshadow.get(group))
    request = {
        "op": "accounts",
        "user": user,
        "passwd": before.get("passwd"),
        "shadow": shadow,
        "group": dict(before.get("groupLines") or {}),
        "gshadow": gshadow,
        "tempPrefix": temp_prefix(tag),
    }
    now_groups = now.get("groupLines") or {}
    now_gshadow = now.get("gshadowLines") or {}
    same = (
        now.get("passwd") == request["passwd"]
        and now.get("shadow") == request["shadow"]
        and all(now_groups.get(g) == line for g, line in request["group"].items())
        and all(now_gshadow.get(g) == line for g, line in (gshadow or {}).items())
    )
    if same:
        return
    payload = json.dumps(request, sort_keys=True).encode()
    plan.steps.append(Step("User", record["name"], "rollback", ACCOUNTS_SCRIPT, b64(payload),
                           (user,), sensitive=True))  # fmt: skip


# The node-side helper (remote_snapshot.py) is spliced in where this marker stands when
# the step runs (see snapshot.expand): the journal and the test data keep the short form.
REMOTE_SCRIPT = "@remote_snapshot.py@"
ACCOUNTS_SCRIPT = f"base64 -d | python3 -I -S -c {REMOTE_SCRIPT}"
