#!/usr/bin/env python3
"""Where `fazai apply` spends its time, per phase, on the apply benchmark's fleet.

Starts a fleet (default 10 nodes on 10.231.16.0/24), puts every node in the starting
state of bench/apply_vs_peers.py (30 resources per node, all to be written), then runs
`fazai apply --auto-approve` IN-PROCESS (the same CLI code path, imports excluded), with
timers around each phase:

* ``plan``: the CLI's plan before the confirmation (one observe per node);
* ``observe``: the engine's re-read before each node's transaction;
* ``snapshot``, ``write``, ``verify``, ``rollback``: the Linux transaction's phases.

For each phase it prints how many times it ran, the sum and mean of its durations over
the nodes, and its wall span (first start to last end), plus the SSH connections and
exec channels it opened. ``--cprofile FILE`` also writes a cProfile of the run.

    python bench/apply_profile.py [--nodes 10] [--concurrency 8] [--runs 1]

Needs root (network namespaces). Results go to bench/results/apply_profile.json.
"""

from __future__ import annotations

import argparse
import contextvars
import cProfile
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import apply_vs_peers as avp
import asyncssh
import plan_vs_peers as pvp

from controller import cli
from controller.engine import apply as engine_apply
from controller.providers.linux import apply as linux_apply
from controller.providers.linux import provider as linux_provider
from controller.providers.linux import ssh
from controller.testing.fleet import Fleet, NodeSpec, fleet_available

RESULTS = pvp.REPO / "bench" / "results" / "apply_profile.json"
PHASE: contextvars.ContextVar[str] = contextvars.ContextVar("phase", default="plan")


