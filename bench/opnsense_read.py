#!/usr/bin/env python3
"""Reading a big OPNsense firewall: `fazai plan` against oxl-opnsense-client.

Starts the OPNsense REST API emulator (controller.testing.opnsense) over HTTPS, fills it
with aliases, filter rules and Unbound host overrides (half of them FazAI's, some of
those drifted by hand), then times:

* FazAI: load the desired state and plan the firewall, in-process (first run and best of
  N) and the whole `fazai plan DIR --output json` CLI once, as a subprocess;
* oxl-opnsense-client (the Python core of the oxlorg.opnsense Ansible collection):
  (a) reading every alias, rule and host override with its `list` module, and
  (b) one check-mode module run per desired object, as its Ansible users write one task
  per object (a sample, extrapolated per kind, unless --oxl-sample 0).

Every HTTP request is counted from the emulator's request log. Results go to
bench/results/opnsense_read.json.

    python bench/opnsense_read.py [--rules 2000] [--aliases 500] [--hosts 200] [--version 26.1]

Needs `pip install oxl-opnsense-client` for the peer (skipped with a note when missing).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

# bench/ on the path for the shared module, which puts the repository there in turn.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _opnsense import (
    RESULTS_DIR,
    Obj,
    Objects,
    body,
    build_objects,
    emulator,
    machine,
    oxl_client_for,
    oxl_params,
    oxl_version,
    quiet,
    server_seconds,
    write_fazai,
)

from controller import providers
from controller.engine import plan as planning
from controller.model import loader
from controller.plan import items as planitems
from controller.plan.diff import Action
from controller.source.open import open_source
from controller.testing.opnsense import Drift, EmulatorServer, crud

providers.load_all()  # an entry point: the platforms' kinds, before any document loads

RESULTS = RESULTS_DIR / "opnsense_read.json"

# --------------------------------------------------------------------------
# the emulator


def fill(emu: EmulatorServer, objs: Objects) -> None:
    """Put every object that should be live straight into the emulator's configuration,
    each one normalized and validated as a write would be, then save and apply once."""
    state = emu.state
    with state.lock:
        for o in objs.all():
            if o.drift == "missing":
                continue
            coll = state.collections[o.emu_kind]
            item = coll.defaults()
            crud.set_nodes(coll, item, body(o))
            problems = crud.validate(state, coll, item)
            if problems:
                raise RuntimeError(f"the emulator refuses {o.kind} {o.name}: {problems}")
            key = o.uuid or str(uuidlib.uuid4())
            state.items[o.emu_kind][key] = item
        state.save("bench: bulk fill", "root@127.0.0.1")
        state.mark_applied(["alias", "filter", "unbound"])


def make_drift(emu: EmulatorServer, objs: Objects) -> None:
    """The hand-made drift (web UI edits, unapplied) on FazAI's objects."""
    drift = Drift(emu.state)
    for o in objs.all():
        if o.drift != "changed":
            continue
        if o.kind == "FirewallAlias":
            uid = emu.state.find_alias(o.spec["name"])
            assert uid is not None
            content = "\n".join([*map(str, o.spec["content"]), _extra_content(o.spec)])
            drift.edit("alias", uid, {"content": content})
        elif o.kind == "FirewallRule":
            drift.edit("rule", o.uuid, {"log": "0" if o.spec["log"] else "1"})
        else:
            drift.edit("host", o.uuid, {"server": "10.99.99.99"})


def _extra_content(spec: dict[str, Any]) -> str:
    return {"host": "10.254.0.9", "network": "10.254.9.0/24", "port": "65000"}[spec["type"]]


# --------------------------------------------------------------------------
# FazAI


