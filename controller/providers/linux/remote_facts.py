"""Gather every fact a node's desired state needs, in one process, and print JSON.

This file is sent to the node and run there as ``python3 -c SOURCE``, with the request
as JSON on standard input; it is also importable so tests can run it locally. It uses
only the standard library of Python 3.6 and later, never writes anything, and reports
per-item errors in the answer instead of failing the whole read.
"""

import base64
import contextlib
import grp
import hashlib
import json
import os
import pwd
import re
import select
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

# typing.Dict and friends, not dict[...]: this file must run on the Python 3.6 of old nodes.
Fact = Dict[str, Any]

MAX_CONTENT = 1024 * 1024  # files larger than this are compared by hash only

# A Goal's check runs with a fixed, minimal environment: what it reports must not depend
# on the login's locale, its PATH or the directory the fact read started in.
CHECK_ENV = {
    "LC_ALL": "C",
    "LANG": "C",
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}
CHECK_OUTPUT = 64 * 1024  # bytes of a check's standard output kept (stderr: none)
POLL_S = 0.05  # how often a running check is looked at between reads of its output


def run(argv: List[str], data: Optional[bytes] = None) -> Tuple[int, str, str]:
    try:
        proc = subprocess.run(
            argv,
            input=data,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return 127, "", str(exc)
    return (
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace").strip(),
    )


def host_facts() -> Fact:
    release = {}  # type: Dict[str, str]
    try:
        with open("/etc/os-release") as handle:
            for line in handle:
                key, sep, value = line.strip().partition("=")
                if sep:
                    release[key] = value.strip('"')
    except OSError:
        pass
    return {
        "hostname": os.uname()[1],
        "os": release.get("ID", "unknown"),
        "os_version": release.get("VERSION_ID", ""),
        "package_manager": "dpkg"
        if shutil.which("dpkg-query")
        else ("rpm" if shutil.which("rpm") else None),
        "service_manager": "systemd" if os.path.isdir("/run/systemd/system") else None,
        "uid": os.getuid(),
    }


def packages(names: List[str], manager: Optional[str]) -> Fact:
    wanted = set(names)
    found = {}  # type: Dict[str, str]
    if manager == "dpkg":
        code, out, err = run(
            ["dpkg-query", "-W", "-f", "${db:Status-Abbrev}\t${Package}\t${Version}\n"]
        )
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == 3 and parts[0].startswith("ii") and parts[1] in wanted:
                found[parts[1]] = parts[2]
    elif manager == "rpm":
        code, out, err = run(["rpm", "-qa", "--qf", "%{NAME}\t%{VERSION}-%{RELEASE}\n"])
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == 2 and parts[0] in wanted:
                found[parts[0]] = parts[1]
    else:
        return {"error": "no supported package manager (dpkg or rpm) on this node"}
    if code != 0:
        return {"error": "package query failed: " + err[:500]}
    return {"installed": found}


def owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def file_fact(item: Fact) -> Fact:
    path = item["path"]
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return {"exists": False}
    except OSError as exc:
        return {"error": "cannot stat: " + str(exc.strerror)}
    fact = {
        "exists": True,
        "type": "file"
        if stat.S_ISREG(info.st_mode)
        else "directory"
        if stat.S_ISDIR(info.st_mode)
        else "symlink"
        if stat.S_ISLNK(info.st_mode)
        else "other",
        "mode": "%04o" % stat.S_IMODE(info.st_mode),
        "owner": owner_name(info.st_uid),
        "group": group_name(info.st_gid),
        "size": info.st_size,
    }
    if fact["type"] != "file":
        return fact
    digest = hashlib.sha256()
    head = b""
    try:
        with open(path, "rb") as handle:
            while True:
                chunk = handle.read(1 << 16)
                if not chunk:
                    break
                digest.update(chunk)
                if len(head) <= MAX_CONTENT:
                    head += chunk
    except OSError as exc:
        fact["error"] = "cannot read: " + str(exc.strerror)
        return fact
    fact["sha256"] = digest.hexdigest()
    # Content travels only when it differs and may be shown: it feeds the plan's diff.
    if (
        item.get("want_content")
        and fact["sha256"] != item.get("sha256")
        and len(head) <= MAX_CONTENT
    ):
        fact["content_b64"] = base64.b64encode(head).decode("ascii")
    return fact


def user_fact(name: str) -> Fact:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return {"exists": False}
    groups = sorted(g.gr_name for g in grp.getgrall() if name in g.gr_mem)
    return {
        "exists": True,
        "uid": entry.pw_uid,
        "gid": entry.pw_gid,
        "group": group_name(entry.pw_gid),
        "home": entry.pw_dir,
        "shell": entry.pw_shell,
        "comment": entry.pw_gecos,
        "groups": groups,
    }


def sysctl_fact(key: str, persisted: Dict[str, str]) -> Fact:
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        with open(path) as handle:
            value = handle.read()
    except FileNotFoundError:
        error = "no such kernel parameter"
    except OSError as exc:
        error = "cannot read: " + str(exc.strerror)
    else:
        return {"value": " ".join(value.split()), "persisted": persisted.get(key)}
    fact = {"error": error}  # type: Fact
    if key in persisted:
        # an absent Sysctl takes the key out of the file all the same
        fact["persisted"] = persisted[key]
    return fact


def persisted_sysctls(path: str) -> Dict[str, str]:
    found = {}  # type: Dict[str, str]
    try:
        with open(path) as handle:
            for line in handle:
                line = line.strip()
                if not line or line[0] in "#;":
                    continue
                key, sep, value = line.partition("=")
                if sep:
                    found[key.strip().replace("/", ".")] = " ".join(value.split())
    except OSError:
        pass
    return found


def nft_table(item: Fact) -> Fact:
    family, name = item["family"], item["name"]
    if not shutil.which("nft"):
        return {"error": "nft is not installed on this node"}
    code, text, err = run(["nft", "list", "table", family, name])
    fact = {"exists": code == 0}  # type: Fact
    if code == 0:
        fact["text"] = text
        code, out, err = run(["nft", "-j", "list", "table", family, name])
        fact["json"] = json.loads(out) if code == 0 and out.strip() else None
    elif "No such file" not in err:
        return {"error": "nft failed: " + err[:500]}
    if item.get("definition") is not None:
        fact["desired"] = canonical_table(family, name, item["definition"], node_table_names())
    return fact


FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")
# Table names nft reads unquoted; only these can be seeded (nft takes no quoted ones).
SEED_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SEED = (
    "table %s %s {\nset fazai_seed {\ntype mark\nelements = { 1 }\n}\n"
    "chain fazai_seed {\ncounter\n}\n}\n"
)


def node_table_names() -> List[str]:
    """The names of the node's tables (read-only): the namespace check seeds them."""
    code, out, _ = run(["nft", "list", "tables"])
    if code != 0:
        return []
    return [p[2] for p in (line.split() for line in out.splitlines()) if len(p) == 3]


def seed_tables(family: str, name: str, names: List[str]) -> List[Tuple[str, str]]:
    """Stand-ins for every table the load could touch beyond its own: each name the node
    has and the target's name, in every family (the target itself excepted)."""
    wanted = sorted({n for n in [*names, name] if SEED_NAME.match(n)})
    return [(f, n) for f in FAMILIES for n in wanted if (f, n) != (family, name)]


def write_seeds(directory: str, seeds: List[Tuple[str, str]]) -> None:
    """FAMILY.all with every stand-in of a family, and FAMILY.N.one with each alone."""
    for family in FAMILIES:
        mine = [SEED % seed for seed in seeds if seed[0] == family]
        if not mine:
            continue
        with open(os.path.join(directory, family + ".all"), "w") as handle:
            handle.write("".join(mine))
        for index, text in enumerate(mine):
            with open(os.path.join(directory, "%s.%d.one" % (family, index)), "w") as handle:
                handle.write(text)


def canonical_table(family: str, name: str, definition: str, node_names: List[str]) -> Fact:
    """Let nft itself format the desired table, in a throwaway network namespace.

    Comparing nft's own rendering of both sides makes formatting, comments and
    ordering of the source irrelevant, and it checks the syntax without touching the
    node's live ruleset. It is also where a definition that escapes its table (the
    controller's own check missed it) is caught: the namespace is seeded with a
    stand-in for each table the node has, and the target's name in every other family;
    after the load every stand-in must be there unchanged (no ``flush ruleset``, no
    ``delete table``, nothing added to them) and nft's echo of the load must name only
    the target table (no other table created, even one deleted again).
    """
    seeds = seed_tables(family, name, node_names)
    with tempfile.NamedTemporaryFile("w", suffix=".nft", delete=False) as handle:
        handle.write("table %s %s {\n%s\n}\n" % (family, name, definition))
        source = handle.name
    seed_dir = tempfile.mkdtemp(prefix="fazai-seeds-")
    write_seeds(seed_dir, seeds)
    try:
        # Each family's stand-ins in one load; where that fails (a kernel without that
        # family, a name nft reads as a keyword) one by one, skipping those nft refuses:
        # the check compares the ruleset before and after, whatever was seeded.
        script = (
            'for f in "$4"/*.all; do nft -f "$f" 2>/dev/null'
            ' || for s in "${f%.all}".*.one; do nft -f "$s" 2>/dev/null; done; done;'
            ' nft -j -s list ruleset || exit 3; echo "@@echo@@"'
            ' && nft --echo -j -f "$1" || exit 1; echo "@@after@@"; nft -j -s list ruleset'
            ' && echo "@@text@@" && nft list table "$2" "$3"'
            ' && echo "@@json@@" && nft -j list table "$2" "$3"'
        )
        argv = ["unshare", "--net", "sh", "-c", script, "sh", source, family, name, seed_dir]
        code, out, err = run(argv)
    finally:
        os.unlink(source)
        shutil.rmtree(seed_dir, ignore_errors=True)
    if code == 3:
        return {"error": "cannot prepare nft's namespace check: " + err[:300]}
    seeded, marked, rest = out.partition("@@echo@@\n")
    if not marked or "@@after@@\n" not in rest:
        return {"error": "nft rejects the definition: " + nft_errors(err, source)[:1000]}
    echo, _, rest = rest.partition("@@after@@\n")
    after, _, rest = rest.partition("@@text@@\n")
    problem = escape(family, name, seeded, echo, after)
    if problem is not None:
        return {"error": "the definition is not one table's body: " + problem}
    if code != 0:
        return {"error": "nft rejects the definition: " + nft_errors(err, source)[:1000]}
    text, _, body = rest.partition("@@json@@\n")
    return {"text": text, "json": json.loads(body) if body.strip() else None}


def escape(family: str, name: str, seeded: str, echo: str, after: str) -> Optional[str]:
    """What the load did beyond its table, from nft's JSON: the ruleset before (only the
    stand-ins), the echo of the load, the ruleset after; None when nothing."""
    try:
        before_items = objects_of(seeded)
        echoed = [
            (verb, kind, body)
            for command in objects_of(echo)
            for verb, objects in command.items()
            if isinstance(objects, dict)
            for kind, body in objects.items()
        ]
        after_items = objects_of(after)
    except ValueError:
        return "nft's account of the load cannot be read"
    target = (family, name)
    for _verb, kind, body in echoed:
        owner = table_of(kind, body)
        if owner is None:
            return "loading it acts on the whole ruleset"
        if owner != target:
            return "loading it acts on table %s %s" % owner
    others = [i for i in after_items if owner_of(i) != target]
    if others != before_items:
        gone = sorted(describe(i) for i in before_items if "table" in i and i not in others)
        if gone:
            return "loading it removes the tables " + ", ".join(gone)
        return "loading it changes tables other than %s %s" % target
    if not any(owner_of(i) == target for i in after_items):
        return "loading it leaves no table %s %s" % target
    return None


def owner_of(item: Dict[str, Any]) -> Optional[Tuple[str, str]]:
    for kind, body in item.items():
        return table_of(kind, body)
    return None


def describe(item: Dict[str, Any]) -> str:
    owner = owner_of(item)
    return "%s %s" % owner if owner is not None else "(the ruleset)"


def objects_of(text: str) -> List[Dict[str, Any]]:
    """The ruleset objects (or echoed commands) of nft's JSON, metainfo left out."""
    if not text.strip():
        return []
    items = json.loads(text).get("nftables", [])
    return [i for i in items if isinstance(i, dict) and "metainfo" not in i]


def table_of(kind: str, body: Any) -> Optional[Tuple[str, str]]:
    """The (family, table) an nft JSON object or command names; None for the ruleset."""
    if not isinstance(body, dict):
        return None
    if kind == "table":
        return (str(body.get("family")), str(body.get("name")))
    if "table" in body:
        return (str(body.get("family")), str(body.get("table")))
    return None


def nft_errors(err: str, source: str) -> str:
    """nft's complaints about the definition, without what it quotes from other files.

    nft follows each error with the offending input line and a caret line. Lines of the
    definition itself are the user's own text; lines of any other file (an ``include``
    the controller's check did not stop) are the node's, possibly a secret: dropped.
    """
    out = []  # type: List[str]
    quoting = False  # the lines after an error header belong to its location
    for line in err.splitlines():
        if line.startswith("Error: "):
            out.append(line)  # nft's own words, no input quoted
            quoting = False
            continue
        if line.startswith("In file included from"):
            out.append("(included from a file on the node)")
            quoting = False
            continue
        header = ": Error: " in line or ": Warning: " in line
        if header:
            location, _, message = line.partition(": ")
            quoting = location.startswith(source + ":")
            if quoting:
                out.append("definition" + location[len(source) :] + ": " + message)
            else:
                out.append("(a file on the node): " + message.split(": ", 1)[0] + ": not shown")
            continue
        if quoting:
            out.append(line)
    return "\n".join(out) if out else "(no message)"


def services(names: List[str], manager: Optional[str]) -> Fact:
    if manager != "systemd":
        return {"error": "no systemd on this node: services are unsupported here"}
    units = [n if "." in n else n + ".service" for n in names]
    code, out, err = run(
        [
            "systemctl",
            "show",
            "--no-pager",
            "-p",
            "Id,LoadState,ActiveState,UnitFileState",
            "--",
            *units,
        ]
    )
    if code != 0:
        return {"error": "systemctl failed: " + err[:500]}
    found = {}  # type: Dict[str, Fact]
    for name, block in zip(names, out.strip().split("\n\n")):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        found[name] = {
            "exists": props.get("LoadState") == "loaded",
            "running": props.get("ActiveState") == "active",
            "enabled": props.get("UnitFileState")
            in ("enabled", "enabled-runtime", "static", "alias"),
        }
    return {"units": found}


def run_check(item: Fact, limit: Optional[float] = None) -> Fact:
    """Run one Goal check: ``item["argv"]`` without a shell, within ``item["timeout"]``
    seconds (or ``limit``, the time left of the node's check budget, when less).

    The answer is {"exit", "stdout", "truncated"}, {"timed_out": true, "timeout"} or
    {"error"}; whether that passes is decided by the controller. The check runs in a
    session of its own, so that a timeout kills everything it started (its process
    group), and whatever of the group outlives it is killed when it exits: a probe
    leaves nothing running. Both pipes are read as long as it runs, the first
    CHECK_OUTPUT bytes of standard output kept and the rest (and all of standard error)
    discarded: a program that prints much more still runs on to its own exit status
    instead of blocking on a full pipe (the timeout bounds how long that takes).
    """
    argv = item.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        return {"error": "not a command (argv must be a list of strings)"}
    timeout = float(item.get("timeout", 10))
    parent = os.getpid()
    budgeted = limit is not None and limit < timeout
    if budgeted:
        timeout = max(0.0, float(limit))  # type: ignore[arg-type]
    try:
        proc = subprocess.Popen(
            argv,
            shell=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=CHECK_ENV,
            cwd="/",
            close_fds=True,
            start_new_session=True,
            preexec_fn=lambda: prepare_check(parent),
        )
    except FileNotFoundError:
        return {"error": "no such program: " + argv[0]}
    except PermissionError:
        return {"error": "permission denied: " + argv[0]}
    except OSError as exc:
        return {"error": "cannot run " + argv[0] + ": " + str(exc.strerror)}
    assert proc.stdout is not None and proc.stderr is not None
    RUNNING["group"] = proc.pid
    deadline = time.monotonic() + timeout
    kept = bytearray()
    produced = 0

    def take(key: Any) -> None:
        nonlocal produced, kept
        chunk = os.read(key.fd, 65536)
        if not chunk:
            selector.unregister(key.fileobj)
        elif key.fileobj is proc.stdout:
            produced += len(chunk)
            if len(kept) < CHECK_OUTPUT:
                kept += chunk[: CHECK_OUTPUT - len(kept)]

    selector = selectors.DefaultSelector()
    try:
        for pipe in (proc.stdout, proc.stderr):
            selector.register(pipe, selectors.EVENT_READ)
        done = False
        # Until the program exits or the time is out. Its exit is seen without reaping
        # it, so that its id (its group's) stays reserved for the kill below; the pipes
        # may stay open after it (held by something it started), so they are not waited
        # for, only drained of what is already in them.
        while not done and time.monotonic() < deadline:
            left = deadline - time.monotonic()
            if selector.get_map():
                for key, _ in selector.select(min(left, POLL_S)):
                    take(key)
            else:
                time.sleep(min(left, POLL_S / 5))
            done = exited(proc.pid)
        while done and selector.get_map():
            ready = selector.select(0)
            if not ready or time.monotonic() >= deadline:
                break
            for key, _ in ready:
                take(key)
        # Everything of the group goes: on a timeout the program itself, else whatever
        # it started and left behind. A probe leaves nothing running.
        kill_group(proc.pid)
        RUNNING["group"] = None  # before the reap: its id may be reused after it
        proc.wait()
    finally:
        selector.close()
        proc.stdout.close()
        proc.stderr.close()
    if not done:
        answer = {"timed_out": True, "timeout": round(timeout, 2)}  # type: Fact
        if budgeted:
            answer["budget"] = True
        return answer
    return {
        "exit": proc.returncode,
        "stdout": bytes(kept).decode("utf-8", "replace"),
        "truncated": produced > CHECK_OUTPUT,
    }


# A check's memory (address space) and CPU time: a probe that explodes (jq building a
# string of 2^34 bytes) fails alone instead of pushing the node into the OOM killer.
CHECK_MEMORY = 1024 * 1024 * 1024
CHECK_CPU_S = 31


def _libc() -> Any:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True)
    except Exception:
        return None


