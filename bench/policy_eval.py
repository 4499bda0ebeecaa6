#!/usr/bin/env python3
"""What the policy stage adds to a 1,000-item plan.

Starts the OPNsense REST API emulator over HTTPS with nothing on it, writes a desired
state of 1,000 objects (aliases, filter rules, host overrides) plus a few repository
Policy documents, and times, best of N in-process:

* plan: load the desired state and plan the firewall (every object is a create, so
  every item is a change the policies look at: the worst case for them);
* policy: ``controller.policy.load(state)`` (compiling every expression) plus
  ``PolicySet.evaluate`` over the plan, with the shipped defaults and the repository's
  policies.

The target: policy time under 5% of plan time. A second figure evaluates 1,000
synthetic Linux items (Users, Files, Packages) to give the per-item cost without a
network in the way. Results go to bench/results/policy_eval.json.

    python bench/policy_eval.py [--aliases 200] [--rules 600] [--hosts 200] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _opnsense import RESULTS_DIR, build_objects, emulator, machine, write_fazai

import controller.policy
from controller.engine import plan as planning
from controller.model import loader
from controller.plan.diff import Action, Change
from controller.plan.items import NodePlan, Plan, PlanItem
from controller.plan.verdicts import RunContext
from controller.source.open import open_source

RUN = RunContext(trigger="commit", mode="auto", actor="bench", source="bench")

REPO_POLICIES = [
    {"name": "no-any-any", "match": {"kinds": ["FirewallRule"]}, "rules": [
        {"name": "no-open-source", "effect": "deny", "message": "a pass rule from any",
         "expression": '"source" in item.spec && item.spec.source == "any" '
                       '&& "action" in item.spec && item.spec.action == "pass" '
                       '&& item.name.startsWith("never-")'}]},
    {"name": "big-alias", "match": {"kinds": ["FirewallAlias"]}, "rules": [
        {"name": "many-entries", "effect": "requireApproval", "message": "over 500 entries",
         "expression": '"content" in item.fields && type(item.fields.content.desired) == list '
                       '&& size(item.fields.content.desired) > 500'}]},
    {"name": "dns-domain", "match": {"kinds": ["HostOverride"], "actions": ["delete"]},
     "rules": [{"name": "keep-internal", "effect": "deny", "message": "internal names stay",
                "expression": 'item.name.endsWith(".internal")'}]},
]  # fmt: skip


def write_policies(folder: Path) -> None:
    docs = [
        {"apiVersion": "fazai.dev/v1alpha1", "kind": "Policy", "metadata": {"name": p["name"]},
         "spec": {k: v for k, v in p.items() if k != "name"}}
        for p in REPO_POLICIES
    ]  # fmt: skip
    (folder / "policies.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))


def best(values: list[float]) -> float:
    return round(min(values), 4)


def firewall(args: argparse.Namespace) -> dict[str, Any]:
    objs = build_objects(args.aliases, args.rules, args.hosts, managed_share=1.0, drift=False)
    with emulator(args.version) as emu, tempfile.TemporaryDirectory() as tmp:
        state_dir = write_fazai(emu, objs, Path(tmp))
        write_policies(state_dir)
        plans: list[float] = []
        policies: list[float] = []
        evaluate_only: list[float] = []
        plan: Plan | None = None
        judged: Plan | None = None
        for _ in range(args.runs):
            t0 = time.perf_counter()
            state = loader.load(open_source(str(state_dir)))
            plan = asyncio.run(planning.build(state))
            t1 = time.perf_counter()
            policy_set = controller.policy.load(state)
            t2 = time.perf_counter()
            judged = policy_set.evaluate(plan, RUN, state.nodes)
            t3 = time.perf_counter()
            plans.append(t1 - t0)
            policies.append(t3 - t1)
            evaluate_only.append(t3 - t2)
        assert plan is not None and judged is not None
        items = sum(len(n.items) for n in plan.nodes)
        changed = sum(len(n.changed) for n in plan.nodes)
        held = sum(1 for n in judged.nodes for i in n.items if i.verdicts)
        errors = [i.error for n in plan.nodes for i in n.items if i.action is Action.ERROR]
        return {
            "items": items,
            "changes": changed,
            "items_with_verdicts": held,
            "plan_errors": len(errors),
            "plan_seconds": best(plans),
            "policy_seconds": best(policies),
            "evaluate_seconds": best(evaluate_only),
            "overhead_percent": round(100 * min(policies) / min(plans), 2),
        }


def synthetic(args: argparse.Namespace) -> dict[str, Any]:
    """1,000 Linux items: per-item evaluation cost with the shipped defaults alone."""
    items = []
    for i in range(1000):
        kind = ("User", "File", "Package", "Service")[i % 4]
        action = (Action.CREATE, Action.UPDATE, Action.DELETE)[i % 3]
        changes = (Change("uid", i, None),) if kind == "User" else (Change("mode", "0644", "0600"),)
        items.append(PlanItem("web-1", kind, f"obj-{i}", action, changes))
    plan = Plan("bench", None, (NodePlan("web-1", "linux", tuple(items)),))
    policy_set = controller.policy.PolicySet(controller.policy.stage.shipped_policies())
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        policy_set.evaluate(plan, RUN, {})
        times.append(time.perf_counter() - t0)
    return {"items": 1000, "evaluate_seconds": best(times),
            "microseconds_per_item": round(1e6 * min(times) / 1000, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aliases", type=int, default=200)
    parser.add_argument("--rules", type=int, default=600)
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--version", default="26.1")
    args = parser.parse_args()
    result = {
        "machine": machine(),
        "firewall_1000": firewall(args),
        "synthetic_linux_1000": synthetic(args),
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "policy_eval.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
