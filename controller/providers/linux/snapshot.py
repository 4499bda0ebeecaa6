"""Snapshots of a Linux transaction: the previous state of every object it touches.

A snapshot is plain JSON, so the engine can keep it in the journal and a controller
restarted after a crash can roll back from it alone::

    {"format": "fazai.linux.snapshot/1", "node": "web-1",
     "escrow": ["groupPasswordHashes", "passwordHash", "secretContent"],
     "objects": [{"kind": "File", "name": "motd", "key": "/etc/motd",
                  "before": {"exists": true, "content": "<base64>", "mode": "0644",
                             "uid": 0, "gid": 0, ...}}, ...]}

``objects`` are in the order the transaction touches them; rollback restores them in
reverse. ``before`` is always a mapping with ``exists`` (absent objects still carry what
their rollback needs, e.g. the directories apply will create for a file).

Secrets: password hashes of accounts and the content of ``sensitive`` files are kept
under secret-named fields (``passwordHash``, ``groupPasswordHashes``, ``secretContent``),
which ``escrow`` lists: the engine hands them to the state store's escrow, which keeps
them encrypted with a key outside the database (``controller.store.escrow``), and opens
them again for a rollback from the journal. A secret the escrow cannot open (key missing
or another one) comes back masked: the account keeps the hash the node has now (or is
restored locked when it is gone), the file keeps its content; rollback says so.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

from controller.providers.linux import operations
from controller.providers.linux.operations import SYSCTL_FILE, Target
from controller.store import sealed
from controller.store.redact import MASK

FORMAT = "fazai.linux.snapshot/1"
# The secret fields a rollback needs back exactly: for the journal's escrow.
ESCROW = ("groupPasswordHashes", "passwordHash", "secretContent", "secretEnvironment")


@cache
def remote_source() -> str:
    source: str = (
        resources.files("controller.providers.linux").joinpath("remote_snapshot.py").read_text()
    )
    return source


def gather_command() -> str:
    # -I -S: no user site or .pth files on the node; the script is standard library only
    return "python3 -I -S -c " + shlex.quote(remote_source())


def expand(script: str) -> str:
    """A step's script as sent: the node-side helper spliced in for its marker."""
    return script.replace(operations.REMOTE_SCRIPT, shlex.quote(remote_source()))


def request_for(targets: Sequence[Target]) -> dict[str, Any]:
    """The gather request that reads every object ``targets`` touch, in one run."""
    request: dict[str, Any] = {
        "packages": [],
        "files": [],
        "users": [],
        "sysctls": [],
        "nft": [],
        "services": [],
    }
    for target in targets:
        if target.kind == "Package":
            request["packages"].append(target.key)
        elif target.kind == "File":
            request["files"].append(target.key)
        elif target.kind == "User":
            groups = sorted(target.spec.get("groups", [])) if target.present else []
            request["users"].append({"name": target.key, "groups": groups})
        elif target.kind == "Sysctl":
            if target.present:
                request["sysctls"].append(target.key)
        elif target.kind == "NftTable":
            request["nft"].append(target.key.split(" ", 1))
        elif target.kind == "Service":
            request["services"].append(target.key)
    if any(t.kind == "Sysctl" for t in targets):
        request["files"].append(SYSCTL_FILE)
    if any(t.kind == "NftTable" for t in targets):
        request["nftRuleset"] = True
    return request


