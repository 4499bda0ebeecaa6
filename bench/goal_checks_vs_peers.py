#!/usr/bin/env python3
"""Acceptance checks on a real fleet: FazAI Goals against an Ansible playbook and a
plain ssh loop.

Starts its own fleet of real OpenSSH nodes (controller.testing.fleet), gives every node
the same state, and asks each tool the same read-only questions: G goals of C checks
per node (test, grep, stat, id, getent, cat, sysctl), a known subset of them failing.
Times each tool on the same fleet, checks that each one found exactly the failing
checks on every node, and prints a table. Results go to
bench/results/goal_checks_vs_peers.json.

    python bench/goal_checks_vs_peers.py [--nodes 10] [--goals 5] [--checks 4]

Needs root (network namespaces); ansible-core on PATH (or --ansible-playbook) for the
Ansible row, the OpenSSH client for the ssh loop.
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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from controller.testing.fleet import Fleet, NodeSpec, fleet_available  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from plan_vs_peers import Run, timed  # noqa: E402  (one way to time a tool, for every bench)

RESULTS = REPO / "bench" / "results" / "goal_checks_vs_peers.json"
DIR = "/etc/bench-goal"
# Per network namespace, so every node holds its own value: (key, value set on the node).
SYSCTLS = (
    ("net.ipv4.tcp_syncookies", 1),
    ("net.ipv4.conf.all.accept_redirects", 0),
    ("net.ipv4.icmp_echo_ignore_broadcasts", 1),
    ("net.ipv4.conf.all.log_martians", 1),
    ("net.ipv4.ip_forward", 0),
)

# --------------------------------------------------------------------------
# the checks (one list, rendered for each tool)


@dataclass(frozen=True)
class Check:
    """One read-only probe: argv without a shell, passing on exit 0 and, when ``test`` is
    set, stdout holding ``pattern`` (``contains``: as text; ``matches``: a regex, per
    line)."""

    goal: str
    name: str
    argv: tuple[str, ...]
    test: str | None  # None, "contains" or "matches"
    pattern: str = ""
    fails: bool = False


@dataclass(frozen=True)
class Template:
    """A kind of check: how to build it for index i, and the node state it reads (the
    shell lines that make it pass, or fail)."""

    kind: str
    build: Callable[[int], tuple[tuple[str, ...], str | None, str]]
    prepare: Callable[[int, bool], list[str]]


def _conf(i: int) -> str:
    return f"# bench-goal {i}\nkey_{i} = {i * 7}\nenabled = true\n"


def _write(path: str, content: str, mode: str = "0644") -> list[str]:
    q = shlex.quote
    return [f"printf '%s' {q(content)} > {q(path)}", f"chmod {mode} {q(path)}"]


def _sysctl(i: int) -> tuple[str, int]:
    return SYSCTLS[i % len(SYSCTLS)]


TEMPLATES = (
    Template(
        "dir",
        lambda i: (("test", "-d", f"{DIR}/d-{i:03d}"), None, ""),
        lambda i, fail: [] if fail else [f"mkdir -p {DIR}/d-{i:03d}"],
    ),
    Template(
        "file",
        lambda i: (("test", "-f", f"{DIR}/f-{i:03d}.conf"), None, ""),
        lambda i, fail: [] if fail else _write(f"{DIR}/f-{i:03d}.conf", _conf(i)),
    ),
    Template(
        "line",
        lambda i: (("grep", "-qx", f"key_{i} = {i * 7}", f"{DIR}/g-{i:03d}.conf"), None, ""),
        lambda i, fail: _write(f"{DIR}/g-{i:03d}.conf", _conf(i + 1 if fail else i)),
    ),
    Template(
        "mode",
        lambda i: (("stat", "-c", "%a %U", f"{DIR}/m-{i:03d}.conf"), "matches", "^640 root$"),
        lambda i, fail: _write(f"{DIR}/m-{i:03d}.conf", _conf(i), "0666" if fail else "0640"),
    ),
    Template(
        "uid",
        lambda i: (("id", "-u", f"bgoal{i:03d}"), "matches", f"^{4000 + i}$"),
        lambda i, fail: [f"useradd -M -u {4000 + i + (500 if fail else 0)} bgoal{i:03d}"],
    ),
    Template(
        "shell",
        lambda i: (("getent", "passwd", f"bgshell{i:03d}"), "contains", ":/bin/bash"),
        lambda i, fail: [
            f"useradd -M -u {5000 + i} -s {'/bin/sh' if fail else '/bin/bash'} bgshell{i:03d}"
        ],
    ),
    Template(
        "content",
        lambda i: (("cat", f"{DIR}/c-{i:03d}.conf"), "contains", "enabled = true"),
        lambda i, fail: _write(
            f"{DIR}/c-{i:03d}.conf",
            _conf(i).replace("enabled = true", "enabled = false") if fail else _conf(i),
        ),
    ),
    Template(
        "sysctl",
        lambda i: (("sysctl", "-n", _sysctl(i)[0]), "matches", f"^{_sysctl(i)[1]}$"),
        # Failing: the node holds another value than every check of this key expects;
        # so a key is never both passing and failing (see build_checks).
        lambda i, fail: [
            f"sysctl -qw {_sysctl(i)[0]}={1 - _sysctl(i)[1] if fail else _sysctl(i)[1]}"
        ],
    ),
)


def failing_goals(goals: int, count: int) -> list[int]:
    """Which goals get a failing check: ``count`` of them, spread over the goals."""
    count = min(count, goals)
    return sorted({(k * goals) // count + (goals // count) // 2 for k in range(count)})


def build_checks(goals: int, per_goal: int, failing: int) -> tuple[list[Check], list[str]]:
    """The checks every node gets, and the shell script that puts a node in that state.
    In each failing goal one check fails, the goal's index modulo its checks (so that
    the failing ones are of different kinds)."""
    bad = set(failing_goals(goals, failing)) if failing else set()
    checks: list[Check] = []
    script = ["set -e", f"mkdir -p {DIR}"]
    failing_keys: set[str] = set()
    passing_keys: set[str] = set()
    i = 0
    for g in range(goals):
        goal = f"goal-{g + 1:02d}"
        for c in range(per_goal):
            template = TEMPLATES[i % len(TEMPLATES)]
            fails = g in bad and c == g % per_goal
            if template.kind == "sysctl":
                key = _sysctl(i)[0]
                if key in (failing_keys if not fails else passing_keys):
                    # The same key cannot both hold and not hold its value: skip on to
                    # the next template for this slot.
                    template = TEMPLATES[(i + 1) % len(TEMPLATES)]
                else:
                    (failing_keys if fails else passing_keys).add(key)
            argv, test, pattern = template.build(i)
            checks.append(Check(goal, f"{template.kind}-{i:03d}", argv, test, pattern, fails))
            script += template.prepare(i, fails)
            i += 1
    return checks, script


def prepare_nodes(fleet: Fleet, script: list[str], checks: list[Check]) -> None:
    body = "\n".join(script) + "\n"
    with ThreadPoolExecutor(len(fleet.nodes)) as pool:
        list(pool.map(lambda n: n.run(body, timeout=120), fleet.nodes.values()))
    # Check on one node, by hand, that every check passes or fails as meant.
    node = next(iter(fleet.nodes.values()))
    for check in checks:
        passed = node.run(shell_check(check), check=False).returncode == 0
        if passed == check.fails:
            raise SystemExit(
                f"{node.name}: check {check.name} {'passes' if passed else 'fails'} "
                f"after preparing, expected it to {'fail' if check.fails else 'pass'}"
            )


def expected_failing(checks: list[Check]) -> dict[str, list[str]]:
    """goal -> the names of its failing checks (only goals with one)."""
    out: dict[str, list[str]] = {}
    for check in checks:
        if check.fails:
            out.setdefault(check.goal, []).append(check.name)
    return out


# --------------------------------------------------------------------------
# each tool's input


def write_fazai(fleet: Fleet, checks: list[Check], folder: Path) -> Path:
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
    goals: dict[str, list[dict[str, Any]]] = {}
    for check in checks:
        expect: dict[str, Any] = {"exitCode": 0}
        if check.test == "contains":
            expect["stdoutContains"] = check.pattern
        elif check.test == "matches":
            expect["stdoutMatches"] = check.pattern
        goals.setdefault(check.goal, []).append(
            {"name": check.name, "command": list(check.argv), "expect": expect}
        )
    for goal, items in goals.items():
        docs.append(
            {
                "apiVersion": "fazai.dev/v1alpha1",
                "kind": "Goal",
                "metadata": {"name": goal},
                "spec": {
                    "target": {"matchLabels": {"fleet": "bench"}},
                    "description": f"{goal}: the bench node is set up as its checks say",
                    "checks": items,
                },
            }
        )
    (folder / "bench.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return folder


def _jinja_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"  # a YAML/Jinja single-quoted literal


def write_ansible(fleet: Fleet, checks: list[Check], folder: Path) -> tuple[Path, Path]:
    """One ansible.builtin.command task per check, judged by failed_when and carried on
    by ignore_errors: the idiomatic read-only audit playbook."""
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
    for check in checks:
        var = "r_" + re.sub(r"\W", "_", check.name)
        failed = f"{var}.rc != 0"
        if check.test == "contains":
            failed += f" or {_jinja_str(check.pattern)} not in {var}.stdout"
        elif check.test == "matches":
            failed += f" or {var}.stdout is not search({_jinja_str(check.pattern)}, multiline=True)"
        tasks.append(
            {
                "name": f"{check.goal}/{check.name}",
                "ansible.builtin.command": {"argv": list(check.argv)},
                "register": var,
                "changed_when": False,
                "failed_when": failed,
                "ignore_errors": True,
            }
        )
    play = [{"name": "bench", "hosts": "bench", "gather_facts": False, "tasks": tasks}]
    playbook = folder / "playbook.yml"
    playbook.write_text(yaml.safe_dump(play, sort_keys=False, width=1000))
    return inventory, playbook


def shell_check(check: Check) -> str:
    """The check as a shell user writes it for ``ssh host '...'``: exit 0 when it passes."""
    command = shlex.join(check.argv)
    if check.test is None:
        return command
    flag = "-qF" if check.test == "contains" else "-qE"
    return (
        f"out=$({command}) && printf '%s\\n' \"$out\" | grep {flag} -- {shlex.quote(check.pattern)}"
    )


def write_ssh_loop(fleet: Fleet, checks: list[Check], folder: Path, control: bool) -> Path:
    """A shell script: per node, one ssh per check in turn; all nodes at once. Prints
    ``FAIL node goal/check`` for every check that fails. ``control``: one ControlMaster
    connection per node that every check's ssh reuses (what a practised user adds)."""
    folder.mkdir(parents=True, exist_ok=True)
    opts = shlex.join(fleet.ssh_options())
    lines = [
        "#!/bin/sh",
        "# generated by bench/goal_checks_vs_peers.py",
        f"OPTS={shlex.quote(opts)}",
    ]
    if control:
        sockets = folder / "cm"
        sockets.mkdir(exist_ok=True)
        lines.append(
            f'OPTS="$OPTS -o ControlMaster=auto -o ControlPath={sockets}/%h -o ControlPersist=60"'
        )
    lines += [
        "check() {  # check NODE ADDRESS NAME COMMAND",
        '  ssh $OPTS -n "root@$2" "$4" >/dev/null 2>&1 || echo "FAIL $1 $3"',
        "}",
        "node() {  # node NAME ADDRESS: every check in turn",
    ]
    for check in checks:
        lines.append(
            f'  check "$1" "$2" {shlex.quote(check.goal + "/" + check.name)} '
            f"{shlex.quote(shell_check(check))}"
        )
    lines.append("}")
    for n in fleet.nodes.values():
        lines.append(f"node {shlex.quote(n.name)} {n.address} &")
    lines.append("wait")
    if control:
        for n in fleet.nodes.values():
            lines.append(f"ssh $OPTS -O exit root@{n.address} 2>/dev/null")
    script = folder / ("ssh_loop_cm.sh" if control else "ssh_loop.sh")
    script.write_text("\n".join(lines) + "\n")
    script.chmod(0o755)
    return script


