#!/usr/bin/env python3
"""Applying firewall aliases and rules to an empty OPNsense: `fazai apply` against
oxl-opnsense-client.

For each tool, on a fresh emulated firewall (controller.testing.opnsense over HTTPS on
loopback, same release for both), puts 100 aliases and 200 filter rules that use them
(the same generated objects for both tools), times it, counts its HTTP requests from the
emulator's request log, then reads the emulator's configuration to check that every
alias and rule is there with the right content and live (applied, no rollback timer
left running). A tool whose result is wrong is FAILED, not timed.

* FazAI: `fazai apply DIR --auto-approve` as a subprocess, then `fazai plan DIR` must
  exit 0 (in sync);
* oxl-opnsense-client (the Python core of the oxlorg.opnsense Ansible collection), as a
  subprocess too, two ways: ``each``, one `alias` module run per alias and one `rule`
  module run per rule (as its Ansible users write one task per object), and ``multi``,
  its mass-management modules `alias_multi` and `rule_multi` given every object at
  once; both then run `reload` for `alias` and `rule`.

Runs are interleaved (fazai, oxl each, oxl multi, fazai, ...), each on a fresh firewall.
`--profile` adds one `fazai apply` in a worker process timed by stage and profiled.
Results go to bench/results/opnsense_apply.json.

    python bench/opnsense_apply.py [--aliases 100] [--rules 200] [--version 26.1] [--runs 3]

Needs `pip install oxl-opnsense-client` for the peer (skipped with a note when missing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# bench/ on the path for the shared modules; _opnsense puts the repository there in turn.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _oxl
from _fazai_profile import PHASES
from _opnsense import (
    RESULTS_DIR,
    SECRET_ENV,
    Objects,
    build_objects,
    emulator,
    machine,
    oxl_params,
    oxl_version,
    request_summary,
    write_fazai,
)

from controller.testing.opnsense import EmulatorServer

RESULTS = RESULTS_DIR / "opnsense_apply.json"
BENCH = Path(__file__).resolve().parent

# --------------------------------------------------------------------------
# what the firewall must hold afterwards, written out independently of either tool


def expected_alias(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": spec["type"],
        "content": sorted(str(c) for c in spec["content"]),
        "description": spec["description"],
        "enabled": "1" if spec["enabled"] else "0",
    }


def expected_rule(spec: dict[str, Any]) -> dict[str, Any]:
    src, dst = spec["source"], spec["destination"]
    iface = spec["interface"] if isinstance(spec["interface"], list) else [spec["interface"]]
    return {
        "action": spec["action"],
        "quick": "1" if spec["quick"] else "0",
        "interface": sorted(iface),
        "direction": spec["direction"],
        "ipprotocol": spec["ipprotocol"],
        "protocol": spec["protocol"].lower(),
        "source_net": src.get("net", "any"),
        "source_not": "1" if src.get("not") else "0",
        "source_port": str(src.get("port", "")),
        "destination_net": dst.get("net", "any"),
        "destination_not": "1" if dst.get("not") else "0",
        "destination_port": str(dst.get("port", "")),
        "log": "1" if spec["log"] else "0",
        "sequence": str(spec["sequence"]),
        "enabled": "1" if spec["enabled"] else "0",
    }


def _flag(value: str | None) -> str:
    # The model stores booleans as "1"/"0"; an unset one reads as its default, "0" here.
    return "1" if value == "1" else "0"


def live_alias(item: dict[str, str]) -> dict[str, Any]:
    return {
        "type": item.get("type", ""),
        "content": sorted(c for c in item.get("content", "").split("\n") if c),
        "description": item.get("description", ""),
        "enabled": _flag(item.get("enabled")),
    }


def live_rule(item: dict[str, str]) -> dict[str, Any]:
    return {
        "action": item.get("action", ""),
        "quick": _flag(item.get("quick")),
        "interface": sorted(i for i in item.get("interface", "").split(",") if i),
        "direction": item.get("direction", ""),
        "ipprotocol": item.get("ipprotocol", ""),
        "protocol": item.get("protocol", "").lower(),
        "source_net": item.get("source_net", ""),
        "source_not": _flag(item.get("source_not")),
        "source_port": item.get("source_port", ""),
        "destination_net": item.get("destination_net", ""),
        "destination_not": _flag(item.get("destination_not")),
        "destination_port": item.get("destination_port", ""),
        "log": _flag(item.get("log")),
        "sequence": item.get("sequence", ""),
        "enabled": _flag(item.get("enabled")),
    }


def check_firewall(emu: EmulatorServer, objs: Objects) -> list[str]:
    """What is wrong with the firewall's configuration, [] when every alias and rule is
    there exactly once (aliases by name, rules by description), with the right content,
    nothing else was added, and it is all live."""
    problems: list[str] = []
    state = emu.state
    for kind, group, key, expected, live in (
        ("alias", objs.aliases, "name", expected_alias, live_alias),
        ("rule", objs.rules, "description", expected_rule, live_rule),
    ):
        items = state.list(kind)
        applied = state.applied_items(kind)
        by_key: dict[str, list[tuple[str, dict[str, str]]]] = {}
        for uuid, item in items.items():
            by_key.setdefault(item.get(key, ""), []).append((uuid, item))
        if len(items) != len(group):
            problems.append(f"{len(items)} {kind} items on the firewall, expected {len(group)}")
        for o in group:
            found = by_key.get(o.spec[key], [])
            if len(found) != 1:
                problems.append(f"{kind} {o.spec[key]!r}: found {len(found)} times")
                continue
            uuid, item = found[0]
            want, got = expected(o.spec), live(item)
            wrong = {f: (got[f], want[f]) for f in want if got[f] != want[f]}
            if wrong:
                problems.append(f"{kind} {o.spec[key]!r}: (live, expected) {wrong}")
            if applied.get(uuid) != item:
                problems.append(f"{kind} {o.spec[key]!r}: saved but not applied")
    if emu.rollback.armed is not None:
        problems.append(f"the filter rollback timer is still armed ({emu.rollback.armed})")
    if emu.rollback.fired:
        problems.append(f"the filter rollback timer fired: {emu.rollback.fired}")
    return problems


def verdict(problems: list[str]) -> str | None:
    if not problems:
        return None
    return f"{len(problems)} problems, e.g. " + "; ".join(problems[:3])


# --------------------------------------------------------------------------
# FazAI


def fazai_command() -> str:
    """The `fazai` of the Python running this script (its venv), else the one on PATH."""
    here = Path(sys.executable).parent / "fazai"
    return str(here) if here.exists() else (shutil.which("fazai") or "fazai")


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run_timed(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``argv``; its wall time, and CPU seconds spent by it (``tool_cpu_seconds``) and
    meanwhile by this process, whose only busy thread is the emulator's
    (``emulator_cpu_seconds``). On a shared machine CPU time moves less than wall time."""
    children, me = _cpu(resource.RUSAGE_CHILDREN), _cpu(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=env or dict(os.environ)
        )
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out, err = None, _text(exc.stdout), _text(exc.stderr) + f"\ntimed out after {timeout} s"
    return {
        "seconds": round(time.perf_counter() - t0, 3),
        "tool_cpu_seconds": round(_cpu(resource.RUSAGE_CHILDREN) - children, 3),
        "emulator_cpu_seconds": round(_cpu(resource.RUSAGE_SELF) - me, 3),
        "rc": rc,
        "stdout": out,
        "stderr": err,
    }


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def fazai_apply(
    emu: EmulatorServer, objs: Objects, workdir: Path, timeout: float, command: str | None = None
) -> dict[str, Any]:
    """`fazai apply --auto-approve` on a fresh firewall, checked, then `fazai plan`
    (``command``: another `fazai`, say an older tree's, instead of this venv's)."""
    docs = write_fazai(emu, objs, workdir / "fazai")
    fazai = command or fazai_command()
    argv = [fazai, "apply", str(docs), "--auto-approve", "--state", str(workdir / "state.db")]
    emu.requests.clear()
    run = run_timed(argv, timeout)
    records = emu.requests.records
    problems = []
    if run["rc"] != 0:
        problems.append(f"exit status {run['rc']}: {run['stderr'][-400:].strip()}")
    problems += check_firewall(emu, objs)

    # The second plan must find nothing to do.
    emu.requests.clear()
    again = run_timed([fazai, "plan", str(docs), "--output", "json"], timeout)
    replan_records = emu.requests.records
    replan: dict[str, Any] = {
        "seconds": again["seconds"],
        "rc": again["rc"],
        **request_summary(replan_records),
    }
    try:
        out = json.loads(again["stdout"])
        replan["changes"] = len(out["changes"])
        replan["resources"] = sum(n.get("resources", 0) for n in out.get("nodes", []))
    except (ValueError, KeyError, TypeError) as exc:
        replan["changes"] = None
        problems.append(f"second plan: unreadable output ({exc}): {again['stderr'][-300:]}")
    if again["rc"] != 0:
        problems.append(
            f"second plan: exit status {again['rc']} (0 = in sync), {replan.get('changes')} changes"
        )
    return {
        "ok": not problems,
        "problem": verdict(problems),
        "problems": problems[:20],
        "seconds": run["seconds"],
        "tool_cpu_seconds": run["tool_cpu_seconds"],
        "emulator_cpu_seconds": run["emulator_cpu_seconds"],
        "rc": run["rc"],
        **request_summary(records),
        "second_plan": replan,
        "command": "fazai apply DIR --auto-approve --state DB",
    }


