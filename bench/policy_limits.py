#!/usr/bin/env python3
"""The worst case one rule can cost within the static limits (controller/policy/limits.py).

The CEL library has no cost budget and holds the GIL, so the limits are what bound an
evaluation. Two cases, each timed for one item:

* literals: two 256-entry list literals, one comprehension inside the other, and a body
  as long as the 4096-character limit leaves: the most an expression alone can cost;
* data: the same nesting over a list the item carries (an alias's content of N entries):
  n^2 in the repository's own data, which no static limit can see.

    python bench/policy_limits.py [--entries 1000 2000 4000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cel

from controller.policy import limits
from controller.policy.expressions import compile_checked


def literal_worst() -> str:
    numbers = "[" + ",".join(str(i) for i in range(limits.MAX_LITERAL)) + "]"
    # all() over a true body and exists() over a false one visit every pair.
    head = f"{numbers}.all(a, !{numbers}.exists(b, "
    tail = "))"
    body = "a + b"
    while len(head) + len(body) + len(" + a + b < 0") + len(tail) <= limits.MAX_LENGTH:
        body += " + a + b"
    return head + body + " < 0" + tail


def timed(source: str, variables: dict[str, object]) -> float:
    program = compile_checked(source)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        program.evaluate(cel.Context(variables=variables))
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, nargs="*", default=[1000, 2000, 4000])
    args = parser.parse_args()
    results: dict[str, object] = {}
    source = literal_worst()
    results["literals"] = {"length": len(source), "seconds": timed(source, {})}
    data: dict[str, object] = {}
    for n in args.entries:
        content = [f"10.0.{i // 256}.{i % 256}" for i in range(n)]
        item = {"kind": "FirewallAlias", "spec": {"content": content}, "fields": {},
                "node": "fw", "name": "a", "action": "create", "adopt": False,
                "changes": []}  # fmt: skip
        rule = "item.spec.content.all(a, item.spec.content.exists_one(b, a == b))"
        data[str(n)] = timed(rule, {"item": item})
    results["data"] = data
    print(json.dumps(results, indent=2))
    out = Path(__file__).resolve().parent / "results" / "policy_limits.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