LIBC = _libc()  # loaded once, here: a child between fork and exec should do little


def die_with_parent(parent: Optional[int] = None) -> None:
    """In a child of this fact process: be killed when it dies, however it dies (SIGKILL
    included), so nothing it starts outlives the read (Linux prctl PR_SET_PDEATHSIG;
    elsewhere the group kills and the watchdog remain). ``parent``: its pid, to catch a
    death between the fork and the prctl."""
    if LIBC is not None:
        with contextlib.suppress(Exception):
            LIBC.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def prepare_check(parent: int) -> None:
    """Before a check's program runs: dies with the read, bounded memory and CPU."""
    die_with_parent(parent)
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (CHECK_MEMORY, CHECK_MEMORY))
        resource.setrlimit(resource.RLIMIT_CPU, (CHECK_CPU_S, CHECK_CPU_S))
    except (ImportError, ValueError, OSError):
        pass


def exited(pid: int) -> bool:
    """Whether the child ``pid`` has ended, leaving it to be reaped (waitid WNOWAIT)."""
    try:
        state = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return state is not None


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # none of it is left
        os.killpg(pgid, signal.SIGKILL)


def checks(items: List[Fact], budget: float, started: Optional[float] = None) -> List[Fact]:
    """Run the checks in order within ``budget`` seconds, counted from ``started`` (the
    start of the fact read; now when None): each gets at most the time left, and those
    after the budget is spent are not run. The budget keeps the whole read within the
    node's command timeout, whatever the checks' own timeouts add up to."""
    if started is None:
        started = time.monotonic()
    out = []  # type: List[Fact]
    for item in items:
        left = budget - (time.monotonic() - started)
        if left <= 0:
            out.append({"error": "not run: the node's check time budget (%gs) is spent" % budget})
            continue
        answer = run_check(item, left)
        out.append(judge_output(item, answer, budget - (time.monotonic() - started)))
    return out


