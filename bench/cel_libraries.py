"""Compare the two maintained CEL libraries for Python on the policy stage's workload.

common-expression-language (``cel``, bindings to the Rust cel crate) against cel-python
(``celpy``, pure Python on lark): compile time of a few rules, evaluation of those rules
over 1,000 plan items, the error a bad expression gets (does it say where?), and what
each knows of unknown names before evaluating.

Usage: .venv/bin/python bench/cel_libraries.py   (needs both: pip install cel-python)
"""

from __future__ import annotations

import time
from typing import Any

RULES = [
    'item.kind == "User" && item.action == "delete" && '
    '("uid" in item.fields && item.fields["uid"].live < 1000 || item.name == "root")',
    'item.kind == "File" && (item.name.startsWith("/etc/ssh/") || '
    'item.name.startsWith("/etc/sudoers"))',
    'item.kind == "FirewallRule" && item.action == "delete"',
    'item.kind == "FirewallRule" && "action" in item.fields && '
    'item.fields["action"].desired in ["block", "reject"] && '
    '"interface" in item.fields && item.fields["interface"].desired in node.facts.mgmt',
    'item.action == "unresolved" || command != null',
]
BAD = 'item.kind == "User" &&& item.action'


def activation(i: int) -> dict[str, Any]:
    kinds = ["User", "File", "FirewallRule", "Package"]
    kind = kinds[i % 4]
    fields = {"uid": {"live": i % 2000, "desired": None}, "mode": {"live": "0644", "desired": "0600"}}
    return {
        "item": {
            "node": f"n{i % 10}",
            "kind": kind,
            "name": f"/etc/ssh/x{i}" if kind == "File" else f"obj{i}",
            "action": ["create", "update", "delete"][i % 3],
            "adopt": False,
            "changes": [{"field": k, **v} for k, v in fields.items()],
            "fields": fields,
        },
        "node": {"name": f"n{i % 10}", "platform": "linux", "labels": {}, "facts": {"mgmt": ["lan"]}},
        "run": {"trigger": "cli", "mode": "plan", "actor": "me", "source": "."},
        "command": None,
    }


def bench_cel(items: list[dict[str, Any]]) -> tuple[float, float, str]:
    import cel

    t0 = time.perf_counter()
    programs = [cel.compile(r) for r in RULES]
    t1 = time.perf_counter()
    for act in items:
        for p in programs:
            p.execute(act)
    t2 = time.perf_counter()
    try:
        cel.compile(BAD)
        err = "(accepted)"
    except ValueError as exc:
        err = str(exc)
    return t1 - t0, t2 - t1, err


def bench_celpy(items: list[dict[str, Any]]) -> tuple[float, float, str]:
    import celpy

    env = celpy.Environment()
    t0 = time.perf_counter()
    programs = [env.program(env.compile(r)) for r in RULES]
    t1 = time.perf_counter()
    for act in items:
        converted = {k: celpy.json_to_cel(v) for k, v in act.items()}
        for p in programs:
            p.evaluate(converted)
    t2 = time.perf_counter()
    try:
        env.compile(BAD)
        err = "(accepted)"
    except Exception as exc:  # CELParseError
        err = str(exc)
    return t1 - t0, t2 - t1, err


def main() -> None:
    items = [activation(i) for i in range(1000)]
    for name, fn in (("common-expression-language 0.10.0", bench_cel), ("cel-python 0.5.0", bench_celpy)):
        compile_s, eval_s, err = fn(items)
        print(f"{name}: compile {len(RULES)} rules {compile_s * 1000:.2f} ms; "
              f"1,000 items x {len(RULES)} rules {eval_s * 1000:.1f} ms")
        print(f"  bad expression: {err!r}")


if __name__ == "__main__":
    main()
