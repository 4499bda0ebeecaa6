"""The sandbox behind ``fazai demo``: the example desired state planned against real nodes.

The sandbox starts one fleet node per Linux ``Node`` document, at the address the
document names, and one OPNsense emulator per ``opnsense`` Node, at the URL it names;
it writes the SSH key, known_hosts, API key, secret and CA bundle where the documents
point. The firewall is seeded as if FazAI had applied it earlier and then edited by hand
in its web UI, so the plan shows real drift. Everything is torn down at the end, so a
fresh machine shows FazAI working end to end with nothing to configure.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import shlex
import shutil
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from rich.console import Console

import controller
from controller.errors import SandboxError
from controller.model.document import Document
from controller.model.state import DesiredState
from controller.pipeline import context, planning
from controller.pipeline import source as pipeline_source
from controller.pipeline.gate import Checked
from controller.plan import items as planitems
from controller.providers.opnsense import payload
from controller.providers.opnsense.identity import object_uuid
from controller.source.open import open_source
from controller.testing.fleet import Fleet, NodeSpec, fleet_available
from controller.testing.opnsense import Drift, EmulatorServer
from controller.testing.opnsense.server import bind_error
from controller.testing.sandbox_folder import DEFAULT_WORKDIR, MARKER, Claim, claimed, clean
from controller.words import count

__all__ = ["DEFAULT_WORKDIR", "MARKER", "claimed", "clean", "run_demo"]

STATE_FILE = "state.db"  # the sandbox's runs: `fazai history --state WORKDIR/state.db`
DEMO_RUN = context.cli("apply")  # the demo's applies are the CLI's, judged as such


def example_state_dir() -> Path:
    """The example shipped beside the package in a checkout, else ./desired_state."""
    beside = Path(controller.__file__).resolve().parents[1] / "desired_state"
    return beside if beside.is_dir() else Path.cwd() / "desired_state"


def fleet_for(state: DesiredState, workdir: Path) -> Fleet | None:
    specs = [
        NodeSpec(name, doc.spec["address"])
        for name, doc in sorted(state.nodes.items())
        if doc.spec["platform"] == "linux"
    ]
    if not specs:
        return None
    subnet = ipaddress.IPv4Network(f"{specs[0].address}/24", strict=False)
    for spec in specs:
        if ipaddress.IPv4Address(spec.address) not in subnet:
            raise ValueError(f"sandbox nodes must share one /24: {spec.name} is at {spec.address}")
    for name, doc in state.nodes.items():
        key = doc.spec.get("auth", {}).get("privateKeyFile")
        if key and Path(key) != workdir / "id_ed25519":
            raise ValueError(
                f"Node/{name} uses key {key}; sandbox nodes must use {workdir / 'id_ed25519'}"
            )
    return Fleet(specs, workdir=workdir, subnet=str(subnet))


@contextlib.contextmanager
def firewalls(state: DesiredState, claim: Claim | None = None) -> Iterator[list[EmulatorServer]]:
    """One TLS emulator per opnsense Node, its credentials where the Node points (each
    file recorded in ``claim``, so `fazai demo --clean` removes it)."""
    started: list[EmulatorServer] = []
    try:
        for node in sorted(state.nodes.values(), key=lambda n: n.name):
            if node.spec["platform"] == "opnsense":
                started.append(_start_firewall(node, claim))
        yield started
    finally:
        for emulator in started:
            emulator.stop()


def _start_firewall(node: Document, claim: Claim | None) -> EmulatorServer:
    url = urlsplit(node.spec["url"])
    if url.hostname not in ("127.0.0.1", "localhost") or url.port is None:
        raise ValueError(f"Node/{node.name}: the sandbox serves firewalls on 127.0.0.1:PORT only")
    _check_port_free(node.name, url.port)
    emulator = EmulatorServer(version="26.1", tls=url.scheme == "https", port=url.port).start()
    files = {
        node.spec["apiKeyRef"].get("file"): emulator.api_key,
        node.spec["apiSecretRef"].get("file"): emulator.api_secret,
    }
    for path, value in files.items():
        if path is None:
            emulator.stop()
            raise ValueError(
                f"Node/{node.name}: sandbox firewalls take their key and secret from files"
            )
        if claim is not None:
            claim.wrote(Path(path))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(value + "\n")
        Path(path).chmod(0o600)
    bundle = node.spec.get("tls", {}).get("caBundle")
    if bundle and emulator.certificate is not None:
        if claim is not None:
            claim.wrote(Path(bundle))
        shutil.copyfile(emulator.certificate, bundle)
    return emulator


def _check_port_free(node: str, port: int) -> None:
    """Refuse a port something already listens on, naming it: the emulator would
    otherwise fail deep inside uvicorn's thread with no word of why."""
    busy = bind_error("127.0.0.1", port)
    if busy is not None:
        raise SandboxError(
            f"Node/{node}: 127.0.0.1:{port} is already in use ({busy}): stop what listens "
            f"there (another `fazai demo`, `fazai serve --sandbox` or `fazai emulate "
            f"opnsense`; `ss -ltnp 'sport = :{port}'` names it), or give the Node another "
            f"port in its url"
        )