def fazai_profile(
    emu: EmulatorServer, objs: Objects, workdir: Path, timeout: float
) -> dict[str, Any]:
    """One `fazai apply` in a worker process, timed by stage and profiled."""
    docs = write_fazai(emu, objs, workdir / "fazai")
    out_file = workdir / "profile.json"
    profiler = BENCH / "_fazai_profile.py"
    argv = [sys.executable, str(profiler), str(docs), str(workdir / "state.db"), str(out_file)]
    emu.requests.clear()
    run = run_timed(argv, timeout)
    records = emu.requests.records
    try:
        found: dict[str, Any] = json.loads(out_file.read_text())
    except (OSError, ValueError) as exc:
        found = {"problem": f"no profile ({exc}): {run['stderr'][-400:]}"}
    problems = check_firewall(emu, objs)
    return {
        "seconds": run["seconds"],
        **found,
        **request_summary(records),
        "problem": verdict(problems),
    }


# --------------------------------------------------------------------------
# oxl-opnsense-client, in a worker process of its own (as FazAI's CLI is)


OXL_MODES = {
    "each": "oxl: 1 module run/object + 2 reloads",
    "multi": "oxl: alias_multi + rule_multi + 2 reloads",
}


def oxl_tasks(objs: Objects, mode: str) -> dict[str, Any]:
    """The playbook, as data, aliases first (the rules use them), then one `reload` per
    subsystem (the modules' own `reload` defaults to false).

    ``each``: one `alias` or `rule` module run per object, as an Ansible task per object
    (or a loop) does. ``multi``: the collection's mass-management modules, `alias_multi`
    and `rule_multi`, each given every object at once: one read of the model, then one
    write per object over one session."""
    aliases = [oxl_params(o) for o in objs.aliases]
    rules = [oxl_params(o) for o in objs.rules]
    if mode == "each":
        tasks = aliases + rules
    else:
        entries = [params for _, params in rules]
        for entry in entries:
            entry.pop("match_fields")
        tasks = [
            ("alias_multi", {"multi": [params for _, params in aliases]}),
            ("rule_multi", {"multi": entries, "match_fields": ["description"]}),
        ]
    return {"tasks": tasks, "reloads": ["alias", "rule"]}