# --------------------------------------------------------------------------
# running and checking


Found = dict[str, dict[str, list[str]]]  # node -> goal -> failing checks, sorted


def _compare(found: Found, fleet: Fleet, want: dict[str, list[str]]) -> str | None:
    expected = {name: {g: sorted(c) for g, c in want.items()} for name in fleet.nodes}
    got = {node: {g: sorted(c) for g, c in goals.items()} for node, goals in found.items()}
    for name in fleet.nodes:
        got.setdefault(name, {})
    if got != expected:
        wrong = {n: got[n] for n in sorted(got) if got[n] != expected.get(n)}
        return f"failing checks differ on {len(wrong)} node(s), e.g. {next(iter(wrong.items()))}"
    return None


_REASON = re.compile(r"^checks failing: (.+)$")


def check_fazai(run: Run, fleet: Fleet, checks: list[Check]) -> str | None:
    """None when fazai exited 1 with exactly the expected unresolved goals on every node,
    each with a reason naming its failing checks and nothing else, else why not."""
    if run.timed_out:
        return "timed out"
    want = expected_failing(checks)
    if run.rc != (1 if want else 0):
        return f"exit code {run.rc}: {run.stderr.strip()[-500:]}"
    try:
        out = json.loads(run.stdout)
    except json.JSONDecodeError as exc:
        return f"no JSON on stdout: {exc}"
    if out["summary"]["nodesFailed"]:
        return f"failed nodes: {[n for n in out['nodes'] if n['status'] != 'ok']}"
    found: Found = {}
    for item in out["changes"]:
        where = f"{item['node']} {item['kind']}/{item['name']}"
        if item["kind"] != "Goal" or item["action"] != "unresolved":
            return f"unexpected item {where}: {item['action']}"
        match = _REASON.match(item.get("reason") or "")
        if not match:
            return f"{where}: reason {item.get('reason')!r} does not list failing checks"
        named = sorted(part.split(" (")[0] for part in match.group(1).split(", "))
        fields = sorted(c["field"] for c in item["changes"])
        if named != fields:
            return f"{where}: reason names {named}, its changes {fields}"
        found.setdefault(item["node"], {})[item["name"]] = named
    return _compare(found, fleet, want)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TASK = re.compile(r"^TASK \[(.+?)\]")