def seed_firewall(emulator: EmulatorServer, state: DesiredState, node: str) -> None:
    """Apply the node's documents as FazAI would, then drift it as an admin would by hand."""
    verify: bool | ssl.SSLContext = False
    if emulator.certificate is not None:
        verify = ssl.create_default_context(cafile=str(emulator.certificate))
    with httpx.Client(base_url=emulator.url + "/api/", auth=emulator.auth, verify=verify) as api:
        for doc in state.resources_for(node):
            if doc.kind == "FirewallAlias":
                api.post("firewall/alias/addItem", json=payload.alias(doc.spec))
            elif doc.kind == "FirewallRule":
                uuid = object_uuid(node, doc.kind, doc.name)
                api.post(f"firewall/filter/setRule/{uuid}", json=payload.rule(doc.spec))
            elif doc.kind == "HostOverride":
                uuid = object_uuid(node, doc.kind, doc.name)
                api.post(
                    f"unbound/settings/setHostOverride/{uuid}", json=payload.host_override(doc.spec)
                )
    drift = Drift(emulator.state)
    aliases = emulator.state.list("alias").items()
    first = next((u for u, item in aliases if item.get("type") == "host"), None)
    if first is not None:
        drift.edit("alias", first, {"content": "10.231.0.11\n10.231.0.66"})
    drift.add("alias", {"name": "legacy_admins", "type": "host", "content": "192.0.2.10"})
    rules = sorted(emulator.state.list("rule"))
    if rules:
        drift.remove("rule", rules[0])


# The demo's last step, given by the CLI (the agent sits above this test kit): the
# desired state, the final plan (its unresolved items are what the agent is handed),
# the state store's path and the console; it prints what it did.
AgentStep = Callable[[DesiredState, planitems.Plan, Path, Console], None]


def run_demo(
    desired: Path | None,
    workdir: Path,
    emit: Callable[[planitems.Plan], None],
    console: Console,
    agent_step: AgentStep | None = None,
) -> int:
    """Start the sandbox, plan, print; 0 when the plan ran, 2 on trouble."""
    reason = fleet_available()
    if reason is not None:
        console.print(f"[bold red]error:[/] cannot start the sandbox: {reason}")
        return 2
    folder = desired or example_state_dir()
    if not folder.is_dir():
        # A wheel carries no example (it lives beside the package in a checkout).
        raise SandboxError(
            f"no desired state at {folder}: pass --desired-state DIR (the desired_state/ "
            "folder of a FazAI checkout is the example the demo is made for)"
        )
    state = pipeline_source.load(open_source(str(folder)))
    try:
        fleet = fleet_for(state, workdir)
    except ValueError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 2
    with contextlib.ExitStack() as stack:
        claim = stack.enter_context(claimed(workdir))
        try:
            with console.status("starting the sandbox"):
                if fleet is not None:
                    fleet.start()
                    stack.callback(fleet.stop)
                emulators = stack.enter_context(firewalls(state, claim))
        except ValueError as exc:
            console.print(f"[bold red]error:[/] {exc}")
            return 2
        opnsense = [n for n in sorted(state.nodes) if state.nodes[n].spec["platform"] == "opnsense"]
        for name, emulator in zip(opnsense, emulators, strict=True):
            seed_firewall(emulator, state, name)
        parts = [f"{n.name}={n.address}" for n in (fleet.nodes.values() if fleet else [])]
        parts += [
            f"{name}={emu.url} (OPNsense {emu.version} emulator)"
            for name, emu in zip(opnsense, emulators, strict=True)
        ]
        console.print(f"[dim]sandbox: {', '.join(parts)}[/]")
        # Through the policy stage, as `fazai apply`: a refusal stops the demo (exit 2).
        checked = asyncio.run(planning.plan(state, DEMO_RUN, show_unmanaged=True))
        console.rule("1. plan: the sandbox as found")
        emit(checked.plan)
        if checked.plan.has_errors:
            return 2
        return _converge_drift_heal(
            state, checked, fleet, emulators, opnsense, workdir, emit, console, agent_step
        )
    return 0