def check_plan(result: planitems.Plan, objs: Objects) -> str | None:
    if len(result.nodes) != 1:
        return f"{len(result.nodes)} nodes in the plan"
    node = result.nodes[0]
    if node.error:
        return f"node error: {node.error}"
    if len(node.items) != len(objs.managed()):
        return f"{len(node.items)} items, expected {len(objs.managed())}"
    errors = [f"{i.kind}/{i.name}: {i.error}" for i in node.items if i.action is Action.ERROR]
    if errors:
        return f"{len(errors)} errors, e.g. {errors[0]}"
    got = {(i.kind, i.name): i.action for i in node.items if i.action is not Action.NOOP}
    want = objs.expected_changes()
    if got != want:
        missed = sorted(set(want) - set(got))[:3]
        extra = sorted(set(got) - set(want))[:3]
        return f"{len(got)} changes, expected {len(want)}; missed {missed}, unexpected {extra}"
    return None


def fazai_run(emu: EmulatorServer, state_dir: Path, objs: Objects) -> dict[str, Any]:
    emu.requests.clear()
    t0 = time.perf_counter()
    state = loader.load(open_source(str(state_dir)))
    t1 = time.perf_counter()
    result = asyncio.run(planning.build(state))
    t2 = time.perf_counter()
    records = emu.requests.records
    return {
        "seconds": round(t2 - t0, 3),
        "load_seconds": round(t1 - t0, 3),
        "plan_seconds": round(t2 - t1, 3),
        "requests": len(records),
        "paths": sorted({r.path for r in records}),
        "emulator_seconds": server_seconds(records),
        "problem": check_plan(result, objs),
    }


def fazai_profile(emu: EmulatorServer, state_dir: Path, top: int) -> str:
    state = loader.load(open_source(str(state_dir)))
    prof = cProfile.Profile()
    prof.enable()
    asyncio.run(planning.build(state))
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).sort_stats("cumulative")
    stats.print_stats(top)
    return out.getvalue()


def fazai_cli(
    emu: EmulatorServer, state_dir: Path, objs: Objects, timeout: float
) -> dict[str, Any]:
    fazai = shutil.which("fazai") or "fazai"
    argv = [fazai, "plan", str(state_dir), "--output", "json"]
    emu.requests.clear()
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=os.environ)
    seconds = time.perf_counter() - t0
    records = emu.requests.records
    problem = None
    try:
        out = json.loads(proc.stdout)
        changes = {(c["kind"], c["name"]): c["action"] for c in out["changes"]}
        want = {k: a.value for k, a in objs.expected_changes().items()}
        if proc.returncode != 1:
            problem = f"exit status {proc.returncode} (1 = drift expected)"
        elif changes != want:
            problem = f"{len(changes)} changes in the JSON, expected {len(want)}"
        node_seconds = out["nodes"][0]["seconds"]
    except (ValueError, KeyError, IndexError) as exc:
        problem = f"unreadable output ({exc}): {proc.stderr[-300:]}"
        node_seconds = None
    return {
        "seconds": round(seconds, 3),
        "node_seconds": node_seconds,
        "rc": proc.returncode,
        "requests": len(records),
        "emulator_seconds": server_seconds(records),
        "problem": problem,
        "command": " ".join(argv),
    }


# --------------------------------------------------------------------------
# oxl-opnsense-client


def oxl_read_all(emu: EmulatorServer, objs: Objects, timeout: float) -> dict[str, Any]:
    emu.requests.clear()
    counts: dict[str, int] = {}
    problem = None
    t0 = time.perf_counter()
    with quiet() as said, oxl_client_for(emu, timeout) as client:
        for target in ("alias", "rule", "unbound_host"):
            answer = client.run_module("list", params={"target": target})
            if answer["error"]:
                problem = f"list {target}: {answer['error'][:300]}"
                break
            counts[target] = len(answer["result"]["data"] or [])
    seconds = time.perf_counter() - t0
    records = emu.requests.records
    want = {
        "alias": sum(1 for o in objs.aliases if o.drift != "missing"),
        "rule": sum(1 for o in objs.rules if o.drift != "missing"),
        "unbound_host": sum(1 for o in objs.hosts if o.drift != "missing"),
    }
    if problem is None and counts != want:
        problem = f"listed {counts}, expected {want}"
    return {
        "seconds": round(seconds, 3),
        "requests": len(records),
        "paths": sorted({f"{r.method} {r.path}" for r in records}),
        "emulator_seconds": server_seconds(records),
        "listed": counts,
        "problem": problem,
        "warnings": [w for w in said.getvalue().splitlines() if w.strip()][:5],
    }


