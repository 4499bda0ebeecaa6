"""`fazai plan` against real OpenSSH nodes: a plan shows exactly the drift, and nothing else."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from controller.engine import plan as planning
from controller.model import loader
from controller.plan import items as planitems
from controller.plan.diff import Action
from controller.source.open import open_source
from controller.testing.fleet import Fleet
from tests.integration.statekit import node_doc, resource, write_state

NFT_BODY = """chain input {
  type filter hook input priority 0; policy accept;
  tcp dport { 22, 443 } accept
}"""

CONF = "# managed\nlisten 443\n"


def baseline(fleet: Fleet, node: str) -> list[dict[str, Any]]:
    on = {"node": node}
    return [
        node_doc(fleet, node),
        resource("Package", f"openssh-server-{node}", on, name="openssh-server"),
        resource("Package", f"telnetd-{node}", on, name="telnetd", state="absent"),
        resource(
            "File",
            f"conf-{node}",
            on,
            path="/etc/fazai-test.conf",
            content=CONF,
            mode="0640",
            owner="root",
            group="root",
        ),
        resource(
            "User",
            f"deploy-{node}",
            on,
            name="deploy",
            uid=2001,
            shell="/bin/bash",
            home="/home/deploy",
        ),
        resource("Sysctl", f"fwd-{node}", on, key="net.ipv4.ip_forward", value=0),
        resource(
            "NftTable", f"filter-{node}", on, family="inet", name="fazai_t", definition=NFT_BODY
        ),
    ]


def converge_by_hand(fleet: Fleet, node: str) -> None:
    """Put the node in the baseline's desired state without FazAI (apply comes later)."""
    n = fleet.nodes[node]
    n.run(f"printf '%s' '{CONF}' > /etc/fazai-test.conf && chmod 0640 /etc/fazai-test.conf")
    n.run("id deploy >/dev/null 2>&1 || useradd -u 2001 -s /bin/bash -d /home/deploy deploy")
    n.run(
        "sysctl -qw net.ipv4.ip_forward=0"
        " && echo 'net.ipv4.ip_forward = 0' > /etc/sysctl.d/99-fazai.conf"
    )
    n.run("nft delete table inet fazai_t 2>/dev/null; true")
    n.run(f"nft -f - <<'EOF'\ntable inet fazai_t {{\n{NFT_BODY}\n}}\nEOF")


def plan_of(folder: Path) -> planitems.Plan:
    state = loader.load(open_source(str(folder)))
    return asyncio.run(planning.build(state))


def by_item(plan: planitems.Plan) -> dict[tuple[str, str, str], planitems.PlanItem]:
    return {(i.node, i.kind, i.name): i for n in plan.nodes for i in n.items}


@pytest.fixture(scope="module")
def converged(fleet: Fleet) -> Fleet:
    for node in ("web-1", "web-2", "db-1"):
        converge_by_hand(fleet, node)
    return fleet


def test_converged_nodes_plan_in_sync(converged: Fleet, tmp_path: Path) -> None:
    docs = [d for node in ("web-1", "web-2", "db-1") for d in baseline(converged, node)]
    plan = plan_of(write_state(tmp_path / "state", docs))
    assert [n.error for n in plan.nodes] == [None, None, None]
    assert {i.action for n in plan.nodes for i in n.items} == {Action.NOOP}
    assert plan.exit_code == 0


def test_plan_shows_exactly_hand_made_drift(converged: Fleet, tmp_path: Path) -> None:
    node = converged.nodes["web-2"]
    docs = [*baseline(converged, "web-2"), *baseline(converged, "db-1")[1:2]]
    docs = baseline(converged, "web-2") + baseline(converged, "db-1")
    docs.append(resource("Package", "hello-web-2", {"node": "web-2"}, name="hello"))
    state_dir = write_state(tmp_path / "state", docs)
    try:
        node.run("echo 'listen 8080' >> /etc/fazai-test.conf")
        node.run("sysctl -qw net.ipv4.ip_forward=1")
        node.run("userdel deploy")
        node.run("nft add rule inet fazai_t input tcp dport 8080 accept")
        plan = plan_of(state_dir)
    finally:
        converge_by_hand(converged, "web-2")

    items = by_item(plan)
    changed = {key: item for key, item in items.items() if item.action is not Action.NOOP}
    assert sorted(changed) == [
        ("web-2", "File", "conf-web-2"),
        ("web-2", "NftTable", "filter-web-2"),
        ("web-2", "Package", "hello-web-2"),
        ("web-2", "Sysctl", "fwd-web-2"),
        ("web-2", "User", "deploy-web-2"),
    ]
    conf = changed[("web-2", "File", "conf-web-2")]
    assert conf.action is Action.UPDATE
    assert [c.field for c in conf.changes] == ["content"]
    assert conf.changes[0].diff is not None and "-listen 8080" in conf.changes[0].diff
    sysctl = changed[("web-2", "Sysctl", "fwd-web-2")]
    assert [(c.field, c.live, c.desired) for c in sysctl.changes] == [("value", "1", "0")]
    user = changed[("web-2", "User", "deploy-web-2")]
    assert user.action is Action.CREATE
    assert changed[("web-2", "Package", "hello-web-2")].action is Action.CREATE
    nft = changed[("web-2", "NftTable", "filter-web-2")]
    assert nft.action is Action.UPDATE
    assert nft.changes[0].diff is not None and "8080" in nft.changes[0].diff
    assert plan.exit_code == 1


