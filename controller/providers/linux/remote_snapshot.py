"""Node side of apply: read the exact previous state of objects, and restore account lines.

Sent to the node and run as ``python3 -c SOURCE`` with a JSON request on standard input,
like remote_facts.py; importable so tests can run it locally. Standard library of Python
3.6 and later only (type comments, not annotations, for the same reason).

Two operations:

* ``gather``: everything a rollback needs to put each object back byte for byte (file
  contents, modes and numeric owners, the account lines of users, nft table text, sysctl
  values, package versions, unit states), for all objects of a transaction in one run.
  Read-only; per-object problems are reported in the answer, never raised.
* ``accounts``: replace, insert or remove the lines of one user and of named groups in
  /etc/passwd, /etc/shadow, /etc/group and /etc/gshadow, under the shadow-utils lock,
  each file replaced atomically with its mode and owner kept. Rollback of users uses it
  because useradd/usermod cannot reproduce a line exactly (member order, aging fields).
"""

# ruff: noqa: UP031, UP022, B905, RUF005
# (Python 3.6 on the node: no f-strings checks, no zip(strict=), old subprocess API.)

import base64
import errno
import fcntl
import grp
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from typing import Any  # noqa: F401 (used in type comments)

# Larger files cannot be snapshotted (apply refuses them); a request's "maxContent" (the
# node's maxFileBytes) raises or lowers it.
MAX_CONTENT = 16 * 1024 * 1024
ACCOUNT_FILES = ("/etc/group", "/etc/gshadow", "/etc/passwd", "/etc/shadow")


def run(argv, data=None):
    # type: (list[Any], bytes | None) -> tuple[int, str, str]
    try:
        proc = subprocess.run(
            argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return 127, "", str(exc)
    return (
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace").strip(),
    )


def host_facts():
    # type: () -> dict[str, Any]
    return {
        "packageManager": "dpkg"
        if shutil.which("dpkg-query")
        else ("rpm" if shutil.which("rpm") else None),
        "serviceManager": "systemd" if os.path.isdir("/run/systemd/system") else None,
        "nft": shutil.which("nft") is not None,
    }


def packages(names, manager):
    # type: (list[Any], str | None) -> dict[str, Any]
    if not names:
        return {}
    if manager != "dpkg":
        return {n: {"error": "package changes need dpkg/apt on the node"} for n in names}
    query = "${Package}\t${db:Status-Abbrev}\t${Version}\n"
    code, out, err = run(["dpkg-query", "-W", "-f", query])
    if code != 0:
        return {n: {"error": "dpkg-query failed: " + err[:300]} for n in names}
    seen = {}  # type: dict[str, Any]
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            seen[parts[0]] = (parts[1].strip(), parts[2])
    answer = {}
    for name in names:
        status, version = seen.get(name, ("", ""))
        installed = status.startswith("ii")
        answer[name] = {
            "exists": installed,
            "version": version if installed else None,
            # "rc" (removed, configuration kept) must come back as "rc", not as purged
            "status": status or None,
        }
    return answer


def owner_name(uid):
    # type: (int) -> str
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid):
    # type: (int) -> str
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def missing_dirs(path):
    # type: (str) -> list[Any]
    """The ancestors of ``path`` that do not exist, nearest the root first."""
    out = []  # type: list[str]
    parent = os.path.dirname(path)
    while parent and parent != "/" and not os.path.lexists(parent):
        out.insert(0, parent)
        parent = os.path.dirname(parent)
    return out


def file_state(path, max_content=MAX_CONTENT):
    # type: (str, int) -> dict[str, Any]
    missing = missing_dirs(path)
    try:
        info = os.lstat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return {"exists": False, "missingDirs": missing}
        return {"error": "cannot stat %s: %s" % (path, exc.strerror)}
    if stat.S_ISREG(info.st_mode):
        kind = "file"
    elif stat.S_ISDIR(info.st_mode):
        kind = "directory"
    elif stat.S_ISLNK(info.st_mode):
        kind = "symlink"
    else:
        kind = "other"
    fact = {  # type: dict[str, Any]
        "exists": True,
        "type": kind,
        "mode": "%04o" % stat.S_IMODE(info.st_mode),
        "uid": info.st_uid,
        "gid": info.st_gid,
        "owner": owner_name(info.st_uid),
        "group": group_name(info.st_gid),
        "missingDirs": [],
    }
    if kind != "file":
        return fact
    if info.st_size > max_content:
        fact["error"] = "%s is larger than %d bytes: too large to snapshot" % (path, max_content)
        return fact
    try:
        with open(path, "rb") as handle:
            fact["content"] = base64.b64encode(handle.read()).decode("ascii")
    except OSError as exc:
        fact["error"] = "cannot read %s: %s" % (path, exc.strerror)
    return fact