_FATAL = re.compile(r"^fatal: \[([^\]]+)\]: FAILED!")
_RECAP = re.compile(
    r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+).*?ignored=(\d+)",
    re.M,
)


def check_ansible(run: Run, fleet: Fleet, checks: list[Check]) -> str | None:
    """The failing tasks per host from the default callback's ``fatal: [...]`` lines
    (each ``...ignoring``), which must agree with ``ignored=`` in PLAY RECAP."""
    if run.timed_out:
        return "timed out"
    if run.rc != 0:  # ignore_errors: a failed check does not fail the play
        return f"exit code {run.rc}: {(run.stdout + run.stderr).strip()[-800:]}"
    text = _ANSI.sub("", run.stdout)
    found: Found = {}
    task = ""
    for line in text.splitlines():
        if m := _TASK.match(line):
            task = m.group(1)
        elif m := _FATAL.match(line):
            goal, _, name = task.partition("/")
            found.setdefault(m.group(1), {}).setdefault(goal, []).append(name)
    recap = {m[0]: m[1:] for m in _RECAP.findall(text)}
    if set(recap) != set(fleet.nodes):
        return f"PLAY RECAP lists {sorted(recap)}"
    for host, (ok, _changed, unreachable, failed, ignored) in recap.items():
        seen = sum(len(c) for c in found.get(host, {}).values())
        if int(unreachable) or int(failed) or int(ignored) != seen:
            return (
                f"{host}: recap unreachable={unreachable} failed={failed} "
                f"ignored={ignored}, {seen} fatal lines"
            )
        if int(ok) != len(checks):
            return f"{host}: ok={ok}, expected {len(checks)} tasks"
    return _compare(found, fleet, expected_failing(checks))