def request_from_objects(objects: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The gather request that reads the current state of a snapshot's objects."""
    request: dict[str, Any] = {
        "packages": [],
        "files": [],
        "users": [],
        "sysctls": [],
        "nft": [],
        "services": [],
    }
    records = list(objects)
    for record in records:
        kind, key, before = record["kind"], record["key"], record["before"]
        if key == operations.TEMP_KEY:
            continue
        if kind == "Package":
            request["packages"].append(key)
        elif kind == "File" or (kind == "Sysctl" and key.startswith("/")):
            request["files"].append(key)
        elif kind == "User":
            groups = sorted((before.get("groupLines") or {}).keys())
            request["users"].append({"name": key, "groups": groups})
        elif kind == "Sysctl":
            request["sysctls"].append(key)
        elif kind == "NftTable" and key == operations.RULESET_KEY:
            request["nftRuleset"] = True
        elif kind == "NftTable":
            request["nft"].append(key.split(" ", 1))
        elif kind == "Service":
            request["services"].append(key)
    # Where a killed write may have left its temp file: the directory of each file, and
    # /etc for the account files; only names with this transaction's tag (none for the
    # snapshot of an earlier FazAI, which kept no tag: its leftovers cannot be told
    # from files that merely look alike).
    tag = operations.tag_of(records)
    if tag is not None:
        dirs = {posixpath.dirname(k) for k in request["files"]}
        if request["users"]:
            dirs.add("/etc")
        request["tempDirs"] = sorted(dirs)
        request["tempPrefix"] = operations.temp_prefix(tag)
    return request


_SECTIONS = {
    "Package": "packages",
    "File": "files",
    "User": "users",
    "Sysctl": "sysctls",
    "NftTable": "nft",
    "Service": "services",
}


def build(
    node: str, targets: Sequence[Target], answer: Mapping[str, Any], tag: str | None = None
) -> dict[str, Any]:
    """The snapshot of ``targets`` from the gather answer, objects in apply order, and
    the tag of the transaction's temp files (``tag``, or a new one)."""
    objects: list[dict[str, Any]] = []
    sysctl_names: list[str] = []
    tools: list[dict[str, Any]] = []
    for target in operations.ordered(targets):
        if target.kind == "Goal":
            # Not an object: its tool's snapshot list comes as targets of their own
            # kinds (LinuxTransaction adds them); only its rollback script is kept here.
            record = operations.tool_record(target)
            if record is not None:
                tools.append(record)
            continue
        if target.kind == "Sysctl":
            sysctl_names.append(target.name)
            if not target.present:
                continue  # a removed Sysctl only leaves the persisted file
        fact = answer.get(_SECTIONS[target.kind], {}).get(target.key)
        before = dict(fact) if fact is not None else {"error": "not read"}
        if target.kind == "User":
            before = _user_before(before)
        elif target.kind == "File" and target.sensitive and "content" in before:
            before["secretContent"] = before.pop("content")
        objects.append({"kind": target.kind, "name": target.name, "key": target.key,
                        "before": before})  # fmt: skip
    if sysctl_names:
        fact = answer.get("files", {}).get(SYSCTL_FILE)
        objects.append({
            "kind": "Sysctl",
            "name": ",".join(sysctl_names),
            "key": SYSCTL_FILE,
            "before": dict(fact) if fact is not None else {"error": "not read"},
        })  # fmt: skip
    tables = [t.key for t in targets if t.kind == "NftTable"]
    if tables:
        # First, so that rollback (in reverse) restores it last, after the tables
        # themselves.
        objects.insert(0, _ruleset_record(tables, answer.get("nftRuleset")))
    # First of all: a tool's rollback script runs after everything else is restored.
    objects[0:0] = tools
    # Last: not an object, only what names the transaction's temp files.
    objects.append(operations.temp_record(tag or operations.new_tag()))
    return {"format": FORMAT, "node": node, "escrow": list(ESCROW), "objects": objects}


def _ruleset_record(tables: Sequence[str], fact: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every other table as it was: an NftTable load runs in the node's whole ruleset, so
    what it could touch beyond its own table is snapshotted too (and verified after the
    write, and restored by rollback)."""
    before: dict[str, Any]
    if fact is None or "error" in fact:
        before = {"error": fact["error"] if fact else "not read"}
    else:
        # [table, text] pairs, not a mapping: the journal masks values under keys named
        # like secrets, and a table may well be called "inet tokens".
        others = [[k, v] for k, v in sorted(fact["tables"].items()) if k not in tables]
        declared = fact.get("declarations", {})
        shapes = [[k, v] for k, v in sorted(declared.items()) if k not in tables]
        before = {"exists": True, "tables": others, "declarations": shapes,
                  "managed": sorted(tables)}  # fmt: skip
    return {"kind": "NftTable", "name": operations.RULESET_NAME, "key": operations.RULESET_KEY,
            "before": before}  # fmt: skip


def _user_before(fact: dict[str, Any]) -> dict[str, Any]:
    """An account's lines as the journal can keep them: the hashes apart (escrowed), and
    nothing else under a name the store would mask. The passwd line sits under
    ``userLine`` (``passwd`` reads as a secret's name), and the group lines are [group,
    line] pairs, not mappings keyed by group names a node may call ``ssh_keys`` or
    ``secrets``. :func:`objects_of` turns them back into what rollback reads."""
    if "error" in fact:
        return fact
    fact["userLine"] = fact.pop("passwd", None)
    shadow, secret = operations.split_secret(fact.get("shadow"))
    fact["shadow"] = shadow
    if secret is not None:
        fact["passwordHash"] = secret
    if fact.get("gshadowLines") is not None:
        lines: dict[str, str | None] = {}
        hashes: dict[str, str] = {}
        for group, line in fact["gshadowLines"].items():
            lines[group], group_secret = operations.split_secret(line)
            if group_secret is not None:
                hashes[group] = group_secret
        fact["gshadowLines"] = _pairs(lines)
        if hashes:
            fact["groupPasswordHashes"] = hashes
    if fact.get("groupLines") is not None:
        fact["groupLines"] = _pairs(fact["groupLines"])
    return fact


def _pairs(lines: Mapping[str, str | None]) -> list[list[str | None]]:
    return [[group, line] for group, line in sorted(lines.items())]


def _user_for_rollback(before: Mapping[str, Any]) -> Mapping[str, Any]:
    """The account lines of a snapshot as rollback reads them (see :func:`_user_before`)."""
    if "error" in before:
        return before
    out = dict(before)
    if "userLine" in out:
        out["passwd"] = out.pop("userLine")
    for field in ("groupLines", "gshadowLines"):
        if isinstance(out.get(field), list):
            out[field] = {str(group): line for group, line in out[field]}
    lines = [out.get("passwd"), *(out.get("groupLines") or {}).values(),
             *(out.get("gshadowLines") or {}).values()]  # fmt: skip
    if MASK in lines:
        # Recorded by an earlier FazAI, whose journal masked these lines: writing "***"
        # into /etc/passwd would break the account, so it is left as it is, and said.
        return {"error": "its account lines were masked in the journal; left as it is"}
    return out


def tag_of(snapshot: Mapping[str, Any]) -> str:
    """The tag of the snapshot's transaction temp files (see operations.TEMP_TAG)."""
    return operations.tag_of(_objects(snapshot)) or operations.LEGACY_TAG


def errors(snapshot: Mapping[str, Any]) -> list[str]:
    """Objects whose previous state could not be read: apply must not touch them."""
    return [
        f"{o['kind']}/{o['name']}: {o['before']['error']}"
        for o in snapshot["objects"]
        if "error" in o["before"]
    ]


def _objects(snapshot: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if snapshot.get("format") != FORMAT:
        raise ValueError(f"not a Linux snapshot (format {snapshot.get('format')!r})")
    return list(snapshot["objects"])


def objects_of(snapshot: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The snapshot's objects as rollback reads them. A value still sealed (read from the
    journal and not opened with ``Journal.reveal``) reads as masked, never as file content
    or a hash."""
    out = []
    for record in _objects(snapshot):
        record = _unsealed(record)
        if record["kind"] == "User":
            record = {**record, "before": _user_for_rollback(record["before"])}
        out.append(record)
    return out


def _unsealed(value: Any) -> Any:
    if sealed.parse(value) is not None:
        return MASK
    if isinstance(value, Mapping):
        return {k: _unsealed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unsealed(v) for v in value]
    return value


def journal_records(snapshot: Mapping[str, Any]) -> list[tuple[str, str, str, Mapping[str, Any]]]:
    """(kind, name, key, before) per object, in recording order, for
    ``Journal.record_snapshot``."""
    return [(o["kind"], o["name"], o["key"], o["before"]) for o in _objects(snapshot)]


def from_journal(node: str, records: Iterable[Any]) -> dict[str, Any]:
    """A snapshot rebuilt from the journal's records (``store.Snapshot``: newest first,
    as ``Journal.snapshots`` returns them). Their escrowed secrets come back when each
    record's ``before`` was opened with ``Journal.reveal``; left sealed, they read as
    masked."""
    ordered = list(records)[::-1]
    objects = [
        {"kind": r.kind, "name": r.name, "key": r.key, "before": _before(r.before)} for r in ordered
    ]
    return {"format": FORMAT, "node": node, "objects": objects}


def _before(value: Mapping[str, Any] | None) -> dict[str, Any]:
    # None is the journal's "did not exist"; this provider always records a mapping
    return {"exists": False} if value is None else dict(value)