def read_lines(path):
    # type: (str) -> list[Any] | None
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            return handle.read().splitlines()
    except FileNotFoundError:
        return None


def line_for(lines, name):
    # type: (list[Any] | None, str) -> str | None
    for line in lines or []:
        if line.split(":", 1)[0] == name:
            return str(line)
    return None


def user_state(item, tables):
    # type: (dict[str, Any], dict[str, Any]) -> dict[str, Any]
    name = item["name"]
    passwd = line_for(tables["/etc/passwd"], name)
    groups = set(item.get("groups", []))
    groups.add(name)  # useradd may create the user's own group
    uid = gid = None
    if passwd is not None:
        fields = passwd.split(":")
        if len(fields) == 7:
            uid, gid = int(fields[2]), int(fields[3])
            for line in tables["/etc/group"] or []:
                gfields = line.split(":")
                if len(gfields) == 4 and (gfields[2] == str(gid) or name in gfields[3].split(",")):
                    groups.add(gfields[0])
    member_of = []
    for line in tables["/etc/group"] or []:
        gfields = line.split(":")
        if len(gfields) == 4 and name in gfields[3].split(","):
            member_of.append(gfields[0])
    fact = {  # type: dict[str, Any]
        "exists": passwd is not None,
        "passwd": passwd,
        "shadow": line_for(tables["/etc/shadow"], name),
        "groupLines": {g: line_for(tables["/etc/group"], g) for g in sorted(groups)},
        "gshadowLines": {g: line_for(tables["/etc/gshadow"], g) for g in sorted(groups)}
        if tables["/etc/gshadow"] is not None
        else None,
        "memberOf": sorted(member_of),
    }
    if passwd is not None and uid is not None:
        fields = passwd.split(":")
        fact.update(uid=uid, gid=gid, comment=fields[4], home=fields[5], shell=fields[6])
    return fact


def sysctl_state(name):
    # type: (str) -> dict[str, Any]
    path = "/proc/sys/" + name.replace(".", "/")
    try:
        with open(path) as handle:
            return {"exists": True, "value": " ".join(handle.read().split())}
    except FileNotFoundError:
        return {"error": "no such kernel parameter: " + name}
    except OSError as exc:
        return {"error": "cannot read %s: %s" % (name, exc.strerror)}


def nft_state(family, name, have_nft):
    # type: (str, str, bool) -> dict[str, Any]
    if not have_nft:
        return {"error": "nft is not installed on this node"}
    code, text, err = run(["nft", "list", "table", family, name])
    if code == 0:
        return {"exists": True, "text": text}
    if "No such file" in err:
        return {"exists": False}
    return {"error": "nft failed: " + err[:500]}


# What follows a transaction's prefix (".fazai-TAG-") in the names of its temp files:
# mktemp's six random characters, mkstemp's eight.
TEMP_SUFFIX = re.compile(r"^[A-Za-z0-9_]{6,8}$")
PREFIX = re.compile(r"^\.fazai-[a-z0-9]{4,32}-$")


def temp_files(directory, prefix, keep):
    # type: (str, str, list[Any]) -> list[Any]
    """This transaction's temp files left in ``directory`` by a step that was killed (a
    dropped connection, a timeout): they hold new content, and rollback removes them.
    Only names with the transaction's own prefix, and never a path in ``keep`` (the
    objects of the snapshot)."""
    if not PREFIX.match(prefix):
        return []
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    out = []
    for name in sorted(names):
        path = os.path.join(directory, name)
        if not (name.startswith(prefix) and TEMP_SUFFIX.match(name[len(prefix) :])):
            continue
        try:
            # A step still running removes its own temp file (its trap): gone is fine.
            regular = stat.S_ISREG(os.lstat(path).st_mode)
        except OSError:
            continue
        if regular and path not in keep:
            out.append(path)
    return out


def ruleset_state(have_nft):
    # type: (bool) -> dict[str, Any]
    """Every table, what an NftTable apply could touch beyond its own: its text (to
    recreate it, were it gone) and its declarations (to tell whether it changed)."""
    if not have_nft:
        return {"error": "nft is not installed on this node"}
    code, out, err = run(["nft", "list", "tables"])
    if code != 0:
        return {"error": "nft failed: " + err[:500]}
    tables = {}
    declarations = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) != 3 or parts[0] != "table":
            continue
        key = "%s %s" % (parts[1], parts[2])
        # -s: without counter values, which change all the time and are no configuration
        code, text, err = run(["nft", "-s", "list", "table", parts[1], parts[2]])
        if code != 0:
            return {"error": "nft failed: " + err[:500]}
        tables[key] = text
        # -t too: without set and map elements, which other programs (fail2ban, crowdsec,
        # the packet path, timeouts) change at any moment; a table "changed" only when
        # its chains, rules or object declarations did.
        # An nft without -t (before 0.9.1): that table is compared by existence only.
        code, text, err = run(["nft", "-s", "-t", "list", "table", parts[1], parts[2]])
        if code == 0:
            declarations[key] = text
    return {"exists": True, "tables": tables, "declarations": declarations}


