"""Goals resolved by an OPNsense Tool, against the emulator over real HTTPS with the
production client: `fazai plan` and `fazai apply` end to end, and the transaction driven
as the engine drives it.

An unmet goal whose tool has not run plans as an update; the apply sends the tool's API
calls after a snapshot (the newest configuration backup), verifies the goal by reading
it again, and commits; the next plan is in sync and nothing is sent again. A tool that
leaves the goal unmet, or a call the firewall refuses, rolls the firewall back to its
configuration byte for byte, with the reloads the calls made sent again and the tool's
own rollback calls after them. Zero model calls anywhere: there is no LLM here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.model import loader
from controller.model.state import DesiredState
from controller.plan.diff import Action, compare
from controller.providers.base import Change, Intent
from controller.providers.opnsense.provider import OpnsenseProvider
from controller.providers.opnsense.toolcalls import ToolCallError
from controller.source.open import open_source
from controller.store import StateStore
from controller.store.records import Transaction
from controller.testing.opnsense import EmulatorServer
from controller.testing.opnsense.configxml import running
from tests.integration.firewallkit import firewall_node

NODE = "edge-fw"
PROVIDER = OpnsenseProvider()


def fazai(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "300"},
    )  # fmt: skip


def document(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "fazai.dev/v1alpha1", "kind": kind, "metadata": {"name": name},
            "spec": spec}  # fmt: skip


def setting(section: str, name: str, value: Any) -> dict[str, Any]:
    return {"unbound": {section: {name: value}}}


SET, RECONFIGURE = "unbound/settings/set", "unbound/service/reconfigure"
DNSSEC_CHECK = {"name": "dnssec", "get": "unbound/settings/get",
                "expect": {"path": "unbound.general.dnssec", "equals": "1"}}  # fmt: skip


def tool(
    name: str, check: tuple[str, str], calls: list[dict[str, Any]], **more: Any
) -> dict[str, Any]:
    path, equals = check
    spec = {
        "platform": "opnsense",
        "description": f"{name}: an Unbound setting, made live",
        "check": {"get": "unbound/settings/get", "expect": {"path": path, "equals": equals}},
        "apply": {"calls": calls},
        **more,
    }
    return document("Tool", name, spec)


DNSSEC = tool(
    "dnssec",
    ("unbound.general.dnssec", "1"),
    [{"post": SET, "body": setting("general", "dnssec", "1")}, {"post": RECONFIGURE}],
)
# Converges what it checks, and not the goal: a verify must catch it.
HIDE_VERSION = tool("hide-version", ("unbound.advanced.hideversion", "1"),
                    [{"post": SET, "body": setting("advanced", "hideversion", "1")},
                     {"post": RECONFIGURE}])  # fmt: skip
# Its second call carries a port the firewall refuses; no reload among its calls, so the
# only reconfigure after the revert is its own rollback call.
PORT = tool(
    "dnssec-on-port",
    ("unbound.general.dnssec", "1"),
    [{"post": SET, "body": setting("general", "dnssec", "1")},
     {"post": SET, "body": setting("general", "port", "${port}")}],
    params={"type": "object", "properties": {"port": {"type": "integer"}}, "required": ["port"]},
    rollback={"calls": [{"post": RECONFIGURE}]},
)  # fmt: skip


def goal(tool_name: str, **params: Any) -> dict[str, Any]:
    by: dict[str, Any] = {"tool": tool_name, **({"params": params} if params else {})}
    spec = {"target": {"node": NODE}, "description": "Unbound validates DNSSEC",
            "checks": [DNSSEC_CHECK], "resolvedBy": by}  # fmt: skip
    return document("Goal", "dnssec-on", spec)


@dataclass
class Firewall:
    emu: EmulatorServer
    folder: Path
    node: dict[str, Any]

    def write(self, *documents: dict[str, Any]) -> str:
        self.folder.mkdir(exist_ok=True)
        (self.folder / "fw.yaml").write_text(yaml.safe_dump_all([self.node, *documents]))
        return str(self.folder)

    def state(self, *documents: dict[str, Any]) -> DesiredState:
        return loader.load(open_source(self.write(*documents)))

    def config(self) -> tuple[str, Any]:
        """The running configuration as config.xml renders it, and what is live."""
        state = self.emu.state
        live = json.dumps([state.applied, state.applied_settings], sort_keys=True)
        return running(state), live

    def posts(self) -> list[str]:
        return [r.path.removeprefix("/api/") for r in self.emu.requests if r.method == "POST"]


@pytest.fixture(params=["24.7", "26.7"])
def fw(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
       ) -> Iterator[Firewall]:  # fmt: skip
    with EmulatorServer(version=request.param, tls=True) as emu:
        yield Firewall(emu, tmp_path / "state", firewall_node(NODE, emu, tmp_path, monkeypatch))


def changes(plan: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["kind"], c["name"]): c for c in plan["changes"] if c["action"] != "noop"}


def transaction(db: str) -> Transaction:
    """The one transaction the first apply recorded."""
    with StateStore(Path(db)) as store:
        (run,) = [r for r in store.list_runs() if r.command.value == "apply"][-1:]
        (txn,) = store.run_transactions(run.id)
        return txn


# -- fazai plan / apply ---------------------------------------------------------------


def test_plan_shows_the_tool_then_apply_converges_and_the_tool_is_not_run_again(
    fw: Firewall, tmp_path: Path
) -> None:
    folder, db = fw.write(DNSSEC, goal("dnssec")), str(tmp_path / "state.db")
    planned = fazai("plan", folder, "-o", "json")
    assert planned.returncode == 1, planned.stderr  # a difference to write
    item = changes(json.loads(planned.stdout))[("Goal", "dnssec-on")]
    assert item["action"] == "update"
    assert "Tool/dnssec" in json.dumps(item)

    fw.emu.requests.clear()
    applied = fazai("apply", folder, "--state", db, "--auto-approve")
    assert applied.returncode == 0, (applied.stdout, applied.stderr)
    assert fw.posts() == [SET, RECONFIGURE]  # the tool's calls, nothing else written
    assert fw.emu.state.settings["unbound.general"]["dnssec"] == "1"
    assert not fw.emu.state.pending("unbound")  # the reconfigure made it live

    steps = [s for s in transaction(db).steps if s.kind == "Goal"]
    done = [(s.payload["path"], s.status.value) for s in steps]
    assert done == [(SET, "done"), (RECONFIGURE, "done")]
    body = json.dumps(setting("general", "dnssec", "1"), sort_keys=True, separators=(",", ":"))
    assert steps[0].payload["bodySha256"] == hashlib.sha256(body.encode()).hexdigest()
    assert "body" not in steps[0].payload  # the digest, never the body

    fw.emu.requests.clear()
    again = fazai("plan", folder, "-o", "json")
    assert again.returncode == 0, (again.stdout, again.stderr)
    assert changes(json.loads(again.stdout)) == {}
    reapplied = fazai("apply", folder, "--state", db, "--auto-approve")
    assert reapplied.returncode == 0, (reapplied.stdout, reapplied.stderr)
    assert fw.posts() == []  # met: the tool is not run again


def test_a_tool_that_leaves_the_goal_unmet_is_rolled_back(fw: Firewall, tmp_path: Path) -> None:
    folder, db = fw.write(HIDE_VERSION, goal("hide-version")), str(tmp_path / "state.db")
    before = fw.config()
    applied = fazai("apply", folder, "--state", db, "--auto-approve")
    out = applied.stdout + applied.stderr
    assert applied.returncode != 0, out
    assert "verify found the node still differs: Goal/dnssec-on" in out
    assert "rolled back" in out
    assert fw.config() == before  # config.xml byte for byte, and what is live
    posts = fw.posts()
    revert = next(i for i, p in enumerate(posts) if p.startswith("core/backup/revertBackup/"))
    assert posts[:revert] == [SET, RECONFIGURE]
    assert posts[revert + 1 :] == [RECONFIGURE]  # the reload its calls made, sent again


def test_a_call_the_firewall_refuses_rolls_back_the_calls_before_it(
    fw: Firewall, tmp_path: Path
) -> None:
    folder, db = fw.write(PORT, goal("dnssec-on-port", port=99999)), str(tmp_path / "state.db")
    before = fw.config()
    applied = fazai("apply", folder, "--state", db, "--auto-approve")
    out = applied.stdout + applied.stderr
    assert applied.returncode != 0, out
    assert (
        "Goal/dnssec-on: Tool/dnssec-on-port's call 2 (POST /api/unbound/settings/set) was "
        "refused by the firewall: unbound.general.port: Please specify a valid port number "
        "(1-65535)."
    ) in out
    assert fw.config() == before
    posts = fw.posts()
    revert = next(i for i, p in enumerate(posts) if p.startswith("core/backup/revertBackup/"))
    assert posts[:revert] == [SET, SET]  # the first saved, the second refused
    assert posts[revert + 1 :] == [RECONFIGURE]  # the tool's own rollback call
    steps = transaction(db).steps
    statuses = [(s.payload.get("call"), s.status.value) for s in steps if s.kind == "Goal"]
    assert statuses == [(1, "done"), (2, "failed")]


def test_an_unmet_goal_whose_tool_holds_is_unresolved_and_nothing_is_sent(
    fw: Firewall, tmp_path: Path
) -> None:
    fw.emu.state.settings["unbound.advanced"]["hideversion"] = "1"
    folder, db = fw.write(HIDE_VERSION, goal("hide-version")), str(tmp_path / "state.db")
    planned = fazai("plan", folder, "-o", "json")
    assert planned.returncode == 1, planned.stderr
    item = changes(json.loads(planned.stdout))[("Goal", "dnssec-on")]
    assert item["action"] == "unresolved"
    reason = (
        "checks failing: dnssec (value differs); Tool/hide-version reports it converged, "
        "so applying it cannot help"
    )
    assert item.get("reason", reason) == reason
    text = fazai("plan", folder)
    assert "Tool/hide-version reports it converged" in text.stdout + text.stderr
    applied = fazai("apply", folder, "--state", db, "--auto-approve")
    assert applied.returncode == 1, (applied.stdout, applied.stderr)
    assert fw.posts() == []


# -- the transaction, as the engine drives it -----------------------------------------


@dataclass
class MemoryJournal:
    steps: list[dict[str, Any]] = field(default_factory=list)

    def intend(self, kind: str, name: str, action: str, payload: Mapping[str, Any]) -> int:
        json.dumps(payload)  # the store needs JSON
        self.steps.append({"kind": kind, "name": name, "payload": payload, "status": "intended"})
        return len(self.steps) - 1

    def intend_many(self, intents: Sequence[Intent]) -> list[int]:
        return [self.intend(i.kind, i.name, i.action, i.payload) for i in intents]

    def done(self, step: int) -> None:
        self.steps[step]["status"] = "done"

    def done_many(self, steps: Sequence[int]) -> None:
        for step in steps:
            self.done(step)

    def failed(self, step: int, message: str) -> None:
        self.steps[step]["status"] = "failed"


async def planned_changes(state: DesiredState) -> list[Change]:
    resources = state.resources_for(NODE)
    observed = await PROVIDER.observe(state.nodes[NODE], resources, state.source)
    out = []
    for doc in resources:
        action, _ = compare(observed.resources[doc])
        if action is not Action.NOOP:
            out.append(Change(doc.kind, doc.name, action.value, doc, observed.resources[doc]))
    return out


def test_a_new_process_rolls_the_tool_back_from_the_stored_snapshot(fw: Firewall) -> None:
    alias = document(
        "FirewallAlias",
        "dns",
        {
            "target": {"node": NODE},
            "name": "dns_servers",
            "type": "host",
            "content": ["192.0.2.53"],
        },
    )
    host = document(
        "HostOverride",
        "ns",
        {"target": {"node": NODE}, "hostname": "ns", "domain": "example.net",
         "server": "192.0.2.53"},
    )  # fmt: skip
    state = fw.state(alias, host, HIDE_VERSION, goal("hide-version"))
    before = fw.config()

    async def crash_then_recover() -> MemoryJournal:
        journal = MemoryJournal()
        found = await planned_changes(state)
        assert {c.kind for c in found} == {"FirewallAlias", "HostOverride", "Goal"}
        async with PROVIDER.transaction(state.nodes[NODE], found) as txn:
            stored = json.dumps(await txn.snapshot())  # the snapshot must stay JSON
            await txn.write(journal)
            verified = await txn.verify()
            goal_seen = next(o for d, o in verified.resources.items() if d.kind == "Goal")
            assert compare(goal_seen)[0] is Action.UNRESOLVED  # read again, still unmet
            # The controller dies here; a restarted one knows the node and the snapshot.
        assert fw.config() != before
        fw.emu.requests.clear()
        async with PROVIDER.transaction(state.nodes[NODE], []) as fresh:
            await fresh.rollback(json.loads(stored))
        return journal

    journal = asyncio.run(crash_then_recover())
    assert fw.config() == before
    # the objects' reloads, and the tool's reconfigure only once: the host override's
    # reload is the same call
    assert fw.posts()[1:] == ["firewall/alias/reconfigure", RECONFIGURE]
    tool_steps = [s for s in journal.steps if s["kind"] == "Goal"]
    done = [(s["payload"]["path"], s["status"]) for s in tool_steps]
    assert done == [(SET, "done"), (RECONFIGURE, "done")]
    # object writes and their reload come first, the tool after them
    kinds = [s["kind"] for s in journal.steps]
    assert kinds == ["FirewallAlias", "HostOverride", "OPNsense", "OPNsense", "Goal", "Goal"]


def test_a_refused_call_raises_a_node_error_with_the_validations(fw: Firewall) -> None:
    state = fw.state(PORT, goal("dnssec-on-port", port=0))

    async def run() -> tuple[ToolCallError, MemoryJournal]:
        journal = MemoryJournal()
        async with PROVIDER.transaction(state.nodes[NODE], await planned_changes(state)) as txn:
            snapshot = await txn.snapshot()
            with pytest.raises(ToolCallError) as caught:
                await txn.write(journal)
            await txn.rollback(snapshot)
        return caught.value, journal

    error, journal = asyncio.run(run())
    assert error.validations == {"unbound.general.port": ["Please specify a valid port number "
                                                          "(1-65535)."]}  # fmt: skip
    assert not error.retryable
    assert [s["status"] for s in journal.steps] == ["done", "failed"]
    assert fw.emu.state.settings["unbound.general"]["dnssec"] == "0"


def test_a_secret_in_a_rollback_body_is_sealed_in_the_journal(fw: Firewall, tmp_path: Path) -> None:
    secret = "hunter2-not-for-the-journal"
    sealed = tool(
        "hide-version",
        ("unbound.advanced.hideversion", "1"),
        [{"post": SET, "body": setting("advanced", "hideversion", "1")}, {"post": RECONFIGURE}],
        params={"type": "object", "properties": {"token": {"type": "string"}}},
        rollback={"calls": [{"post": SET, "body": {**setting("advanced", "prefetch", "0"),
                                                   "token": "${token}"}}]},
    )  # fmt: skip
    folder, db = fw.write(sealed, goal("hide-version", token=secret)), tmp_path / "state.db"
    before = fw.config()
    applied = fazai("apply", folder, "--state", str(db), "--auto-approve")
    assert applied.returncode != 0, (applied.stdout, applied.stderr)
    assert fw.config() == before
    assert fw.posts()[-1] == SET  # the tool's rollback call, after the replayed reload
    for path in (p for p in tmp_path.glob("state.db*") if p.is_file()):
        assert secret.encode() not in path.read_bytes(), path
    with StateStore(db) as store:
        txn = transaction(str(db))
        record = next(s for s in txn.snapshots if s.kind == "Node")
        assert record.before is not None and record.before["escrow"] == ["token"]
        opened = store.reveal(txn.id, record).before
    assert opened is not None
    assert opened["tools"][0]["rollback"][0]["body"]["token"] == secret