def test_mode_owner_and_deleted_file_drift(converged: Fleet, tmp_path: Path) -> None:
    node = converged.nodes["db-1"]
    docs = baseline(converged, "db-1")
    docs.append(
        resource("File", "gone-db-1", {"node": "db-1"}, path="/etc/fazai-gone", state="absent")
    )
    state_dir = write_state(tmp_path / "state", docs)
    try:
        node.run("chmod 0666 /etc/fazai-test.conf && chown nobody /etc/fazai-test.conf")
        node.run("echo stale > /etc/fazai-gone")
        plan = plan_of(state_dir)
    finally:
        node.run("rm -f /etc/fazai-gone")
        converge_by_hand(converged, "db-1")
        node.run("chown root /etc/fazai-test.conf")
    items = by_item(plan)
    conf = items[("db-1", "File", "conf-db-1")]
    assert [(c.field, c.live, c.desired) for c in conf.changes] == [
        ("mode", "0666", "0640"),
        ("owner", "nobody", "root"),
    ]
    assert items[("db-1", "File", "gone-db-1")].action is Action.DELETE


def test_unreachable_node_beside_healthy_ones(converged: Fleet, tmp_path: Path) -> None:
    docs = baseline(converged, "web-1")
    ghost = node_doc(converged, "web-1")
    ghost["metadata"]["name"] = "ghost"
    ghost["spec"]["address"] = "10.231.7.99"  # in the fleet subnet, but nobody is there
    ghost["spec"]["connectTimeout"] = 1
    docs += [ghost, resource("Package", "ghost-pkg", {"node": "ghost"}, name="openssh-server")]
    plan = plan_of(write_state(tmp_path / "state", docs))
    nodes = {n.node: n for n in plan.nodes}
    assert nodes["ghost"].error_type == "UnreachableError"
    assert "10.231.7.99" in (nodes["ghost"].error or "")
    assert nodes["web-1"].error is None
    assert all(i.action is Action.NOOP for i in nodes["web-1"].items)
    assert plan.exit_code == 2


def test_wrong_host_key_is_refused(converged: Fleet, tmp_path: Path) -> None:
    wrong = converged.nodes["web-2"].host_public_key
    bad_known_hosts = tmp_path / "known_hosts"
    converged.write_known_hosts(bad_known_hosts, {"web-1": wrong})
    docs = baseline(converged, "web-1")
    docs[0] = node_doc(converged, "web-1", known_hosts=bad_known_hosts)
    plan = plan_of(write_state(tmp_path / "state", docs))
    (node,) = plan.nodes
    assert node.error_type == "HostKeyError"
    assert "unknown or has changed" in (node.error or "")
    assert node.items == ()


def test_refused_credentials(converged: Fleet, tmp_path: Path) -> None:
    other_key = tmp_path / "other_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True
    )
    docs = baseline(converged, "web-1")
    docs[0]["spec"]["auth"] = {"privateKeyFile": str(other_key)}
    plan = plan_of(write_state(tmp_path / "state", docs))
    assert plan.nodes[0].error_type == "AuthenticationError"


def test_cli_plan_json_and_exit_code(converged: Fleet, tmp_path: Path) -> None:
    node = converged.nodes["web-1"]
    docs = baseline(converged, "web-1")
    state_dir = write_state(tmp_path / "state", docs)
    node.run("sysctl -qw net.ipv4.ip_forward=1")
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "from controller.cli import run; run()",
                "plan",
                str(state_dir),
                "--output",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        converge_by_hand(converged, "web-1")
    assert result.returncode == 1, result.stderr
    out = json.loads(result.stdout)
    assert out["summary"]["exitCode"] == 1
    assert [(c["node"], c["kind"], c["name"], c["action"]) for c in out["changes"]] == [
        ("web-1", "Sysctl", "fwd-web-1", "update")
    ]
    assert out["changes"][0]["changes"] == [{"field": "value", "live": "1", "desired": "0"}]