def sample_of(items: list[Obj], share: float) -> list[Obj]:
    """Every k-th object, at least one, with one changed and one missing object swapped
    in when the spacing misses them, so that the sample checks drift too."""
    if share >= 1 or not items:
        return list(items)
    n = max(1, round(len(items) * share))
    step = len(items) / n
    picked = [items[int(k * step)] for k in range(n)]
    for drift in ("changed", "missing"):
        if any(o.drift == drift for o in picked):
            continue
        extra = next((o for o in items if o.drift == drift), None)
        slot = next((i for i in reversed(range(len(picked))) if picked[i].drift is None), None)
        if extra is not None and slot is not None:
            picked[slot] = extra
    return picked


def oxl_check(emu: EmulatorServer, objs: Objects, sample: int, timeout: float) -> dict[str, Any]:
    managed = objs.managed()
    share = 1.0 if sample <= 0 or sample >= len(managed) else sample / len(managed)
    per_kind: dict[str, dict[str, Any]] = {}
    mismatches: list[str] = []
    errors: list[str] = []
    emu.requests.clear()
    t0 = time.perf_counter()
    with quiet(), oxl_client_for(emu, timeout) as client:
        setup_seconds = time.perf_counter() - t0
        setup_requests = len(emu.requests)
        for kind, group in (
            ("FirewallAlias", [o for o in objs.aliases if o.managed]),
            ("FirewallRule", [o for o in objs.rules if o.managed]),
            ("HostOverride", [o for o in objs.hosts if o.managed]),
        ):
            picked = sample_of(group, share)
            before = len(emu.requests)
            k0 = time.perf_counter()
            changed = 0
            for o in picked:
                module, params = oxl_params(o)
                answer = client.run_module(module, check_mode=True, params=params)
                if answer["error"]:
                    errors.append(f"{kind}/{o.name}: {answer['error'][:200]}")
                    continue
                did = bool(answer["result"]["changed"])
                changed += did
                if did != (o.drift is not None):
                    mismatches.append(f"{kind}/{o.name}: changed={did}, drift={o.drift}")
            spent = time.perf_counter() - k0
            per_kind[kind] = {
                "objects": len(group),
                "checked": len(picked),
                "changed": changed,
                "seconds": round(spent, 3),
                "seconds_per_object": round(spent / len(picked), 4) if picked else 0,
                "requests": len(emu.requests) - before,
            }
    measured = time.perf_counter() - t0
    records = emu.requests.records
    checked = sum(k["checked"] for k in per_kind.values())
    full = checked == len(managed)
    estimate = setup_seconds + sum(
        k["seconds_per_object"] * k["objects"] for k in per_kind.values()
    )
    req_estimate = setup_requests + sum(
        round(k["requests"] / k["checked"] * k["objects"]) if k["checked"] else 0
        for k in per_kind.values()
    )
    problem = None
    if errors:
        problem = f"{len(errors)} module errors, e.g. {errors[0]}"
    elif mismatches:
        problem = f"{len(mismatches)} wrong change verdicts, e.g. {mismatches[0]}"
    return {
        "desired_objects": len(managed),
        "checked_objects": checked,
        "extrapolated": not full,
        "measured_seconds": round(measured, 3),
        "measured_requests": len(records),
        "measured_emulator_seconds": server_seconds(records),
        "client_setup_seconds": round(setup_seconds, 3),
        "client_setup_requests": setup_requests,
        "seconds": round(measured if full else estimate, 3),
        "requests": len(records) if full else req_estimate,
        "per_kind": per_kind,
        "problem": problem,
    }