def _converge_drift_heal(
    state: DesiredState,
    first: Checked,
    fleet: Fleet | None,
    emulators: list[EmulatorServer],
    firewall_names: list[str],
    workdir: Path,
    emit: Callable[[planitems.Plan], None],
    console: Console,
    agent_step: AgentStep | None = None,
) -> int:
    """Apply, drift by hand, plan the drift, apply again, and hand what no handler
    resolves to the agent: the main job end to end."""
    from controller.pipeline import writes
    from controller.store import StateStore

    # Kept after the demo (until `fazai demo --clean`), so `fazai history --state` shows
    # the runs it made; `serve --sandbox` records in the same file.
    store_path = workdir / STATE_FILE
    with StateStore(store_path) as store:
        console.print(f"[dim]state: {store_path}[/]")
        console.rule("2. apply")
        if not _report(asyncio.run(writes.apply(state, first, store)), console):
            return 2
        console.rule("3. drift made by hand")
        _drift_by_hand(state, fleet, emulators, firewall_names, console)
        drifted = asyncio.run(planning.plan(state, DEMO_RUN))
        console.rule("4. plan: the drift, and nothing else")
        emit(drifted.plan)
        console.rule("5. apply heals it")
        if not _report(asyncio.run(writes.apply(state, drifted, store)), console):
            return 2
        final = asyncio.run(planning.plan(state, DEMO_RUN)).plan
        left = final.unresolved
        console.rule("6. plan: in sync" + (", but for what no handler resolves" if left else ""))
        emit(final)
        # In sync but for unresolved items is what an apply can reach: the rest is the
        # agent's.
        healed = not final.has_errors and not final.has_writes
        if healed and left and agent_step is not None:
            console.rule("7. the agent: what is left, attempted by the embedded model")
            agent_step(state, final, store_path, console)
        console.print(
            f"[dim]the runs: `fazai history --state {store_path}`; {workdir} keeps the "
            "sandbox's SSH key, the firewall's API secret and that state store until "
            "`fazai demo --clean`[/]"
        )
        return 0 if healed else 2


def _report(result: Any, console: Console) -> bool:
    for node in result.nodes:
        colour = "green" if node.status.value in ("converged", "skipped") else "red"
        detail = f" ({count(node.changes, 'change')})" if node.changes else ""
        message = f": {node.message}" if node.message else ""
        console.print(f"[{colour}]{node.node}: {node.status.value}{detail}{message}[/]")
    return bool(result.converged)


def _drift_by_hand(
    state: DesiredState,
    fleet: Fleet | None,
    emulators: list[EmulatorServer],
    firewall_names: list[str],
    console: Console,
) -> None:
    if fleet is not None:
        files = [
            (name, doc.spec["path"])
            for name in sorted(fleet.nodes)
            for doc in state.resources_for(name)
            if doc.kind == "File" and doc.spec["state"] == "present" and "content" in doc.spec
        ]
        if files:
            name, path = files[0]
            fleet.nodes[name].run(f"echo 'edited by hand at 3am' >> {shlex.quote(path)}")
            console.print(f"{name}: appended a line to {path}")
    for name, emulator in zip(firewall_names, emulators, strict=True):
        aliases = emulator.state.list("alias").items()
        host = next((u for u, item in aliases if item.get("type") == "host"), None)
        if host is not None:
            Drift(emulator.state).edit("alias", host, {"content": "10.231.0.11\n10.231.0.99"})
            console.print(f"{name}: changed a host alias in the web UI")