def judge_output(item: Fact, answer: Fact, seconds: float = 10.0) -> Fact:
    """Replace a check's output with the answers to what its goal asks of it ("contains":
    a text in it; "matches": a regular expression searched in it, multiline): the
    output never leaves the node (a probe's output can hold secrets). The search runs
    in a child killed after ``seconds`` (what is left of the check budget): a pattern
    that backtracks for ever fails its check instead of stalling the read."""
    if "stdout" not in answer:
        return answer
    stdout = answer.pop("stdout")
    keep = item.get("keepOutput")
    if keep:
        # Only the agent's probes ask for it (never a goal's checks): the controller
        # masks it before any prompt or log sees it.
        answer["output"] = stdout[: int(keep)]
    if item.get("contains") is not None:
        answer["contains"] = str(item["contains"]) in stdout
    if item.get("matches") is not None:
        found = search_within(str(item["matches"]), stdout, seconds)
        if found == "error":
            return {"error": "this node's Python cannot compile the expected pattern"}
        if found == "late":
            return {"error": "matching the expected pattern ran out of the check time budget"}
        answer["matches"] = found == "yes"
    return answer


def search_within(pattern: str, text: str, seconds: float) -> str:
    """re.search(pattern, text, MULTILINE) in a forked child given ``seconds``: "yes",
    "no", "error" (the pattern does not compile here) or "late" (killed)."""
    parent = os.getpid()
    try:
        read_end, write_end = os.pipe()
        pid = os.fork()
    except OSError:
        return "late"  # no process to search in (the node is out of them): not judged
    if pid == 0:  # the child: answer one byte, never return into the caller's code
        code = b"e"
        try:
            die_with_parent(parent)
            os.close(read_end)
            # Not the SSH channel, nor the request: the child only answers its byte.
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            code = b"y" if re.search(pattern, text, re.MULTILINE) else b"n"
        except BaseException:
            pass
        finally:
            try:
                os.write(write_end, code)
            finally:
                os._exit(0)
    os.close(write_end)
    RUNNING["search"] = pid
    got = b""
    try:
        ready, _, _ = select.select([read_end], [], [], max(0.0, seconds))
        if ready:
            got = os.read(read_end, 1)
    finally:
        os.close(read_end)
        if not got:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        RUNNING["search"] = None
        os.waitpid(pid, 0)
    return {b"y": "yes", b"n": "no", b"e": "error"}.get(got, "late")