# --------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rules", type=int, default=2000)
    ap.add_argument("--aliases", type=int, default=500)
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--version", default="26.1", help="OPNsense release the emulator imitates")
    ap.add_argument("--fazai-runs", type=int, default=3, help="timed runs after the first")
    ap.add_argument(
        "--oxl-sample",
        type=int,
        default=100,
        help="desired objects checked one by one with oxl (spread over the kinds, "
        "extrapolated per kind); 0 checks them all",
    )
    ap.add_argument("--timeout", type=float, default=600, help="seconds, for the CLI run")
    ap.add_argument("--api-timeout", type=float, default=60, help="oxl's per-request timeout")
    ap.add_argument("--skip-oxl", action="store_true")
    ap.add_argument("--skip-cli", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile one in-process plan")
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = ap.parse_args()

    objs = build_objects(args.aliases, args.rules, args.hosts)
    workdir = Path(tempfile.mkdtemp(prefix="fazai-bench-opn-"))
    results: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "opnsense_version": args.version,
        "objects": {
            "aliases": len(objs.aliases),
            "rules": len(objs.rules),
            "host_overrides": len(objs.hosts),
            "desired": len(objs.managed()),
            "expected_changes": len(objs.expected_changes()),
        },
        "tools": {},
    }
    try:
        with emulator(args.version) as emu:
            t0 = time.perf_counter()
            fill(emu, objs)
            make_drift(emu, objs)
            results["fill_seconds"] = round(time.perf_counter() - t0, 2)
            print(
                f"OPNsense {emu.version} emulator on {emu.url} (TLS): "
                f"{len(objs.aliases)} aliases, {len(objs.rules)} rules, {len(objs.hosts)} host "
                f"overrides; {len(objs.managed())} FazAI's, {len(objs.expected_changes())} drifted;"
                f" filled in {results['fill_seconds']} s",
                flush=True,
            )
            state_dir = write_fazai(emu, objs, workdir / "fazai")

            # -- fazai, in-process
            runs = []
            for i in range(1 + args.fazai_runs):
                run = fazai_run(emu, state_dir, objs)
                runs.append(run)
                print(
                    f"fazai load+plan run {i + 1}: {run['seconds']:.3f} s (load "
                    f"{run['load_seconds']:.3f} s, plan {run['plan_seconds']:.3f} s), "
                    f"{run['requests']} requests, emulator busy {run['emulator_seconds']:.3f} s"
                    + (f"  FAILED: {run['problem']}" if run["problem"] else ""),
                    flush=True,
                )
            ok = all(r["problem"] is None for r in runs)
            timed = runs[1:] or runs
            best = min(timed, key=lambda r: r["seconds"])
            results["tools"]["fazai"] = {
                "ok": ok,
                "problem": next((r["problem"] for r in runs if r["problem"]), None),
                "runs": runs,
                "first_seconds": runs[0]["seconds"],
                "best_seconds": best["seconds"],
                "best_plan_seconds": min(r["plan_seconds"] for r in timed),
                "requests": runs[0]["requests"],
                "requests_paths": runs[0]["paths"],
            }
            if args.profile:
                text = fazai_profile(emu, state_dir, 25)
                (workdir / "fazai-profile.txt").write_text(text)
                results["fazai_profile_top"] = text
                print(text)

            # -- fazai, the CLI
            if not args.skip_cli:
                cli = fazai_cli(emu, state_dir, objs, args.timeout)
                results["tools"]["fazai_cli"] = {"ok": cli["problem"] is None, **cli}
                print(
                    f"fazai plan (CLI): {cli['seconds']:.3f} s, rc={cli['rc']}, "
                    f"{cli['requests']} requests"
                    + (f"  FAILED: {cli['problem']}" if cli["problem"] else ""),
                    flush=True,
                )

            # -- oxl-opnsense-client
            if not args.skip_oxl:
                results["oxl_version"] = oxl_version()
                if results["oxl_version"] is None:
                    print("oxl-opnsense-client is not installed: skipped", file=sys.stderr)
                else:
                    read = oxl_read_all(emu, objs, args.api_timeout)
                    results["tools"]["oxl_read_all"] = {"ok": read["problem"] is None, **read}
                    print(
                        f"oxl list alias/rule/unbound_host: {read['seconds']:.3f} s, "
                        f"{read['requests']} requests"
                        + (f"  FAILED: {read['problem']}" if read["problem"] else ""),
                        flush=True,
                    )
                    chk = oxl_check(emu, objs, args.oxl_sample, args.api_timeout)
                    results["tools"]["oxl_check_each"] = {"ok": chk["problem"] is None, **chk}
                    how = (
                        f"{chk['checked_objects']} of {chk['desired_objects']} checked in "
                        f"{chk['measured_seconds']:.2f} s, extrapolated per kind"
                        if chk["extrapolated"]
                        else f"all {chk['desired_objects']} checked"
                    )
                    print(
                        f"oxl check mode, one module run per desired object: "
                        f"{chk['seconds']:.2f} s, {chk['requests']} requests ({how})"
                        + (f"  FAILED: {chk['problem']}" if chk["problem"] else ""),
                        flush=True,
                    )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    # -- table
    fz = results["tools"]["fazai"]
    base = fz["best_seconds"] if fz["ok"] else None
    rows: list[tuple[str, Any, Any, bool]] = [
        ("fazai load+plan (first)", fz["requests"], fz["first_seconds"], fz["ok"]),
        (f"fazai load+plan (best of {args.fazai_runs})", fz["requests"], base, fz["ok"]),
    ]
    tools = results["tools"]
    if "fazai_cli" in tools:
        t = tools["fazai_cli"]
        rows.append(("fazai plan CLI (subprocess)", t["requests"], t["seconds"], t["ok"]))
    if "oxl_read_all" in tools:
        t = tools["oxl_read_all"]
        rows.append(("oxl list x3 (read all)", t["requests"], t["seconds"], t["ok"]))
    if "oxl_check_each" in tools:
        t = tools["oxl_check_each"]
        mark = "~" if t["extrapolated"] else ""
        rows.append(
            (f"oxl check mode, 1 run/object{' (est.)' if mark else ''}",
             f"{mark}{t['requests']}", t["seconds"], t["ok"])
        )  # fmt: skip
    print()
    print(f"{'tool':<40}{'requests':>10}{'wall s':>10}{'x fazai':>10}")
    ratios: dict[str, float] = {}
    for name, reqs, secs, ok in rows:
        if not ok or secs is None:
            print(f"{name:<40}{reqs!s:>10}{'FAILED':>10}")
            continue
        ratio = f"{secs / base:.1f}x" if base else "-"
        print(f"{name:<40}{reqs!s:>10}{secs:>10.3f}{ratio:>10}")
    for key in ("fazai_cli", "oxl_read_all", "oxl_check_each"):
        t = tools.get(key)
        if t and t["ok"] and base:
            ratios[f"{key}/fazai_best"] = round(t["seconds"] / base, 2)
            ratios[f"{key}/fazai_first"] = round(t["seconds"] / fz["first_seconds"], 2)
    if tools.get("fazai_cli", {}).get("ok"):
        cli_s = tools["fazai_cli"]["seconds"]
        for key in ("oxl_read_all", "oxl_check_each"):
            t = tools.get(key)
            if t and t["ok"]:
                ratios[f"{key}/fazai_cli"] = round(t["seconds"] / cli_s, 2)
    results["ratios"] = ratios
    target = {
        "fazai_requests_at_most_5": fz["requests"] <= 5,
        "peer_at_least_10x_slower": bool(
            ratios.get("oxl_read_all/fazai_best", 0) >= 10
            and ratios.get("oxl_check_each/fazai_best", 0) >= 10
        ),
    }
    results["target"] = target
    print(f"\ntarget: {target}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {args.output}")
    return 0 if all(t["ok"] for t in tools.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
