"""Snapshots of a Linux transaction: the previous state of every object it touches.

A snapshot is plain JSON, so the engine can keep it in the journal and a controller
restarted after a crash can roll back from it alone::

    {"format": "fazai.linux.snapshot/1", "node": "web-1",
     "objects": [{"kind": "File", "name": "motd", "key": "/etc/motd",
                  "before": {"exists": true, "content": "<base64>", "mode": "0644",
                             "uid": 0, "gid": 0, ...}}, ...]}

``objects`` are in the order the transaction touches them; rollback restores them in
reverse. ``before`` is always a mapping with ``exists`` (absent objects still carry what
their rollback needs, e.g. the directories apply will create for a file).

Secrets: password hashes of accounts and the content of ``sensitive`` files are kept
under secret-named fields (``passwordHash``, ``groupPasswordHashes``, ``secretContent``),
which the state store masks. Rolled back from the journal, such a value is gone: the
account keeps the hash the node has now, the file keeps its content; rollback says so.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

from controller.providers.linux import operations
from controller.providers.linux.operations import SYSCTL_FILE, Target

FORMAT = "fazai.linux.snapshot/1"


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
    for record in objects:
        kind, key, before = record["kind"], record["key"], record["before"]
        if kind == "Package":
            request["packages"].append(key)
        elif kind == "File" or (kind == "Sysctl" and key.startswith("/")):
            request["files"].append(key)
        elif kind == "User":
            groups = sorted((before.get("groupLines") or {}).keys())
            request["users"].append({"name": key, "groups": groups})
        elif kind == "Sysctl":
            request["sysctls"].append(key)
        elif kind == "NftTable":
            request["nft"].append(key.split(" ", 1))
        elif kind == "Service":
            request["services"].append(key)
    return request


_SECTIONS = {
    "Package": "packages",
    "File": "files",
    "User": "users",
    "Sysctl": "sysctls",
    "NftTable": "nft",
    "Service": "services",
}


def build(node: str, targets: Sequence[Target], answer: Mapping[str, Any]) -> dict[str, Any]:
    """The snapshot of ``targets`` from the gather answer, objects in apply order."""
    objects: list[dict[str, Any]] = []
    sysctl_names: list[str] = []
    for target in operations.ordered(targets):
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
    return {"format": FORMAT, "node": node, "objects": objects}


def _user_before(fact: dict[str, Any]) -> dict[str, Any]:
    if "error" in fact:
        return fact
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
        fact["gshadowLines"] = lines
        if hashes:
            fact["groupPasswordHashes"] = hashes
    return fact


def errors(snapshot: Mapping[str, Any]) -> list[str]:
    """Objects whose previous state could not be read: apply must not touch them."""
    return [
        f"{o['kind']}/{o['name']}: {o['before']['error']}"
        for o in snapshot["objects"]
        if "error" in o["before"]
    ]


def objects_of(snapshot: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if snapshot.get("format") != FORMAT:
        raise ValueError(f"not a Linux snapshot (format {snapshot.get('format')!r})")
    return list(snapshot["objects"])


def journal_records(snapshot: Mapping[str, Any]) -> list[tuple[str, str, str, Mapping[str, Any]]]:
    """(kind, name, key, before) per object, in recording order, for
    ``Journal.record_snapshot``."""
    return [(o["kind"], o["name"], o["key"], o["before"]) for o in objects_of(snapshot)]


def from_journal(node: str, records: Iterable[Any]) -> dict[str, Any]:
    """A snapshot rebuilt from the journal's records (``store.Snapshot``: newest first,
    as ``Journal.snapshots`` returns them)."""
    ordered = list(records)[::-1]
    objects = [
        {"kind": r.kind, "name": r.name, "key": r.key, "before": _before(r.before)} for r in ordered
    ]
    return {"format": FORMAT, "node": node, "objects": objects}


def _before(value: Mapping[str, Any] | None) -> dict[str, Any]:
    # None is the journal's "did not exist"; this provider always records a mapping
    return {"exists": False} if value is None else dict(value)