def service_states(names, manager):
    # type: (list[Any], str | None) -> dict[str, Any]
    if not names:
        return {}
    if manager != "systemd":
        return {n: {"error": "unsupported on this node: no systemd"} for n in names}
    units = [n if "." in n else n + ".service" for n in names]
    code, out, err = run(
        ["systemctl", "show", "--no-pager", "-p", "Id,LoadState,ActiveState,UnitFileState", "--"]
        + units
    )
    if code != 0:
        return {n: {"error": "systemctl failed: " + err[:300]} for n in names}
    answer = {}
    for name, block in zip(names, out.strip().split("\n\n")):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        answer[name] = {
            "exists": props.get("LoadState") == "loaded",
            "running": props.get("ActiveState") == "active",
            "enabled": props.get("UnitFileState") in ("enabled", "enabled-runtime", "alias"),
        }
    return answer


def gather(request):
    # type: (dict[str, Any]) -> dict[str, Any]
    host = host_facts()
    tables = {path: read_lines(path) for path in ACCOUNT_FILES} if request.get("users") else {}
    limit = int(request.get("maxContent") or MAX_CONTENT)
    return {
        "host": host,
        "packages": packages(request.get("packages", []), host["packageManager"]),
        "files": {p: file_state(p, limit) for p in request.get("files", [])},
        "users": {u["name"]: user_state(u, tables) for u in request.get("users", [])},
        "sysctls": {k: sysctl_state(k) for k in request.get("sysctls", [])},
        "nft": {"%s %s" % (f, n): nft_state(f, n, host["nft"]) for f, n in request.get("nft", [])},
        "services": service_states(request.get("services", []), host["serviceManager"]),
        "nftRuleset": ruleset_state(host["nft"]) if request.get("nftRuleset") else None,
        "temps": [
            p
            for d in request.get("tempDirs", [])
            for p in temp_files(d, request.get("tempPrefix") or "", request.get("files", []))
        ],
    }


def replace_lines(path, wanted, prefix=".fazai-"):
    # type: (str, dict[str, Any], str) -> bool
    """Set the line of each name in ``wanted`` (None: remove it); atomic; True if changed."""
    lines = read_lines(path)
    if lines is None:
        if any(v is not None for v in wanted.values()):
            raise OSError("%s does not exist" % path)
        return False
    out = []
    placed = set()
    for line in lines:
        name = line.split(":", 1)[0]
        if name in wanted:
            if wanted[name] is not None and name not in placed:
                out.append(wanted[name])
            placed.add(name)
        else:
            out.append(line)
    for name in sorted(wanted):
        if name not in placed and wanted[name] is not None:
            out.append(wanted[name])
    if out == lines:
        return False
    info = os.stat(path)
    handle, temp = tempfile.mkstemp(prefix=prefix, dir=os.path.dirname(path))
    try:
        os.fchown(handle, info.st_uid, info.st_gid)
        os.fchmod(handle, stat.S_IMODE(info.st_mode))
        data = "".join(line + "\n" for line in out)
        os.write(handle, data.encode("utf-8", "surrogateescape"))
        os.fsync(handle)
        os.close(handle)
        handle = -1
        os.rename(temp, path)
    finally:
        if handle != -1:
            os.close(handle)
        if os.path.exists(temp):
            os.unlink(temp)
    return True


def accounts(request):
    # type: (dict[str, Any]) -> dict[str, Any]
    # The lock shadow-utils (lckpwdf) takes, so useradd and friends wait for us.
    with open("/etc/.pwd.lock", "a") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        changed = []
        # Groups before users: a restored passwd line may name a restored primary group.
        plan = (
            ("/etc/group", request.get("group") or {}),
            ("/etc/gshadow", request.get("gshadow") or {}),
            ("/etc/passwd", {request["user"]: request.get("passwd")}),
            ("/etc/shadow", {request["user"]: request.get("shadow")}),
        )
        prefix = request.get("tempPrefix") or ".fazai-"
        if not PREFIX.match(prefix):
            raise OSError("not a temp file prefix: %r" % prefix)
        for path, wanted in plan:
            if wanted and replace_lines(path, wanted, prefix):
                changed.append(path)
    return {"changed": changed}


def main():
    # type: () -> None
    request = json.loads(sys.stdin.read() or "{}")
    if request.get("op") == "accounts":
        try:
            answer = accounts(request)
        except OSError as exc:
            sys.stderr.write("cannot restore account lines: %s\n" % exc)
            sys.exit(1)
    else:
        answer = gather(request)
    sys.stdout.write(json.dumps(answer, sort_keys=True))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