def check_ssh_loop(run: Run, fleet: Fleet, checks: list[Check]) -> str | None:
    if run.timed_out:
        return "timed out"
    if run.rc != 0:
        return f"exit code {run.rc}: {run.stderr.strip()[-500:]}"
    found: Found = {}
    for line in run.stdout.splitlines():
        if line.startswith("FAIL "):
            _, node, ref = line.split(" ", 2)
            goal, _, name = ref.partition("/")
            found.setdefault(node, {}).setdefault(goal, []).append(name)
    return _compare(found, fleet, expected_failing(checks))


# --------------------------------------------------------------------------


def _series(
    label: str,
    argv: list[str],
    runs: int,
    env: dict[str, str],
    timeout: float,
    judge: Callable[[Run], str | None],
    cwd: Path | None = None,
    keep: Path | None = None,
    note: Callable[[Run], dict[str, Any]] | None = None,
    best_of_all: bool = False,
) -> dict[str, Any]:
    """Run ``argv`` 1 + ``runs`` times (stopping at the first problem); the first run's
    time and the best of the later ones (of all of them with ``best_of_all``: the peers
    get their most favourable figure)."""
    done: list[dict[str, Any]] = []
    noted: dict[str, Any] = {}
    for i in range(1 + runs):
        run = timed(argv, env, timeout, cwd=cwd)
        problem = judge(run)
        done.append({"seconds": round(run.seconds, 3), "rc": run.rc, "problem": problem})
        print(
            f"{label} run {i + 1}: {run.seconds:.2f} s rc={run.rc}"
            + (f"  FAILED: {problem}" if problem else ""),
            flush=True,
        )
        if keep is not None and i == 0:
            keep.write_text(run.stdout + run.stderr)
        if problem:
            break
        if note is not None and i == 0:
            noted = note(run)
    ok = all(x["problem"] is None for x in done)
    later = [x["seconds"] for x in (done if best_of_all else done[1:])]
    return {
        "ok": ok,
        "problem": next((x["problem"] for x in done if x["problem"]), None),
        "runs": done,
        "first_seconds": done[0]["seconds"] if ok else None,
        "best_seconds": (min(later) if later else done[0]["seconds"]) if ok else None,
        "command": shlex.join(argv),
        **noted,
    }