def oxl_apply(
    emu: EmulatorServer,
    objs: Objects,
    mode: str,
    workdir: Path,
    api_timeout: float,
    timeout: float,
) -> dict[str, Any]:
    assert emu.certificate is not None
    workdir.mkdir(parents=True, exist_ok=True)
    task_file, result_file = workdir / "oxl-tasks.json", workdir / "oxl-result.json"
    task_file.write_text(
        json.dumps(
            {
                "port": emu.port,
                "ca_file": str(emu.certificate),
                "api_timeout": api_timeout,
                **oxl_tasks(objs, mode),
            }
        )
    )
    env = {**os.environ, _oxl.KEY_ENV: emu.api_key, SECRET_ENV: emu.api_secret}
    argv = [sys.executable, str(BENCH / "_oxl.py"), str(task_file), str(result_file)]
    emu.requests.clear()
    run = run_timed(argv, timeout, env)
    records = emu.requests.records
    problems = []
    worker: dict[str, Any] = {}
    try:
        worker = json.loads(result_file.read_text())
    except (OSError, ValueError) as exc:
        problems.append(f"no result from the worker ({exc}): {run['stderr'][-400:].strip()}")
    if worker.get("errors"):
        problems.append(f"{len(worker['errors'])} module errors, e.g. {worker['errors'][0]}")
    elif worker and worker.get("changed") != worker.get("tasks"):
        problems.append(f"{worker.get('changed')} of {worker.get('tasks')} tasks changed")
    problems += check_firewall(emu, objs)
    return {
        "ok": not problems,
        "problem": verdict(problems),
        "problems": problems[:20],
        "seconds": run["seconds"],
        "tool_cpu_seconds": run["tool_cpu_seconds"],
        "emulator_cpu_seconds": run["emulator_cpu_seconds"],
        "rc": run["rc"],
        **request_summary(records),
        "worker": worker,
        "command": "python bench/_oxl.py TASKS RESULT",
    }


