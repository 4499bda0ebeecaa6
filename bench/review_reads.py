"""`plan --base --head` with one live read per node, against planning base and head apart.

Starts a fleet of N real SSH nodes (subnet 10.231.22.0/24, the forges engineer's) and one
emulated OPNsense firewall, writes a base and a head (the head changes a file and adds a
rule on every node), then times, in turn, ROUNDS times each:

* ``review``: ``controller.forges.review.build(base, head)``, one read per node for both;
* ``apart``: ``planning.build(base)`` then ``planning.build(head)``, what two ``fazai
  plan`` runs do;
* ``head``: ``planning.build(head)`` alone, the cost of an ordinary plan.

and prints the medians, the SSH reads and firewall requests of each. Needs root.

    .venv/bin/python bench/review_reads.py [--nodes 6] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from controller import providers
from controller.engine import plan as planning
from controller.forges import review
from controller.model import loader
from controller.model.state import DesiredState
from controller.plan import items as planitems
from controller.plan import review as reviewed
from controller.source.open import open_source
from controller.testing.fleet import Fleet, NodeSpec, fleet_available
from controller.testing.opnsense import EmulatorServer

providers.load_all()  # an entry point: the platforms' kinds, before any document loads

SUBNET = "10.231.22.0/24"


def documents(fleet: Fleet, emu: EmulatorServer, key: Path, head: bool) -> list[dict[str, Any]]:
    def doc(kind: str, doc_name: str, target: str, **spec: Any) -> dict[str, Any]:
        return {"apiVersion": "fazai.dev/v1alpha1", "kind": kind, "metadata": {"name": doc_name},
                "spec": {"target": {"node": target}, **spec}}  # fmt: skip

    out: list[dict[str, Any]] = [
        {"apiVersion": "fazai.dev/v1alpha1", "kind": "Node", "metadata": {"name": "edge-fw"},
         "spec": {"platform": "opnsense", "url": emu.url, "apiKeyRef": {"file": str(key)},
                  "apiSecretRef": {"env": "BENCH_FW_SECRET"}, "requestTimeout": 10}},
        doc("FirewallAlias", "web", "edge-fw", name="web", type="host", content=["10.0.0.1"]),
    ]  # fmt: skip
    if head:
        out.append(doc("FirewallRule", "ssh", "edge-fw", interface="lan", protocol="TCP",
                       destination={"net": "web", "port": 22}))  # fmt: skip
    for name, node in fleet.nodes.items():
        out.append({"apiVersion": "fazai.dev/v1alpha1", "kind": "Node",
                    "metadata": {"name": name},
                    "spec": {"platform": "linux", "address": node.address,
                             "auth": {"privateKeyFile": str(fleet.private_key_file)},
                             "knownHostsFile": str(fleet.known_hosts_file)}})  # fmt: skip
        for i in range(10):
            content = f"v{'2' if head and i == 0 else '1'}\n"
            out.append(doc("File", f"f{i}-{name}", name, path=f"/etc/bench-review/f{i}",
                           content=content))  # fmt: skip
        for package in ("openssh-server", "coreutils", "bash", "telnetd"):
            state = "absent" if package == "telnetd" else "present"
            out.append(doc("Package", f"{package}-{name}", name, name=package, state=state))
    return out


def load(folder: Path, docs: list[dict[str, Any]]) -> DesiredState:
    folder.mkdir(parents=True)
    (folder / "state.yaml").write_text(yaml.safe_dump_all(docs))
    return loader.load(open_source(str(folder)))


def timed(run: Any, rounds: int) -> tuple[float, Any]:
    seconds = []
    result = None
    for _ in range(rounds):
        started = time.perf_counter()
        result = asyncio.run(run())
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def main() -> None:
    options = argparse.ArgumentParser()
    options.add_argument("--nodes", type=int, default=6)
    options.add_argument("--rounds", type=int, default=5)
    args = options.parse_args()
    reason = fleet_available()
    if reason:
        raise SystemExit(f"no fleet: {reason}")
    work = Path(tempfile.mkdtemp(prefix="fazai-bench-review-"))
    specs = tuple(NodeSpec(f"rv-{i:02}", f"10.231.22.{20 + i}") for i in range(args.nodes))
    with Fleet(specs, workdir=work / "fleet", subnet=SUBNET, subnet_wait=600) as fleet, \
            EmulatorServer(version="26.1") as emu:  # fmt: skip
        key = work / "fw.key"
        key.write_text(emu.api_key)
        os.environ["BENCH_FW_SECRET"] = emu.api_secret
        for node in fleet.nodes.values():
            node.run("mkdir -p /etc/bench-review && for i in $(seq 0 9); do "
                     "echo v1 > /etc/bench-review/f$i; done")  # fmt: skip
        base = load(work / "base", documents(fleet, emu, key, head=False))
        head = load(work / "head", documents(fleet, emu, key, head=True))

        async def both() -> reviewed.Review:
            return await review.build(base, head)

        async def apart() -> tuple[planitems.Plan, planitems.Plan]:
            return await planning.build(base), await planning.build(head)

        async def alone() -> planitems.Plan:
            return await planning.build(head)

        rows = []
        for label, run in (("review", both), ("apart", apart), ("head", alone)):
            emu.requests.clear()
            median, _ = timed(run, args.rounds)
            requests = emu.requests.count() / args.rounds
            rows.append((label, median, requests))
        reviewed = asyncio.run(both())
        print(f"{args.nodes} SSH nodes x 14 resources + 1 firewall, median of {args.rounds}")
        for label, median, requests in rows:
            print(f"  {label:<7} {median:6.2f} s   firewall requests per run: {requests:.0f}")
        print(f"  review reads per node: {sorted(set(reviewed.reads.values()))}")
        print(f"  review/apart: {rows[0][1] / rows[1][1]:.2f}   review/head: "
              f"{rows[0][1] / rows[2][1]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
