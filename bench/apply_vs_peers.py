#!/usr/bin/env python3
"""Converging a real fleet: `fazai apply` against `pyinfra` and `ansible-playbook`.

Starts its own fleet of real OpenSSH nodes (controller.testing.fleet) and, for
each tool in turn, resets every node to the same starting state, times one
apply of the same desired state (files, users, sysctls; no packages, there is
no network), then checks with `fazai plan --output json` that every node
converged (0 changes).  A tool that does not converge is FAILED, not timed.
Results go to bench/results/apply_vs_peers.json.

    python bench/apply_vs_peers.py [--nodes 10] [--skip-ansible]

Needs root (network namespaces), pyinfra 3.x and ansible-core on PATH.  The
resource types and the renderers come from plan_vs_peers.py.
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
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import plan_vs_peers as pvp
from plan_vs_peers import (
    SYSCTL_FILE,
    File,
    Resources,
    Sysctl,
    User,
    timed,
    write_fazai,
)

from controller.testing.fleet import Fleet, NodeSpec, fleet_available

RESULTS = pvp.REPO / "bench" / "results" / "apply_vs_peers.json"
FILE_DIR = "/etc/bench-apply"

# Sysctls: per network namespace, so each node has its own.  (key, desired,
# starting value): every one differs at the start, so every tool must write.
SYSCTLS = [
    ("net.ipv4.ip_forward", 0, 1),
    ("net.ipv4.conf.all.send_redirects", 0, 1),
    ("net.ipv4.conf.all.rp_filter", 1, 0),
    ("net.ipv4.tcp_syncookies", 1, 0),
    ("net.ipv4.conf.all.accept_redirects", 0, 1),
    ("net.ipv4.conf.default.accept_redirects", 0, 1),
    ("net.ipv4.icmp_echo_ignore_broadcasts", 1, 0),
    ("net.ipv4.conf.all.log_martians", 1, 0),
]
# Writing net.ipv4.ip_forward makes the kernel set conf.all.accept_redirects to
# !ip_forward (inet_forward_change in net/ipv4/devinet.c), so the two only
# converge when ip_forward is written first.  --no-ip-forward swaps ip_forward
# for a key without that side effect.
NO_FORWARD = ("net.ipv4.conf.all.secure_redirects", 0, 1)


def build_resources(files: int, users: int, no_ip_forward: bool = False) -> Resources:
    """All missing or different at the start: an apply changes every one."""
    r = Resources()
    for i in range(files):
        r.files.append(
            File(
                f"{FILE_DIR}/app-{i:02d}.conf",
                pvp.file_content(i),
                "0640" if i % 2 else "0644",
                "root",
                "root",
                "missing",
            )
        )
    for i in range(1, users + 1):
        r.users.append(
            User(f"apply-app{i}", True, "missing", 3200 + i, "/bin/bash", f"/home/apply-app{i}")
        )
    swap = "net.ipv4.ip_forward" if no_ip_forward else None
    sysctls = [NO_FORWARD if k[0] == swap else k for k in SYSCTLS]
    r.sysctls = [Sysctl(key, want, True, live=start) for key, want, start in sysctls]
    return r


# --------------------------------------------------------------------------
# the starting state, the same for every tool


def reset_script(r: Resources) -> str:
    lines = [f"rm -rf {FILE_DIR}", f"mkdir -p {FILE_DIR}", f"rm -f {SYSCTL_FILE}"]
    for u in r.users:
        lines.append(f"userdel -r {u.name} >/dev/null 2>&1 || true")
        lines.append(f"rm -rf {shlex.quote(u.home)}")
    for s in r.sysctls:
        lines.append(f"sysctl -qw {s.key}={s.live}")
    return "\n".join(lines) + "\n"


def reset_nodes(fleet: Fleet, r: Resources) -> None:
    script = reset_script(r)
    with ThreadPoolExecutor(len(fleet.nodes)) as pool:
        list(pool.map(lambda n: n.run(script, timeout=120), fleet.nodes.values()))


# --------------------------------------------------------------------------
# desired state for the peers (plan_vs_peers's renderers, less the packages)


def write_pyinfra(fleet: Fleet, r: Resources, folder: Path) -> tuple[Path, Path]:
    inventory, deploy = pvp.write_pyinfra(fleet, r, folder)
    # plan_vs_peers always renders two apt.packages operations; no packages here.
    ops = [line for line in deploy.read_text().splitlines() if "apt.packages(" not in line]
    ops = [
        "from pyinfra.operations import files, server" if line.startswith("from ") else line
        for line in ops
    ]
    deploy.write_text("\n".join(ops) + "\n")
    return inventory, deploy


def write_ansible(fleet: Fleet, r: Resources, folder: Path, use_posix: bool) -> tuple[Path, Path]:
    # With ansible.posix, plan_vs_peers's sysctl task (sysctl_set: true) applies
    # as it is.  Without, its builtin form only reads (`sysctl -n`): render the
    # sysctls here as lineinfile + `sysctl -w`.
    base = r if use_posix else replace(r, sysctls=[])
    inventory, playbook, _ = pvp.write_ansible(fleet, base, folder, use_posix)
    play = yaml.safe_load(playbook.read_text())
    tasks = [
        t for t in play[0]["tasks"] if t["name"] not in ("packages present", "packages absent")
    ]
    if not use_posix:
        for s in r.sysctls:
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
            tasks.append(
                {
                    "name": f"{s.key} live",
                    "ansible.builtin.command": {"argv": ["sysctl", "-w", f"{s.key}={s.value}"]},
                }
            )
    play[0]["tasks"] = tasks
    playbook.write_text(yaml.safe_dump(play, sort_keys=False))
    return inventory, playbook


# --------------------------------------------------------------------------
# checking with fazai plan


def plan_changes(
    fazai: str, state: Path, fleet: Fleet, r: Resources, env: dict[str, str], timeout: float
) -> tuple[dict[str, int] | None, str | None]:
    """Changes per node by `fazai plan --output json`, or None and why not."""
    run = timed([fazai, "plan", str(state), "--output", "json"], env, timeout)
    if run.timed_out:
        return None, "fazai plan timed out"
    if run.rc not in (0, 1):
        return None, f"fazai plan exit code {run.rc}: {run.stderr.strip()[-500:]}"
    try:
        out = json.loads(run.stdout)
    except json.JSONDecodeError as exc:
        return None, f"fazai plan: no JSON on stdout: {exc}"
    if out["summary"]["nodesFailed"]:
        return None, f"fazai plan: failed nodes {[n for n in out['nodes'] if n['status'] != 'ok']}"
    resources = {n["node"]: n["resources"] for n in out["nodes"]}
    if resources != {name: r.count() for name in fleet.nodes}:
        return None, f"fazai plan: resources per node {resources}, expected {r.count()}"
    per_node = {name: 0 for name in fleet.nodes}
    for change in out["changes"]:
        per_node[change["node"]] = per_node.get(change["node"], 0) + 1
    if any(per_node.values()):
        sample = [
            f"{c['node']}: {c.get('kind', '')} {c.get('name', c.get('id', ''))}"
            for c in out["changes"][:5]
        ]
        return per_node, f"not converged: changes per node {per_node}; e.g. {sample}"
    return per_node, None


# --------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--files", type=int, default=14)
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--subnet", default="10.231.12.0/24")
    ap.add_argument("--timeout", type=float, default=600, help="seconds, per tool run")
    ap.add_argument(
        "--no-ip-forward",
        action="store_true",
        help=f"manage {NO_FORWARD[0]} instead of net.ipv4.ip_forward",
    )
    ap.add_argument(
        "--fazai-concurrency",
        type=int,
        help="fazai apply --concurrency (default: the node count, the peers' parallelism)",
    )
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
    r = build_resources(args.files, args.users, args.no_ip_forward)
    workdir = Path(tempfile.mkdtemp(prefix="fazai-bench-apply-"))
    prefix = args.subnet.split("/")[0].rsplit(".", 1)[0]
    base = int(args.subnet.split("/")[0].rsplit(".", 1)[1])
    specs = [
        NodeSpec(f"apply-{i:02d}", f"{prefix}.{base + 10 + i}") for i in range(1, args.nodes + 1)
    ]
    fleet = Fleet(specs, workdir=workdir / "fleet", subnet=args.subnet)
    results: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_before": os.getloadavg(),
        },
        "nodes": args.nodes,
        "resources_per_node": r.count(),
        "mix": {"files": len(r.files), "users": len(r.users), "sysctls": len(r.sysctls)},
        "sysctl_keys": [s.key for s in r.sysctls],
        "tools": {},
    }
    env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb"}
    fazai = shutil.which("fazai") or "fazai"
    try:
        t0 = time.perf_counter()
        fleet.start()
        results["fleet_setup_seconds"] = round(time.perf_counter() - t0, 2)
        print(
            f"fleet of {args.nodes} nodes up in {results['fleet_setup_seconds']} s;"
            f" {r.count()} resources per node, all to be written",
            flush=True,
        )
        state = write_fazai(fleet, r, workdir / "fazai")

        def measure(tool: str, argv: list[str], run_env: dict[str, str], cwd: Path | None) -> None:
            reset_nodes(fleet, r)
            before, problem = plan_changes(fazai, state, fleet, r, env, args.timeout)
            want = {name: r.count() for name in fleet.nodes}
            if problem is None or before != want:
                raise SystemExit(f"{tool}: starting state is not as meant: {before} {problem}")
            load_before = os.getloadavg()
            run = timed(argv, run_env, args.timeout, cwd=cwd)
            load_after = os.getloadavg()
            problem = None
            if run.timed_out:
                problem = "timed out"
            elif run.rc != 0:
                problem = f"exit code {run.rc}: {(run.stdout + run.stderr).strip()[-800:]}"
            after, not_converged = plan_changes(fazai, state, fleet, r, env, args.timeout)
            problem = problem or not_converged
            (workdir / f"{tool}-output.txt").write_text(run.stdout + run.stderr)
            print(
                f"{tool}: {run.seconds:.2f} s rc={run.rc}"
                + (f"  FAILED: {problem}" if problem else "  converged"),
                flush=True,
            )
            results["tools"][tool] = {
                "ok": problem is None,
                "problem": problem,
                "rc": run.rc,
                "seconds": round(run.seconds, 3) if problem is None else None,
                "seconds_until_exit": round(run.seconds, 3),
                "changes_after": after,
                "command": shlex.join(argv),
                # other users of the machine show here: 1/5/15-minute load averages
                "loadavg_before": [round(x, 2) for x in load_before],
                "loadavg_after": [round(x, 2) for x in load_after],
            }

        # -- fazai
        measure(
            "fazai",
            [
                fazai,
                "apply",
                str(state),
                "--auto-approve",
                "--state",
                str(workdir / "fazai-state" / "state.db"),
                "--concurrency",
                str(args.fazai_concurrency or args.nodes),
            ],
            env,
            None,
        )

        # -- pyinfra
        if not args.skip_pyinfra:
            inventory, deploy = write_pyinfra(fleet, r, workdir / "pyinfra")
            argv = ["pyinfra", str(inventory), str(deploy), "-y", "--parallel", str(args.nodes)]
            measure("pyinfra", argv, env, workdir / "pyinfra")

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
            use_posix = pvp.ansible_posix_available(aenv)
            inventory, playbook = write_ansible(fleet, r, workdir / "ansible", use_posix)
            argv = [
                "ansible-playbook",
                "-i",
                str(inventory),
                str(playbook),
                "-f",
                str(args.nodes),
                "-e",
                f"ansible_ssh_common_args='-o UserKnownHostsFile={fleet.known_hosts_file} "
                "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes'",
            ]
            measure("ansible", argv, aenv, workdir / "ansible")
            results["tools"]["ansible"]["sysctl_module"] = (
                "ansible.posix.sysctl"
                if use_posix
                else "ansible.builtin.lineinfile + ansible.builtin.command (sysctl -w)"
            )
    finally:
        fleet.stop()
        if args.keep:
            print(f"tool inputs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    # -- table
    fz = results["tools"].get("fazai", {})
    base_s = fz.get("seconds")
    labels = {
        "fazai": f"fazai apply --concurrency {args.fazai_concurrency or args.nodes}",
        "pyinfra": f"pyinfra -y --parallel {args.nodes}",
        "ansible": f"ansible-playbook -f {args.nodes}",
    }
    print()
    print(f"{'tool':<34}{'wall s':>10}{'peer/fazai':>12}")
    ratios = {}
    for tool, t in results["tools"].items():
        secs = t["seconds"]
        if secs is None:
            print(f"{labels[tool]:<34}{'FAILED':>10}")
            continue
        ratio = secs / base_s if base_s else None
        if tool != "fazai" and ratio is not None:
            ratios[f"{tool}/fazai"] = round(ratio, 2)
        print(f"{labels[tool]:<34}{secs:>10.2f}{f'{ratio:.1f}x' if ratio else '-':>12}")
    results["ratios"] = ratios
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {args.output}")
    return 0 if results["tools"] and all(t["ok"] for t in results["tools"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