class Recorder:
    def __init__(self) -> None:
        self.spans: list[tuple[str, str, float, float]] = []  # phase, node, start, end
        self.connects: dict[str, int] = defaultdict(int)
        self.execs: dict[str, int] = defaultdict(int)

    def table(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for phase in ("plan", "observe", "snapshot", "write", "verify", "rollback"):
            spans = [(s, e) for p, _, s, e in self.spans if p == phase]
            if not spans:
                continue
            durations = [e - s for s, e in spans]
            out[phase] = {
                "count": len(spans),
                "sum_s": round(sum(durations), 3),
                "mean_s": round(sum(durations) / len(durations), 3),
                "max_s": round(max(durations), 3),
                "wall_s": round(max(e for _, e in spans) - min(s for s, _ in spans), 3),
                "ssh_connections": self.connects.get(phase, 0),
                "ssh_execs": self.execs.get(phase, 0),
            }
        return out


def instrument(rec: Recorder) -> None:
    """Wrap the phases (class and module attributes, so the CLI's own calls are timed)."""

    def timed(phase: str | None, node_of: Callable[..., str]) -> Callable[..., Any]:
        def wrap(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            @functools.wraps(fn)
            async def inner(*args: Any, **kwargs: Any) -> Any:
                name = phase or PHASE.get()
                token = PHASE.set(name)
                start = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    rec.spans.append((name, node_of(*args), start, time.perf_counter()))
                    PHASE.reset(token)

            return inner

        return wrap

    txn = linux_apply.LinuxTransaction
    for method in ("snapshot", "write", "verify", "rollback"):
        setattr(txn, method, timed(method, lambda self, *a: self.node.name)(getattr(txn, method)))

    observe = linux_provider.LinuxProvider.observe

    @functools.wraps(observe)
    async def timed_observe(self: Any, node: Any, *args: Any, **kwargs: Any) -> Any:
        phase = PHASE.get()
        if phase not in ("plan", "observe"):  # inside verify: counted there
            return await observe(self, node, *args, **kwargs)
        return await timed(phase, lambda *a: node.name)(observe)(self, node, *args, **kwargs)

    linux_provider.LinuxProvider.observe = timed_observe  # type: ignore[method-assign]
    apply_node = engine_apply.apply_node

    @functools.wraps(apply_node)
    async def in_apply_node(*args: Any, **kwargs: Any) -> Any:
        token = PHASE.set("observe")  # its observe is the re-read before the transaction
        try:
            return await apply_node(*args, **kwargs)
        finally:
            PHASE.reset(token)

    engine_apply.apply_node = in_apply_node  # type: ignore[assignment]

    connect = ssh.connect

    @functools.wraps(connect)
    async def counted_connect(target: ssh.SshTarget) -> asyncssh.SSHClientConnection:
        rec.connects[PHASE.get()] += 1
        return await connect(target)

    ssh.connect = counted_connect  # type: ignore[assignment]
    create = asyncssh.SSHClientConnection.create_process

    @functools.wraps(create)
    async def counted_create(self: Any, *args: Any, **kwargs: Any) -> Any:
        rec.execs[PHASE.get()] += 1
        return await create(self, *args, **kwargs)

    asyncssh.SSHClientConnection.create_process = counted_create  # type: ignore[method-assign]


def run_apply(state: Path, db: Path, concurrency: int) -> int:
    argv = ["apply", str(state), "--auto-approve", "--state", str(db)]
    argv += ["--concurrency", str(concurrency)]
    try:
        cli.main.main(argv, standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--files", type=int, default=14)
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--subnet", default="10.231.16.0/24")
    ap.add_argument("--cprofile", type=Path, help="write a cProfile of the last run here")
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = ap.parse_args()

    reason = fleet_available()
    if reason:
        print(f"cannot start a fleet: {reason}", file=sys.stderr)
        return 2
    r = avp.build_resources(args.files, args.users)
    workdir = Path(tempfile.mkdtemp(prefix="fazai-bench-profile-"))
    prefix, base = args.subnet.split("/")[0].rsplit(".", 1)
    specs = [
        NodeSpec(f"prof-{i:02d}", f"{prefix}.{int(base) + 10 + i}")
        for i in range(1, args.nodes + 1)
    ]
    fleet = Fleet(specs, workdir=workdir / "fleet", subnet=args.subnet)
    results: dict[str, Any] = {"nodes": args.nodes, "concurrency": args.concurrency, "runs": []}
    try:
        fleet.start()
        state = pvp.write_fazai(fleet, r, workdir / "fazai")
        rec = Recorder()
        instrument(rec)
        for i in range(args.runs):
            avp.reset_nodes(fleet, r)
            rec.spans.clear()
            rec.connects.clear()
            rec.execs.clear()
            load_before = os.getloadavg()[0]
            profiler = cProfile.Profile() if args.cprofile and i == args.runs - 1 else None
            start = time.perf_counter()
            if profiler:
                profiler.enable()
            rc = run_apply(state, workdir / f"state-{i}.db", args.concurrency)
            if profiler:
                profiler.disable()
                profiler.dump_stats(str(args.cprofile))
            total = time.perf_counter() - start
            table = rec.table()
            results["runs"].append(
                {
                    "rc": rc,
                    "wall_s": round(total, 3),
                    "load1_before": load_before,
                    "phases": table,
                }
            )
            print(f"\nrun {i + 1}: exit {rc}, {total:.2f} s wall (load1 before {load_before:.2f})")
            print(
                f"{'phase':<10}{'count':>6}{'sum s':>9}{'mean s':>9}{'max s':>8}"
                f"{'wall s':>9}{'conns':>7}{'execs':>7}"
            )
            for phase, row in table.items():
                print(
                    f"{phase:<10}{row['count']:>6}{row['sum_s']:>9.2f}{row['mean_s']:>9.3f}"
                    f"{row['max_s']:>8.2f}{row['wall_s']:>9.2f}"
                    f"{row['ssh_connections']:>7}{row['ssh_execs']:>7}"
                )
    finally:
        fleet.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(run["rc"] == 0 for run in results["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
