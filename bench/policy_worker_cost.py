#!/usr/bin/env python3
"""What running the policy stage in a worker process would cost: a 1,000-item plan sent
to a warm forkserver worker and back (nothing evaluated), and a fresh pool per plan.
Measured to decide between a killable worker and static limits (bench/README.md).

    python bench/policy_worker_cost.py
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import pickle
import time

from controller.plan.diff import Action, Change
from controller.plan.items import NodePlan, Plan, PlanItem

FIELDS = {
    "action": "pass",
    "interface": ["lan"],
    "direction": "in",
    "protocol": "TCP",
    "source_net": "any",
    "destination_net": "10.0.0.1",
    "destination_port": "443",
    "enabled": True,
    "log": False,
}


def echo(plan: Plan) -> Plan:
    return plan


def sample() -> Plan:
    items = tuple(
        PlanItem(
            "fw",
            "FirewallRule",
            f"r{i}",
            Action.CREATE,
            (*(Change(f, None, v) for f, v in FIELDS.items()), Change("description", None, f"{i}")),
        )
        for i in range(1000)
    )
    return Plan("bench", None, (NodePlan("fw", "opnsense", items),))


def main() -> None:
    plan = sample()
    context = multiprocessing.get_context("forkserver")
    print("pickled bytes", len(pickle.dumps(plan)))
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        pool.submit(echo, plan).result(timeout=60)  # start the worker
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            pool.submit(echo, plan).result(timeout=60)
            best = min(best, time.perf_counter() - start)
    print("warm worker round trip, s", round(best, 4))
    start = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        pool.submit(echo, plan).result(timeout=60)
    print("fresh pool and round trip, s", round(time.perf_counter() - start, 4))


if __name__ == "__main__":
    main()