# --------------------------------------------------------------------------


def best(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    good = [r for r in runs if r["ok"]]
    return min(good, key=lambda r: r["seconds"]) if good else None


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    top = best(runs)
    return {
        "ok": bool(runs) and all(r["ok"] for r in runs),
        "problem": next((r["problem"] for r in runs if r["problem"]), None),
        "runs": runs,
        "seconds_all": [r["seconds"] for r in runs],
        "best_seconds": top["seconds"] if top else None,
        "tool_cpu_all": [r["tool_cpu_seconds"] for r in runs],
        "least_tool_cpu_seconds": min(
            (r["tool_cpu_seconds"] for r in runs if r["ok"]), default=None
        ),
        "least_emulator_cpu_seconds": min(
            (r["emulator_cpu_seconds"] for r in runs if r["ok"]), default=None
        ),
        "requests": runs[0]["requests"] if runs else None,
        "reloads": runs[0]["reloads"] if runs else None,
    }


def show(label: str, run: dict[str, Any]) -> None:
    print(
        f"{label}: {run['seconds']:.2f} s (cpu: tool {run['tool_cpu_seconds']:.2f} s, emulator "
        f"{run['emulator_cpu_seconds']:.2f} s), {run['requests']} requests ({run['reloads']} "
        f"reloads, {run['errors']} errors)"
        + (f"  FAILED: {run['problem']}" if run["problem"] else ""),
        flush=True,
    )


def show_profile(prof: dict[str, Any]) -> None:
    failed = f"  FAILED: {prof['problem']}" if prof["problem"] else ""
    print(
        f"\nfazai apply, profiled in a worker process: {prof['seconds']:.2f} s wall, "
        f"exit {prof.get('exit_code')}, {prof['requests']} requests, emulator busy "
        f"{prof['emulator_seconds']:.2f} s{failed}"
    )
    if "phases" not in prof:
        return
    start = prof["seconds"] - prof["command_seconds"]
    print(f"  {'python start + imports':<66}{start:>7.2f} s")
    for label in PHASES:  # in the order they happen
        v = prof["phases"].get(label)
        if v:
            print(f"  {label:<66}{v['seconds']:>7.2f} s  x{v['calls']}")
    print("  requests by endpoint (count, emulator busy s):")
    for path, n in prof["by_path"].items():
        print(f"    {path:<64}{n:>5}  {prof['by_path_seconds'][path]:>6.2f}")
    print(prof["profile"]["tottime"])


def _positional(
    run: Callable[..., dict[str, Any]], emu: EmulatorServer, workdir: Path
) -> dict[str, Any]:
    return run(emu, workdir=workdir)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--aliases", type=int, default=100)
    ap.add_argument("--rules", type=int, default=200)
    ap.add_argument("--version", default="26.1", help="OPNsense release the emulator imitates")
    ap.add_argument("--runs", type=int, default=3, help="runs per tool, each on a fresh firewall")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per tool run")
    ap.add_argument("--api-timeout", type=float, default=60, help="oxl's per-request timeout")
    ap.add_argument(
        "--oxl",
        default="each,multi",
        help="oxl-opnsense-client ways to run, comma-separated: each, multi ('' for none)",
    )
    ap.add_argument("--profile", action="store_true", help="profile one in-process FazAI apply")
    ap.add_argument(
        "--server-latency",
        type=float,
        default=0.0,
        help="seconds the emulator waits before answering each request (a model of a real "
        "firewall's PHP start and config save; concurrent requests wait side by side)",
    )
    ap.add_argument(
        "--fazai-before",
        metavar="CMD",
        help="a second `fazai` to run interleaved with this one (say a script that runs an "
        "export of the parent commit), shown as fazai_before",
    )
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = ap.parse_args()

    objs = build_objects(args.aliases, args.rules, 0, managed_share=1.0, drift=False)
    have_oxl = oxl_version()
    modes = [m for m in args.oxl.split(",") if m]
    unknown = sorted(set(modes) - set(OXL_MODES))
    if unknown:
        ap.error(f"--oxl: unknown {', '.join(unknown)}; choose from {', '.join(OXL_MODES)}")
    if have_oxl is None and modes:
        print("oxl-opnsense-client is not installed: skipped", file=sys.stderr)
        modes = []
    tools: list[tuple[str, Callable[[EmulatorServer, Path], dict[str, Any]]]] = [
        ("fazai", lambda emu, wd: fazai_apply(emu, objs, wd, args.timeout)),
    ]
    if args.fazai_before:
        tools.append(
            (
                "fazai_before",
                lambda emu, wd: fazai_apply(emu, objs, wd, args.timeout, args.fazai_before),
            )
        )
    for mode in modes:
        run_oxl = functools.partial(
            oxl_apply, objs=objs, mode=mode, api_timeout=args.api_timeout, timeout=args.timeout
        )
        tools.append((f"oxl_{mode}", functools.partial(_positional, run_oxl)))
    results: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "opnsense_version": args.version,
        "server_latency_seconds": args.server_latency,
        "oxl_version": have_oxl,
        "objects": {"aliases": len(objs.aliases), "rules": len(objs.rules)},
        "tools": {},
    }
    latency = f", {args.server_latency * 1000:g} ms per request" if args.server_latency else ""
    print(
        f"OPNsense {args.version} emulator (TLS{latency}), fresh per run: {len(objs.aliases)} "
        f"aliases and {len(objs.rules)} rules to create; {args.runs} runs per tool, interleaved",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="fazai-bench-opn-apply-"))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in tools}
    try:
        for i in range(args.runs):
            for name, run in tools:
                with emulator(args.version) as emu:
                    if args.server_latency:
                        emu.faults.delay(args.server_latency, times=None)
                    outcome = run(emu, workdir / f"{name}-{i + 1}")
                runs[name].append(outcome)
                show(f"{name} run {i + 1}", outcome)
                if name.startswith("fazai"):
                    again = outcome["second_plan"]
                    print(
                        f"  second fazai plan: rc={again['rc']}, {again.get('changes')} changes, "
                        f"{again['requests']} requests, {again['seconds']:.2f} s",
                        flush=True,
                    )
        if args.profile:
            with emulator(args.version) as emu:
                prof = fazai_profile(emu, objs, workdir / "profile", args.timeout)
            results["fazai_profile"] = prof
            show_profile(prof)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    for name, _ in tools:
        results["tools"][name] = summarize(runs[name])
    fz = results["tools"]["fazai"]
    print()
    print(
        f"{'tool':<44}{'requests':>9}{'reloads':>8}{'wall s':>8}{'x':>6}"
        f"{'tool cpu s':>11}{'x':>6}{'emu cpu s':>10}  wall s, all runs"
    )
    base = fz["best_seconds"]
    base_cpu = fz["least_tool_cpu_seconds"]
    labels = {
        "fazai": "fazai apply --auto-approve (CLI)",
        "fazai_before": "the same, --fazai-before",
    }
    labels.update({f"oxl_{mode}": label for mode, label in OXL_MODES.items()})
    ratios: dict[str, float] = {}
    for name, _ in tools:
        t = results["tools"][name]
        label, every = labels[name], ", ".join(f"{x:.2f}" for x in t["seconds_all"])
        top = best(t["runs"])
        if not t["ok"] or top is None:
            print(f"{label:<44}{t['requests']!s:>9}{t['reloads']!s:>8}{'FAILED':>8}  {every}")
            continue
        cpu = t["least_tool_cpu_seconds"]
        ratio = top["seconds"] / base if base else None
        cpu_ratio = cpu / base_cpu if base_cpu else None
        if ratio is not None and cpu_ratio is not None and name != "fazai":
            # oxl_multi/fazai: how many times FazAI's time oxl takes (2.0 is the target)
            ratios[f"{name}/fazai"] = round(ratio, 2)
            ratios[f"{name}/fazai_tool_cpu"] = round(cpu_ratio, 2)
            ratios[f"{name}/fazai_requests"] = round(top["requests"] / fz["requests"], 2)
        shown = f"{ratio:.1f}x" if ratio is not None else "-"
        shown_cpu = f"{cpu_ratio:.1f}x" if cpu_ratio is not None else "-"
        print(
            f"{label:<44}{top['requests']:>9}{top['reloads']:>8}{top['seconds']:>8.2f}{shown:>6}"
            f"{cpu:>11.2f}{shown_cpu:>6}{t['least_emulator_cpu_seconds']:>10.2f}  {every}"
        )
    results["ratios"] = ratios
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {args.output}")
    return 0 if all(t["ok"] for t in results["tools"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