def gather(request: Fact) -> Fact:
    started = time.monotonic()
    host = host_facts()
    answer = {"host": host}  # type: Fact
    if request.get("packages"):
        answer["packages"] = packages(request["packages"], host["package_manager"])
    answer["files"] = [file_fact(item) for item in request.get("files", [])]
    answer["users"] = {name: user_fact(name) for name in request.get("users", [])}
    persisted = persisted_sysctls(request.get("sysctl_file", "/etc/sysctl.d/99-fazai.conf"))
    answer["sysctls"] = {key: sysctl_fact(key, persisted) for key in request.get("sysctls", [])}
    answer["nft"] = [nft_table(item) for item in request.get("nft", [])]
    if request.get("services"):
        answer["services"] = services(request["services"], host["service_manager"])
    if request.get("checks"):
        # Last, and on what is left of the budget: the other facts are read first.
        budget = float(request.get("check_budget", 45))
        answer["checks"] = checks(request["checks"], budget, started)
    return answer


# The process group of the check running now and the pattern search's child (None:
# none), for the watchdog.
RUNNING = {"group": None, "search": None}  # type: Dict[str, Optional[int]]


def watchdog(seconds: float) -> None:
    """End this process after ``seconds``, the check running then with it (its own
    session would outlive us): the controller gave up on the read at that point."""

    def expire(signum: int, frame: Any) -> None:
        group, search = RUNNING["group"], RUNNING["search"]
        if group is not None:
            kill_group(group)
        if search is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(search, signal.SIGKILL)
        os._exit(124)

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(0.1, seconds))


def main() -> None:
    request = json.loads(sys.stdin.read() or "{}")
    if request.get("watchdog"):
        watchdog(float(request["watchdog"]))
    sys.stdout.write(json.dumps(gather(request), sort_keys=True))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
