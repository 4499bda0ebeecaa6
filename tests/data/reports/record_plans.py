"""Record the plan JSON files the report tests read (run as root from the repo root):

    .venv/bin/python tests/data/reports/record_plans.py

Starts two real SSH nodes on 10.231.23.0/24 and an emulated OPNsense firewall, plans a
desired state against them (drift: a changed file, a missing file and user, a sysctl, an
alias and a rule not on the firewall; one node unreachable), applies the web node, plans
again (less drift), then plans a state that is in sync. Each plan is written as
``plan_<n>_<what>.json``, with the temporary source path replaced by ``desired_state``.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from controller import providers
from controller.engine import apply as applying
from controller.engine import plan as planning
from controller.model import loader
from controller.plan import items as planitems
from controller.plan import plan_json
from controller.source.open import open_source
from controller.store import StateStore
from controller.testing.fleet import Fleet, NodeSpec
from controller.testing.opnsense import EmulatorServer

providers.load_all()  # an entry point: the platforms' kinds, before any document loads

HERE = Path(__file__).parent
NODES = (NodeSpec("rep-web-1", "10.231.23.11"), NodeSpec("rep-db-1", "10.231.23.12"))
GONE = "10.231.23.99"  # no node answers there
MOTD = "Managed by FazAI\nAuthorized use only.\n"


def doc(kind: str, doc_name: str, node: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": doc_name},
        "spec": {"target": {"node": node}, **spec},
    }


def documents(fleet: Fleet, fw: EmulatorServer, key_file: Path, drift: bool) -> list[Any]:
    def linux(name: str, address: str) -> dict[str, Any]:
        return {
            "apiVersion": "fazai.dev/v1alpha1",
            "kind": "Node",
            "metadata": {"name": name},
            "spec": {
                "platform": "linux",
                "address": address,
                "auth": {"privateKeyFile": str(fleet.private_key_file)},
                "knownHostsFile": str(fleet.known_hosts_file),
                "connectTimeout": 2,
            },
        }

    nodes = [linux(n.name, n.address) for n in NODES]
    nodes.append(
        {
            "apiVersion": "fazai.dev/v1alpha1",
            "kind": "Node",
            "metadata": {"name": "edge-fw"},
            "spec": {
                "platform": "opnsense",
                "url": fw.url,
                "apiKeyRef": {"file": str(key_file)},
                "apiSecretRef": {"env": "FAZAI_RECORD_FW_SECRET"},
                "tls": {"caBundle": str(fw.certificate)},
                "requestTimeout": 5,
            },
        }
    )
    if not drift:
        return [*nodes, doc("File", "motd-web", "rep-web-1", path="/etc/motd", content=MOTD)]
    nodes.append(linux("rep-gone", GONE))
    return [
        *nodes,
        doc("File", "motd-web", "rep-web-1", path="/etc/motd", content=MOTD, mode="0644"),
        doc("File", "app-conf", "rep-web-1", path="/etc/app.conf", content="listen 443\n"),
        doc("User", "deploy-db", "rep-db-1", name="deploy", uid=2001, shell="/bin/bash"),
        doc("Sysctl", "fwd-db", "rep-db-1", key="net.ipv4.ip_forward", value=1),
        doc("File", "motd-gone", "rep-gone", path="/etc/motd", content=MOTD),
        doc(
            "FirewallAlias",
            "web-servers",
            "edge-fw",
            name="web_servers",
            type="host",
            content=["10.0.10.11", "10.0.10.12"],
            description='Web tier <script>alert("x")</script>',
        ),
        doc(
            "FirewallRule",
            "allow-https",
            "edge-fw",
            interface="lan",
            protocol="TCP",
            destination={"net": "web_servers", "port": 443},
            sequence=100,
        ),
    ]


def record(name: str, plan: planitems.Plan, folder: Path) -> None:
    data = plan_json.to_dict(plan)
    text = json.dumps(data, indent=2).replace(str(folder), "desired_state")
    (HERE / name).write_text(text + "\n")
    print(f"{name}: exit {plan.exit_code}, {data['summary']}")


def main() -> None:
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        with (
            Fleet(NODES, workdir=root / "fleet", subnet="10.231.23.0/24") as fleet,
            EmulatorServer(version="26.1", tls=True) as fw,
        ):
            key_file = root / "fw.key"
            key_file.write_text(fw.api_key + "\n")
            os.environ["FAZAI_RECORD_FW_SECRET"] = fw.api_secret
            web = fleet.nodes["rep-web-1"]
            web.run("printf 'Welcome\\n' > /etc/motd && chmod 0600 /etc/motd")
            folder = root / "desired_state"
            folder.mkdir()
            state_yaml = folder / "state.yaml"
            state_yaml.write_text(yaml.safe_dump_all(documents(fleet, fw, key_file, True)))
            state = loader.load(open_source(str(folder)))
            first = asyncio.run(planning.build(state))
            record("plan_1_drift.json", first, folder)
            with StateStore(root / "state.db") as store:
                web_only = planitems.Plan(
                    first.source,
                    first.revision,
                    tuple(n for n in first.nodes if n.node == "rep-web-1"),
                )
                asyncio.run(applying.apply(state, web_only, store))
            record("plan_2_partial.json", asyncio.run(planning.build(state)), folder)
            state_yaml.write_text(yaml.safe_dump_all(documents(fleet, fw, key_file, False)))
            state = loader.load(open_source(str(folder)))
            record("plan_3_in_sync.json", asyncio.run(planning.build(state)), folder)


if __name__ == "__main__":
    main()
