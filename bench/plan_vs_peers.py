#!/usr/bin/env python3
"""Drift detection on a real fleet: `fazai plan` against `pyinfra --dry` and
`ansible-playbook --check`.

Starts its own fleet of real OpenSSH nodes (controller.testing.fleet), gives
every node the same mix of in-sync and drifted state (packages, files, users,
sysctls), writes an equivalent desired state for each tool, times each tool on
the same fleet, checks that each one succeeded *and* reported the drift, and
prints a table.  Results go to bench/results/plan_vs_peers.json.

    python bench/plan_vs_peers.py [--nodes 10] [--resources 30] [--skip-ansible]

Needs root (network namespaces), pyinfra 3.x and ansible-core on PATH.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from controller.testing.fleet import Fleet, NodeSpec, fleet_available  # noqa: E402

RESULTS = REPO / "bench" / "results" / "plan_vs_peers.json"
SYSCTL_FILE = "/etc/sysctl.d/99-fazai.conf"  # where fazai looks for persisted values
FILE_DIR = "/etc/bench"

# --------------------------------------------------------------------------
# the resources every node gets (one list, rendered for each tool)


@dataclass
class Pkg:
    name: str
    present: bool
    drift: bool  # True: the node will not be as desired


@dataclass
class File:
    path: str
    content: str
    mode: str
    owner: str
    group: str
    drift: str | None  # None (in sync), "content", "mode" or "missing"


@dataclass
class User:
    name: str
    present: bool
    drift: str | None  # None, "missing", "shell" or "exists" (present=False)
    uid: int = 0
    shell: str = "/bin/bash"
    home: str = ""


@dataclass
class Sysctl:
    key: str
    value: int
    drift: bool
    live: int | None = None  # what the node holds when drifted


@dataclass
class Resources:
    packages: list[Pkg] = field(default_factory=list)
    files: list[File] = field(default_factory=list)
    users: list[User] = field(default_factory=list)
    sysctls: list[Sysctl] = field(default_factory=list)

    def count(self) -> int:
        return len(self.packages) + len(self.files) + len(self.users) + len(self.sysctls)

    def drifted(self) -> int:
        return (
            sum(p.drift for p in self.packages)
            + sum(f.drift is not None for f in self.files)
            + sum(u.drift is not None for u in self.users)
            + sum(s.drift for s in self.sysctls)
        )


def file_content(i: int) -> str:
    return f"# managed by bench/plan_vs_peers.py\nsetting_{i} = {i * 7}\nenabled = true\n"


def build_resources(minimum: int) -> Resources:
    r = Resources()
    # Packages: installed on the host (the nodes' root is a CoW copy of it) or
    # not installed, but available in the apt lists (ansible's check mode asks).
    for name in ("openssh-server", "coreutils", "bash", "curl", "git", "less", "grep"):
        r.packages.append(Pkg(name, True, False))
    for name in ("hello", "tree"):  # wanted, not installed
        r.packages.append(Pkg(name, True, True))
    for name in ("telnetd", "nginx", "apache2", "rsh-server"):  # unwanted, not installed
        r.packages.append(Pkg(name, False, False))
    r.packages.append(Pkg("wget", False, True))  # unwanted, installed
    # Files.
    drifts: list[str | None] = [None, None, None, None, None, "content", "mode", "missing"]
    for i, drift in enumerate(drifts):
        r.files.append(
            File(f"{FILE_DIR}/app-{i:02d}.conf", file_content(i), "0640", "root", "root", drift)
        )
    # Users.
    for i in range(1, 4):
        r.users.append(
            User(f"bench-app{i}", True, None, 3000 + i, "/bin/bash", f"/home/bench-app{i}")
        )
    r.users.append(User("bench-app4", True, "missing", 3004, "/bin/bash", "/home/bench-app4"))
    r.users.append(User("bench-app5", True, "shell", 3005, "/bin/bash", "/home/bench-app5"))
    r.users.append(User("bench-old1", False, None))
    r.users.append(User("bench-old2", False, None))
    r.users.append(User("bench-old3", False, "exists", 3103, "/bin/sh", "/home/bench-old3"))
    # Sysctls: all per network namespace, so each node has its own.
    r.sysctls += [
        Sysctl("net.ipv4.tcp_syncookies", 1, False),
        Sysctl("net.ipv4.conf.all.accept_redirects", 0, False),
        Sysctl("net.ipv4.conf.default.accept_redirects", 0, False),
        Sysctl("net.ipv4.icmp_echo_ignore_broadcasts", 1, False),
        Sysctl("net.ipv4.conf.all.log_martians", 1, False),
        Sysctl("net.ipv4.ip_forward", 0, True, live=1),
        Sysctl("net.ipv4.conf.all.send_redirects", 0, True, live=1),
        Sysctl("net.ipv4.conf.all.rp_filter", 1, True, live=0),
    ]
    # Pad with more in-sync files up to the requested count.
    i = len(r.files)
    while r.count() < minimum:
        r.files.append(
            File(f"{FILE_DIR}/extra-{i:02d}.conf", file_content(i), "0644", "root", "root", None)
        )
        i += 1
    return r


# --------------------------------------------------------------------------
# putting the nodes in the starting state, by hand


def prepare_script(r: Resources) -> str:
    q = shlex.quote
    lines = ["set -e", f"mkdir -p {FILE_DIR}"]
    for p in r.packages:
        installed = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", p.name], capture_output=True, text=True
        ).stdout
        want_installed = p.present != p.drift
        if ("install ok installed" in installed) != want_installed:
            raise SystemExit(
                f"package {p.name}: the host (the nodes' lower layer) "
                f"must {'' if want_installed else 'not '}have it installed"
            )
    for f in r.files:
        if f.drift == "missing":
            lines.append(f"rm -f {q(f.path)}")
            continue
        content = f.content + ("local edit\n" if f.drift == "content" else "")
        mode = "0666" if f.drift == "mode" else f.mode
        lines.append(f"printf '%s' {q(content)} > {q(f.path)}")
        lines.append(f"chmod {mode} {q(f.path)} && chown {f.owner}:{f.group} {q(f.path)}")
    for u in r.users:
        exists = (u.present and u.drift != "missing") or (not u.present and u.drift == "exists")
        lines.append(f"userdel -r {u.name} >/dev/null 2>&1 || true")
        if exists:
            shell = "/bin/sh" if u.drift == "shell" else u.shell
            lines.append(f"useradd -m -u {u.uid} -s {shell} -d {u.home} {u.name}")
    persisted = []
    for s in r.sysctls:
        value = s.live if s.drift else s.value
        lines.append(f"sysctl -qw {s.key}={value}")
        persisted.append(f"{s.key} = {value}")
    lines.append(f"printf '%s\\n' {' '.join(q(p) for p in persisted)} > {SYSCTL_FILE}")
    return "\n".join(lines) + "\n"


def prepare_nodes(fleet: Fleet, r: Resources) -> None:
    script = prepare_script(r)
    with ThreadPoolExecutor(len(fleet.nodes)) as pool:
        list(pool.map(lambda n: n.run(script, timeout=120), fleet.nodes.values()))
    # Check on one node that the starting state is what we meant.
    node = next(iter(fleet.nodes.values()))
    for s in r.sysctls:
        got = node.run(f"sysctl -n {s.key}").stdout.decode().strip()
        want = str(s.live if s.drift else s.value)
        if got != want:
            raise SystemExit(f"{node.name}: {s.key} is {got}, could not set {want}")


# --------------------------------------------------------------------------
# desired state for each tool


def write_fazai(fleet: Fleet, r: Resources, folder: Path) -> Path:
    folder.mkdir(parents=True)
    docs: list[dict[str, Any]] = []
    for node in fleet.nodes.values():
        docs.append(
            {
                "apiVersion": "fazai.dev/v1alpha1",
                "kind": "Node",
                "metadata": {"name": node.name, "labels": {"fleet": "bench"}},
                "spec": {
                    "platform": "linux",
                    "address": node.address,
                    "user": "root",
                    "auth": {"privateKeyFile": str(fleet.private_key_file)},
                    "knownHostsFile": str(fleet.known_hosts_file),
                },
            }
        )
    target = {"matchLabels": {"fleet": "bench"}}

    def res(kind: str, doc_name: str, **spec: Any) -> None:
        docs.append(
            {
                "apiVersion": "fazai.dev/v1alpha1",
                "kind": kind,
                "metadata": {"name": doc_name},
                "spec": {"target": target, **spec},
            }
        )

    for p in r.packages:
        res("Package", f"pkg-{p.name}", name=p.name, state="present" if p.present else "absent")
    for f in r.files:
        res(
            "File",
            "file-" + Path(f.path).stem,
            path=f.path,
            content=f.content,
            mode=f.mode,
            owner=f.owner,
            group=f.group,
        )
    for u in r.users:
        if u.present:
            res("User", f"user-{u.name}", name=u.name, uid=u.uid, shell=u.shell, home=u.home)
        else:
            res("User", f"user-{u.name}", name=u.name, state="absent")
    for s in r.sysctls:
        res(
            "Sysctl",
            "sysctl-" + s.key.replace(".", "-").replace("_", "-"),
            key=s.key,
            value=s.value,
        )
    (folder / "bench.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return folder


def write_pyinfra(fleet: Fleet, r: Resources, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True)
    data = {
        "ssh_user": "root",
        "ssh_key": str(fleet.private_key_file),
        "ssh_known_hosts_file": str(fleet.known_hosts_file),
        "ssh_strict_host_key_checking": "yes",
        "ssh_allow_agent": False,
        "ssh_look_for_keys": False,
    }
    hosts = [(node.address, data) for node in fleet.nodes.values()]
    inventory = folder / "inventory.py"
    inventory.write_text(f"hosts = {hosts!r}\n")
    ops = [
        "import io",
        "from pyinfra.operations import apt, files, server",
        "apt.packages(name='packages present', packages=%r, present=True)"
        % [p.name for p in r.packages if p.present],
        "apt.packages(name='packages absent', packages=%r, present=False)"
        % [p.name for p in r.packages if not p.present],
    ]
    for f in r.files:
        ops.append(
            f"files.put(name={f.path!r}, src=io.StringIO({f.content!r}), dest={f.path!r}, "
            f"user={f.owner!r}, group={f.group!r}, mode={f.mode!r})"
        )
    for u in r.users:
        if u.present:
            ops.append(
                f"server.user(name='user {u.name}', user={u.name!r}, uid={u.uid}, "
                f"shell={u.shell!r}, home={u.home!r})"
            )
        else:
            ops.append(f"server.user(name='user {u.name}', user={u.name!r}, present=False)")
    for s in r.sysctls:
        ops.append(
            f"server.sysctl(name={s.key!r}, key={s.key!r}, value={s.value}, "
            f"persist=True, persist_file={SYSCTL_FILE!r})"
        )
    deploy = folder / "deploy.py"
    deploy.write_text("\n".join(ops) + "\n")
    return inventory, deploy


def ansible_posix_available(env: dict[str, str]) -> bool:
    result = subprocess.run(
        ["ansible-doc", "-t", "module", "-j", "ansible.posix.sysctl"],
        capture_output=True,
        text=True,
        env=env,
    )
    return result.returncode == 0 and '"ansible.posix.sysctl"' in result.stdout


def write_ansible(
    fleet: Fleet, r: Resources, folder: Path, use_posix: bool
) -> tuple[Path, Path, int]:
    """Inventory and playbook; also returns how many tasks should report a change."""
    folder.mkdir(parents=True)
    inventory = folder / "inventory.ini"
    inventory.write_text(
        "[bench]\n"
        + "".join(f"{n.name} ansible_host={n.address}\n" for n in fleet.nodes.values())
        + "\n[bench:vars]\nansible_user=root\n"
        f"ansible_ssh_private_key_file={fleet.private_key_file}\n"
        "ansible_python_interpreter=/usr/bin/python3\n"
    )
    tasks: list[dict[str, Any]] = []
    changed = 0
    present = [p for p in r.packages if p.present]
    absent = [p for p in r.packages if not p.present]
    tasks.append(
        {
            "name": "packages present",
            "ansible.builtin.apt": {"name": [p.name for p in present], "state": "present"},
        }
    )
    tasks.append(
        {
            "name": "packages absent",
            "ansible.builtin.apt": {"name": [p.name for p in absent], "state": "absent"},
        }
    )
    changed += any(p.drift for p in present) + any(p.drift for p in absent)
    for f in r.files:
        tasks.append(
            {
                "name": f.path,
                "ansible.builtin.copy": {
                    "dest": f.path,
                    "content": f.content,
                    "mode": f.mode,
                    "owner": f.owner,
                    "group": f.group,
                },
            }
        )
        changed += f.drift is not None
    for u in r.users:
        if u.present:
            args = {"name": u.name, "uid": u.uid, "shell": u.shell, "home": u.home}
        else:
            args = {"name": u.name, "state": "absent"}
        tasks.append({"name": f"user {u.name}", "ansible.builtin.user": args})
        changed += u.drift is not None
    for s in r.sysctls:
        if use_posix:
            tasks.append(
                {
                    "name": s.key,
                    "ansible.posix.sysctl": {
                        "name": s.key,
                        "value": str(s.value),
                        "sysctl_file": SYSCTL_FILE,
                        "state": "present",
                        "sysctl_set": True,
                        "reload": True,
                    },
                }
            )
            changed += s.drift
        else:
            # No ansible.posix: the live value by `sysctl -n` (read-only, so it
            # also runs in check mode) and the persisted line by lineinfile.
            var = "sysctl_" + re.sub(r"\W", "_", s.key)
            tasks.append(
                {
                    "name": f"{s.key} live",
                    "ansible.builtin.command": {"argv": ["sysctl", "-n", s.key]},
                    "register": var,
                    "check_mode": False,
                    "changed_when": f"{var}.stdout | trim != '{s.value}'",
                }
            )
            tasks.append(
                {
                    "name": f"{s.key} persisted",
                    "ansible.builtin.lineinfile": {
                        "path": SYSCTL_FILE,
                        "regexp": "^" + re.escape(s.key) + r"\s*=",
                        "line": f"{s.key} = {s.value}",
                        "create": True,
                    },
                }
            )
            changed += 2 * s.drift
    play = [{"name": "bench", "hosts": "bench", "gather_facts": False, "tasks": tasks}]
    playbook = folder / "playbook.yml"
    playbook.write_text(yaml.safe_dump(play, sort_keys=False))
    return inventory, playbook, changed


# --------------------------------------------------------------------------
# running and checking


@dataclass
class Run:
    seconds: float
    rc: int | None
    stdout: str
    stderr: str
    timed_out: bool = False


def timed(argv: list[str], env: dict[str, str], timeout: float, cwd: Path | None = None) -> Run:
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,  # a tool that asks (ssh, a prompt) must not wait here
        text=True,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
        return Run(time.perf_counter() - start, None, out, err, timed_out=True)
    return Run(time.perf_counter() - start, proc.returncode, out, err)


def check_fazai(run: Run, fleet: Fleet, r: Resources) -> str | None:
    """None when fazai ran as expected and reported exactly the drift, else why not."""
    if run.timed_out:
        return "timed out"
    if run.rc != 1:
        return f"exit code {run.rc}, expected 1 (drift): {run.stderr.strip()[-500:]}"
    try:
        out = json.loads(run.stdout)
    except json.JSONDecodeError as exc:
        return f"no JSON on stdout: {exc}"
    if out["summary"]["nodesFailed"]:
        return f"failed nodes: {[n for n in out['nodes'] if n['status'] != 'ok']}"
    per_node: dict[str, int] = {}
    for change in out["changes"]:
        per_node[change["node"]] = per_node.get(change["node"], 0) + 1
    want = {name: r.drifted() for name in fleet.nodes}
    if per_node != want:
        return f"changes per node {per_node}, expected {want}"
    resources = {n["node"]: n["resources"] for n in out["nodes"]}
    if resources != {name: r.count() for name in fleet.nodes}:
        return f"resources per node {resources}, expected {r.count()}"
    return None


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def pyinfra_expected(r: Resources) -> int:
    """Operations that should report a change on each host (packages are two operations)."""
    return (
        any(p.drift for p in r.packages if p.present)
        + any(p.drift for p in r.packages if not p.present)
        + sum(f.drift is not None for f in r.files)
        + sum(u.drift is not None for u in r.users)
        + sum(s.drift for s in r.sysctls)
    )


def check_pyinfra(run: Run, fleet: Fleet, expected: int) -> str | None:
    """`pyinfra --dry --json` prints the plan: per operation, the hosts it would change."""
    if run.timed_out:
        return "timed out"
    if run.rc != 0:
        return f"exit code {run.rc}: {(run.stdout + run.stderr).strip()[-800:]}"
    try:
        plan = json.loads(run.stdout)["plan"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        return f"no JSON plan on stdout: {exc!r}"
    per_host = {n.address: 0 for n in fleet.nodes.values()}
    for op in plan:
        for host in op.get("hosts_with_change", []):
            per_host[host] = per_host.get(host, 0) + 1
    want = {n.address: expected for n in fleet.nodes.values()}
    if per_host != want:
        return f"operations with change per host {per_host}, expected {want}"
    return None


def check_ansible(run: Run, fleet: Fleet, expected_changed: int) -> str | None:
    if run.timed_out:
        return "timed out"
    text = _ANSI.sub("", run.stdout)
    recap = dict(re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", text, re.M))
    if run.rc != 0:
        return f"exit code {run.rc}: {(run.stdout + run.stderr).strip()[-800:]}"
    want = {name: str(expected_changed) for name in fleet.nodes}
    if recap != want:
        return f"changed per host {recap}, expected {want}"
    return None


# --------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--resources", type=int, default=30, help="at least this many per node")
    ap.add_argument("--subnet", default="10.231.9.0/24")
    ap.add_argument("--fazai-runs", type=int, default=3, help="timed runs after the first")
    ap.add_argument("--timeout", type=float, default=600, help="seconds, per tool run")
    ap.add_argument("--skip-pyinfra", action="store_true")
    ap.add_argument("--skip-ansible", action="store_true")
    ap.add_argument(
        "--ansible-collections",
        type=Path,
        help="ANSIBLE_COLLECTIONS_PATH holding ansible.posix (used for sysctl)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temp workdir (tool inputs)")
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = ap.parse_args()

    reason = fleet_available()
    if reason:
        print(f"cannot start a fleet: {reason}", file=sys.stderr)
        return 2
    r = build_resources(args.resources)
    workdir = Path(tempfile.mkdtemp(prefix="fazai-bench-"))
    base = int(args.subnet.split("/")[0].rsplit(".", 1)[1])
    prefix = args.subnet.split("/")[0].rsplit(".", 1)[0]
    specs = [
        NodeSpec(f"bench-{i:02d}", f"{prefix}.{base + 10 + i}") for i in range(1, args.nodes + 1)
    ]
    fleet = Fleet(specs, workdir=workdir / "fleet", subnet=args.subnet)
    results: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "nodes": args.nodes,
        "resources_per_node": r.count(),
        "drifted_per_node": r.drifted(),
        "mix": {
            "packages": len(r.packages),
            "files": len(r.files),
            "users": len(r.users),
            "sysctls": len(r.sysctls),
        },
        "tools": {},
    }
    env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb"}
    try:
        t0 = time.perf_counter()
        fleet.start()
        prepare_nodes(fleet, r)
        results["fleet_setup_seconds"] = round(time.perf_counter() - t0, 2)
        print(
            f"fleet of {args.nodes} nodes up and prepared in {results['fleet_setup_seconds']} s;"
            f" {r.count()} resources per node, {r.drifted()} drifted",
            flush=True,
        )

        # -- fazai
        state = write_fazai(fleet, r, workdir / "fazai")
        fazai = shutil.which("fazai") or "fazai"
        runs = []
        for i in range(1 + args.fazai_runs):
            run = timed([fazai, "plan", str(state), "--output", "json"], env, args.timeout)
            problem = check_fazai(run, fleet, r)
            runs.append({"seconds": round(run.seconds, 3), "rc": run.rc, "problem": problem})
            print(
                f"fazai run {i + 1}: {run.seconds:.2f} s rc={run.rc}"
                + (f"  FAILED: {problem}" if problem else ""),
                flush=True,
            )
            if problem:
                break
            if i == 0:
                out = json.loads(run.stdout)
                results["fazai_node_seconds"] = [n["seconds"] for n in out["nodes"]]
        ok = all(x["problem"] is None for x in runs)
        results["tools"]["fazai"] = {
            "ok": ok,
            "problem": next((x["problem"] for x in runs if x["problem"]), None),
            "runs": runs,
            "first_seconds": runs[0]["seconds"],
            "best_seconds": min(x["seconds"] for x in runs[1:])
            if ok and len(runs) > 1
            else runs[0]["seconds"]
            if ok
            else None,
            "command": f"fazai plan {state} --output json",
        }

        # -- pyinfra
        if not args.skip_pyinfra:
            inventory, deploy = write_pyinfra(fleet, r, workdir / "pyinfra")
            # Not `--dry -y`: with -y, pyinfra 3 skips change detection and
            # reads nothing from the hosts.  `--dry --json` detects the changes
            # and prints them as JSON (hosts_with_change per operation).
            argv = [
                "pyinfra",
                str(inventory),
                str(deploy),
                "--dry",
                "--json",
                "--parallel",
                str(args.nodes),
            ]
            run = timed(argv, env, args.timeout, cwd=workdir / "pyinfra")
            expected = pyinfra_expected(r)
            problem = check_pyinfra(run, fleet, expected)
            print(
                f"pyinfra --dry: {run.seconds:.2f} s rc={run.rc}"
                + (f"  FAILED: {problem}" if problem else ""),
                flush=True,
            )
            (workdir / "pyinfra" / "output.txt").write_text(run.stdout + run.stderr)
            results["tools"]["pyinfra"] = {
                "ok": problem is None,
                "problem": problem,
                "rc": run.rc,
                "seconds": round(run.seconds, 3) if problem is None else None,
                "seconds_until_exit": round(run.seconds, 3),
                "command": shlex.join(argv),
                "operations_changed_per_host": expected,
            }

        # -- ansible
        if not args.skip_ansible:
            aenv = {
                **env,
                "ANSIBLE_HOST_KEY_CHECKING": "True",
                "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
                "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_RETRY_FILES_ENABLED": "False",
                "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp"),
            }
            if args.ansible_collections:
                aenv["ANSIBLE_COLLECTIONS_PATH"] = str(args.ansible_collections.resolve())
            use_posix = ansible_posix_available(aenv)
            inventory, playbook, expected = write_ansible(fleet, r, workdir / "ansible", use_posix)
            argv = [
                "ansible-playbook",
                "-i",
                str(inventory),
                str(playbook),
                "--check",
                "-f",
                str(args.nodes),
                "-e",
                f"ansible_ssh_common_args='-o UserKnownHostsFile={fleet.known_hosts_file} "
                "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes'",
            ]
            run = timed(argv, aenv, args.timeout, cwd=workdir / "ansible")
            problem = check_ansible(run, fleet, expected)
            print(
                f"ansible-playbook --check: {run.seconds:.2f} s rc={run.rc}"
                + (f"  FAILED: {problem}" if problem else ""),
                flush=True,
            )
            (workdir / "ansible" / "output.txt").write_text(run.stdout + run.stderr)
            results["tools"]["ansible"] = {
                "ok": problem is None,
                "problem": problem,
                "rc": run.rc,
                "seconds": round(run.seconds, 3) if problem is None else None,
                "seconds_until_exit": round(run.seconds, 3),
                "command": shlex.join(argv),
                "sysctl_module": "ansible.posix.sysctl"
                if use_posix
                else "ansible.builtin.command (sysctl -n) + ansible.builtin.lineinfile",
                "tasks_changed_per_host": expected,
            }
    finally:
        fleet.stop()
        if args.keep:
            print(f"tool inputs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    # -- table
    fz = results["tools"]["fazai"]
    base_s = fz["best_seconds"]
    print()
    print(f"{'tool':<28}{'wall s':>10}{'x fazai best':>14}{'x fazai first':>15}")
    rows = [
        ("fazai plan (first)", fz["first_seconds"] if fz["ok"] else None),
        (f"fazai plan (best of {args.fazai_runs})", base_s),
    ]
    if "pyinfra" in results["tools"]:
        rows.append(("pyinfra --dry", results["tools"]["pyinfra"]["seconds"]))
    if "ansible" in results["tools"]:
        rows.append(("ansible-playbook --check", results["tools"]["ansible"]["seconds"]))
    for name, secs in rows:
        if secs is None:
            print(f"{name:<28}{'FAILED':>10}")
            continue
        vs_best = f"{secs / base_s:.1f}x" if base_s else "-"
        vs_first = f"{secs / fz['first_seconds']:.1f}x" if fz["ok"] else "-"
        print(f"{name:<28}{secs:>10.2f}{vs_best:>14}{vs_first:>15}")
    ratios = {}
    for peer in ("pyinfra", "ansible"):
        t = results["tools"].get(peer)
        if t and t["seconds"] is not None and fz["ok"]:
            ratios[f"{peer}/fazai_best"] = round(t["seconds"] / base_s, 2)
            ratios[f"{peer}/fazai_first"] = round(t["seconds"] / fz["first_seconds"], 2)
    results["ratios"] = ratios
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {args.output}")
    return 0 if all(t["ok"] for t in results["tools"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
