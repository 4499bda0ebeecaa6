"""The sandbox behind ``fazai demo``: the example desired state planned against real nodes.

The sandbox starts one fleet node per Linux ``Node`` document, at the address the
document names, writes the client key and known_hosts where the documents point, plans,
and tears everything down, so a fresh machine shows FazAI working end to end with
nothing to configure.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

import controller
from controller.engine import plan as planning
from controller.model import loader
from controller.model.state import DesiredState
from controller.source.open import open_source
from controller.testing.fleet import Fleet, NodeSpec, fleet_available


def example_state_dir() -> Path:
    """The example shipped beside the package in a checkout, else ./desired_state."""
    beside = Path(controller.__file__).resolve().parents[1] / "desired_state"
    return beside if beside.is_dir() else Path.cwd() / "desired_state"


def fleet_for(state: DesiredState, workdir: Path) -> Fleet:
    specs = [
        NodeSpec(name, doc.spec["address"])
        for name, doc in sorted(state.nodes.items())
        if doc.spec["platform"] == "linux"
    ]
    if not specs:
        raise ValueError("the desired state has no Linux nodes to start")
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


def run_demo(
    desired: Path | None,
    workdir: Path,
    emit: Callable[[planning.Plan], None],
    console: Console,
) -> int:
    """Start the sandbox, plan, print; 0 when the plan ran, 2 on trouble."""
    reason = fleet_available()
    if reason is not None:
        console.print(f"[bold red]error:[/] cannot start the sandbox: {reason}")
        return 2
    folder = desired or example_state_dir()
    state = loader.load(open_source(str(folder)))
    try:
        fleet = fleet_for(state, workdir)
    except ValueError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 2
    with console.status(f"starting {len(fleet.nodes)} sandbox nodes"):
        fleet.start()
    try:
        console.print(
            f"[dim]sandbox: {len(fleet.nodes)} real OpenSSH nodes in network namespaces "
            f"({', '.join(f'{n.name}={n.address}' for n in fleet.nodes.values())})[/]"
        )
        result = asyncio.run(planning.build(state))
        emit(result)
        return 2 if result.has_errors else 0
    finally:
        fleet.stop()