def _fazai_nodes(run: Run) -> dict[str, Any]:
    """Per node, the seconds fazai took to read it (in its first run)."""
    return {"node_seconds": [n["seconds"] for n in json.loads(run.stdout)["nodes"]]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--goals", type=int, default=5, help="goals per node")
    ap.add_argument("--checks", type=int, default=4, help="checks per goal (at most 32)")
    ap.add_argument("--failing", type=int, default=2, help="goals per node with one failing check")
    ap.add_argument("--subnet", default="10.231.30.0/24")
    ap.add_argument("--fazai-runs", type=int, default=3, help="timed runs after the first")
    ap.add_argument(
        "--ansible-runs", type=int, default=0, help="timed Ansible runs after the first"
    )
    ap.add_argument("--ssh-runs", type=int, default=2, help="timed ssh loop runs after the first")
    ap.add_argument("--timeout", type=float, default=600, help="seconds, per tool run")
    ap.add_argument("--ansible-playbook", default=shutil.which("ansible-playbook"))
    ap.add_argument("--skip-ansible", action="store_true")
    ap.add_argument(
        "--skip-pipelining", action="store_true", help="no second Ansible run with pipelining"
    )
    ap.add_argument("--skip-ssh", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temp workdir (tool inputs)")
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = ap.parse_args()
    if not 1 <= args.checks <= 32:
        ap.error("--checks: a goal holds 1 to 32 checks")

    reason = fleet_available()
    if reason:
        print(f"cannot start a fleet: {reason}", file=sys.stderr)
        return 2
    checks, script = build_checks(args.goals, args.checks, args.failing)
    want = expected_failing(checks)
    workdir = Path(tempfile.mkdtemp(prefix="fazai-bench-goals-"))
    prefix = args.subnet.split("/")[0].rsplit(".", 1)[0]
    specs = [NodeSpec(f"bench-{i:02d}", f"{prefix}.{10 + i}") for i in range(1, args.nodes + 1)]
    fleet = Fleet(specs, workdir=workdir / "fleet", subnet=args.subnet)
    kinds: dict[str, int] = {}
    for check in checks:
        kinds[check.argv[0]] = kinds.get(check.argv[0], 0) + 1
    results: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        },
        "nodes": args.nodes,
        "goals_per_node": args.goals,
        "checks_per_goal": args.checks,
        "checks_per_node": len(checks),
        "programs": kinds,
        "failing_per_node": want,
        "tools": {},
    }
    env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb"}
    try:
        t0 = time.perf_counter()
        fleet.start()
        prepare_nodes(fleet, script, checks)
        results["fleet_setup_seconds"] = round(time.perf_counter() - t0, 2)
        print(
            f"fleet of {args.nodes} nodes up and prepared in {results['fleet_setup_seconds']} s;"
            f" {len(checks)} checks per node in {args.goals} goals, failing: {want}",
            flush=True,
        )

        # -- fazai
        state = write_fazai(fleet, checks, workdir / "fazai")
        fazai = shutil.which("fazai") or str(Path(sys.executable).parent / "fazai")
        results["tools"]["fazai"] = _series(
            "fazai plan",
            [fazai, "plan", str(state), "--output", "json"],
            args.fazai_runs,
            env,
            args.timeout,
            lambda run: check_fazai(run, fleet, checks),
            note=_fazai_nodes,
        )

        # -- ansible
        if args.skip_ansible:
            pass
        elif not args.ansible_playbook:
            print("ansible-playbook not found: no Ansible row (--ansible-playbook PATH)")
            results["tools"]["ansible"] = {"skipped": "ansible-playbook not found"}
        else:
            aenv = {
                **env,
                "ANSIBLE_HOST_KEY_CHECKING": "True",
                "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
                "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_RETRY_FILES_ENABLED": "False",
                "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp"),
            }
            inventory, playbook = write_ansible(fleet, checks, workdir / "ansible")
            argv = [
                args.ansible_playbook,
                "-i",
                str(inventory),
                str(playbook),
                "-f",
                str(args.nodes),
                "-e",
                f"ansible_ssh_common_args='-o UserKnownHostsFile={fleet.known_hosts_file} "
                "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes'",
            ]
            version = subprocess.run(
                [args.ansible_playbook, "--version"], capture_output=True, text=True
            ).stdout.splitlines()
            # Defaults first (what a playbook gets without an ansible.cfg), then with
            # pipelining, the speed-up its documentation recommends: the module goes
            # through the SSH session's stdin instead of a file put first.
            variants: list[tuple[str, dict[str, str]]] = [("ansible", {})]
            if not args.skip_pipelining:
                variants.append(("ansible_pipelining", {"ANSIBLE_PIPELINING": "True"}))
            for key, extra in variants:
                results["tools"][key] = {
                    **_series(
                        "ansible-playbook" + (" (pipelining)" if extra else ""),
                        argv,
                        args.ansible_runs,
                        {**aenv, **extra},
                        args.timeout,
                        lambda run: check_ansible(run, fleet, checks),
                        cwd=workdir / "ansible",
                        keep=workdir / "ansible" / f"{key}.txt",
                        best_of_all=True,
                    ),
                    "version": version[0] if version else None,
                    "env": extra,
                }

        # -- ssh loops
        if not args.skip_ssh:
            for control in (False, True):
                key = "ssh_loop_cm" if control else "ssh_loop"
                loop = write_ssh_loop(fleet, checks, workdir / "ssh", control)
                results["tools"][key] = _series(
                    "ssh loop" + (" (ControlMaster)" if control else ""),
                    ["/bin/sh", str(loop)],
                    args.ssh_runs,
                    env,
                    args.timeout,
                    lambda run: check_ssh_loop(run, fleet, checks),
                    best_of_all=True,
                )
    finally:
        fleet.stop()
        if args.keep:
            print(f"tool inputs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    # -- table
    fz = results["tools"]["fazai"]
    best, first = fz["best_seconds"], fz["first_seconds"]

    def runs_of(n: int) -> str:
        return f" (best of {n + 1})" if n else ""

    labels = {
        "ansible": f"ansible-playbook -f {args.nodes}" + runs_of(args.ansible_runs),
        "ansible_pipelining": "ansible-playbook, pipelining" + runs_of(args.ansible_runs),
        "ssh_loop": "ssh loop" + runs_of(args.ssh_runs),
        "ssh_loop_cm": "ssh loop, ControlMaster" + runs_of(args.ssh_runs),
    }
    rows: list[tuple[str, float | None]] = [
        ("fazai plan (first)", first),
        (f"fazai plan (best of {args.fazai_runs})", best),
    ]
    ratios: dict[str, float] = {}
    for key, label in labels.items():
        tool = results["tools"].get(key)
        if not tool or "skipped" in tool:
            continue
        secs = tool["best_seconds"]
        rows.append((label, secs))
        if secs is not None and best and first:
            ratios[f"{key}/fazai_best"] = round(secs / best, 2)
            ratios[f"{key}/fazai_first"] = round(secs / first, 2)
    print()
    print(f"{'tool':<36}{'wall s':>10}{'x fazai best':>14}{'x fazai first':>15}")
    for name, secs in rows:
        if secs is None:
            print(f"{name:<36}{'FAILED':>10}")
            continue
        vs_best = f"{secs / best:.1f}x" if best else "-"
        vs_first = f"{secs / first:.1f}x" if first else "-"
        print(f"{name:<36}{secs:>10.2f}{vs_best:>14}{vs_first:>15}")
    results["ratios"] = ratios
    results["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {args.output}")
    ran = [t for t in results["tools"].values() if "skipped" not in t]
    return 0 if all(t["ok"] for t in ran) else 1


if __name__ == "__main__":
    sys.exit(main())
