"""The ``fazai`` command line."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import controller
from controller import providers
from controller.errors import FazaiError, InvalidInputError
from controller.model import kinds, loader
from controller.model.state import DesiredState
from controller.source.open import open_source

if TYPE_CHECKING:
    from controller.engine import plan as planning

EXIT_OK, EXIT_DIFF, EXIT_TROUBLE = 0, 1, 2

F = TypeVar("F", bound=Callable[..., Any])

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def source_options(func: F) -> F:
    func = click.option(
        "--subdir",
        default="",
        metavar="DIR",
        help="Folder inside the source holding the documents.",
    )(func)
    func = click.option(
        "--ref",
        metavar="REF",
        help="Read PATH as a git repository (path or URL) at this branch, tag or commit.",
    )(func)
    func = click.argument("path", default=".", metavar="[PATH]")(func)
    return func


def state_option(func: F) -> F:
    return click.option(
        "--state",
        "state_file",
        type=click.Path(path_type=Path, dir_okay=False),
        envvar="FAZAI_STATE",
        help="The state store (runs, journal, owned objects). "
        "Default: $XDG_STATE_HOME/fazai/state.db.",
    )(func)


def prune_option(func: F) -> F:
    return click.option(
        "--prune",
        is_flag=True,
        help="Delete objects FazAI created that no document describes any more (as a Node's "
        "prune: true does). Objects FazAI did not create are never deleted.",
    )(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(controller.__version__, prog_name="fazai")
def main() -> None:
    """FazAI: declarative GitOps reconciliation for OPNsense firewalls and Linux servers.

    Exit codes follow diff(1): 0 in sync, 1 differences found, 2 trouble.
    """


@main.command()
@source_options
def validate(path: str, ref: str | None, subdir: str) -> None:
    """Check the documents in PATH: schema, references, conflicts. Reads no node."""
    state = _load(path, ref, subdir)
    resources = len(state.resources)
    stderr.print(
        f"[green]valid[/]: {len(state.nodes)} node(s), {resources} resource(s)"
        + (f" at {state.revision[:12]}" if state.revision else "")
    )
    sys.exit(EXIT_OK)


@main.command()
@source_options
@click.option(
    "--node", "nodes", multiple=True, metavar="NAME", help="Plan only this node (repeatable)."
)
@click.option(
    "--output",
    "-o",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=32,
    show_default=True,
    help="Nodes read at once.",
)
@click.option("--show-noop", is_flag=True, help="Also list resources that are in sync.")
@click.option(
    "--show-unmanaged",
    is_flag=True,
    help="Also list objects on the nodes that no document describes (never changed).",
)
@prune_option
@state_option
def plan(
    path: str,
    ref: str | None,
    subdir: str,
    nodes: Sequence[str],
    output: str,
    concurrency: int,
    show_noop: bool,
    show_unmanaged: bool,
    prune: bool,
    state_file: Path | None,
) -> None:
    """Show what applying PATH would change on the live nodes.

    Exit 0 when every node is in sync, 1 when there are differences, 2 on trouble
    (invalid documents, a node that cannot be read).
    """
    state = _load(path, ref, subdir)
    unknown = sorted(set(nodes) - set(state.nodes))
    if unknown:
        _fail(f"no Node named {', '.join(unknown)} in the desired state")
    state = _with_prune(state, prune, state_file)
    result = run_plan(state, nodes, concurrency, show_unmanaged)
    emit_plan(result, output, show_noop)
    sys.exit(result.exit_code)


def run_plan(
    state: DesiredState, nodes: Sequence[str], concurrency: int, show_unmanaged: bool = False
) -> planning.Plan:
    from controller.engine import plan as planning

    options: dict[str, Any] = {
        "only": nodes,
        "concurrency": concurrency,
        "show_unmanaged": show_unmanaged,
    }
    selected = [n for n in state.nodes if not nodes or n in nodes]
    if not stderr.is_terminal:
        return asyncio.run(planning.build(state, **options))
    with Progress(
        TextColumn("reading nodes"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    ) as progress:
        task = progress.add_task("", total=len(selected))

        def advance(node: str, result: planning.NodePlan | None) -> None:
            if result is None:
                progress.update(task, description=node)
            else:
                progress.advance(task)

        return asyncio.run(planning.build(state, progress=advance, **options))


def emit_plan(result: planning.Plan, output: str, show_noop: bool = False) -> None:
    from controller.output import plan_json, plan_markdown, plan_text

    if output == "json":
        click.echo(plan_json.render(result), nl=False)
    elif output == "markdown":
        click.echo(plan_markdown.render(result), nl=False)
    else:
        plan_text.render(result, Console(highlight=False, soft_wrap=True), show_noop=show_noop)


@main.command()
@source_options
@click.option("--node", "nodes", multiple=True, metavar="NAME", help="Apply only this node.")
@click.option("--auto-approve", is_flag=True, help="Apply without asking for confirmation.")
@click.option("--fail-fast", is_flag=True, help="Stop starting nodes after the first failure.")
@click.option("--output", "-o", type=click.Choice(["text", "json", "markdown"]), default="text")
@click.option("--concurrency", type=click.IntRange(1, 1024), default=8, show_default=True)
@prune_option
@state_option
def apply(
    path: str,
    ref: str | None,
    subdir: str,
    nodes: Sequence[str],
    auto_approve: bool,
    fail_fast: bool,
    output: str,
    concurrency: int,
    prune: bool,
    state_file: Path | None,
) -> None:
    """Converge the nodes to PATH: per node a transaction (snapshot, write, verify), rolled
    back to its snapshot on any failure.

    Shows the plan and asks for confirmation unless --auto-approve; with no terminal and
    no --auto-approve it refuses. Exit 0 when every node converged, 2 otherwise.
    """
    from controller.engine import apply as applying
    from controller.store import StateStore

    state = _load(path, ref, subdir)
    unknown = sorted(set(nodes) - set(state.nodes))
    if unknown:
        _fail(f"no Node named {', '.join(unknown)} in the desired state")
    state = _with_prune(state, prune, state_file)
    with StateStore(state_file) as store:
        for line in asyncio.run(applying.recover(state, store)):
            stderr.print(f"[yellow]recovery:[/] {_escape(line)}")
        result = run_plan(state, nodes, concurrency)
        emit_plan(result, output)
        if result.has_errors:
            _fail("the plan has errors; nothing applied")
        if not result.has_changes:
            stderr.print("[green]nothing to apply[/]")
            sys.exit(EXIT_OK)
        if not auto_approve:
            if not sys.stdin.isatty():
                _fail("no terminal to confirm on; pass --auto-approve to apply unattended")
            if not click.confirm("Apply these changes?", default=False, err=True):
                _fail("not applied")
        outcome = asyncio.run(
            applying.apply(state, result, store, concurrency=concurrency, fail_fast=fail_fast)
        )
    for node in outcome.nodes:
        colour = {"converged": "green", "skipped": "dim"}.get(node.status.value, "red")
        detail = f": {node.message}" if node.message else ""
        stderr.print(f"[{colour}]{node.node}: {node.status.value}[/]{_escape(detail)}")
    stderr.print(f"run {outcome.run_id} recorded; see `fazai history`")
    sys.exit(outcome.exit_code)


@main.command()
@click.argument("run_id", type=int)
@source_options
@click.option("--node", "nodes", multiple=True, metavar="NAME", help="Only this node.")
@click.option("--auto-approve", is_flag=True, help="Restore without asking for confirmation.")
@state_option
def rollback(
    run_id: int,
    path: str,
    ref: str | None,
    subdir: str,
    nodes: Sequence[str],
    auto_approve: bool,
    state_file: Path | None,
) -> None:
    """Restore, on each node, the snapshot run RUN_ID took before it wrote.

    PATH gives the nodes' connection details. Exit 0 when every node was restored.
    """
    from controller.engine import apply as applying
    from controller.store import StateStore

    state = _load(path, ref, subdir)
    if not auto_approve:
        if not sys.stdin.isatty():
            _fail("no terminal to confirm on; pass --auto-approve to roll back unattended")
        if not click.confirm(f"Restore the snapshots of run {run_id}?", default=False, err=True):
            _fail("not rolled back")
    with StateStore(state_file) as store:
        outcome = asyncio.run(applying.roll_back_run(state, store, run_id, only=nodes))
    if not outcome.nodes:
        _fail(f"run {run_id} changed no node{' of those named' if nodes else ''}")
    for node in outcome.nodes:
        colour = "green" if node.status.value == "converged" else "red"
        stderr.print(f"[{colour}]{node.node}: {_escape(node.message)}[/]")
    stderr.print(f"run {outcome.run_id} recorded; see `fazai history`")
    sys.exit(outcome.exit_code)


@main.command()
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text")
@state_option
def history(limit: int, output: str, state_file: Path | None) -> None:
    """List recorded runs, newest first, with their ids."""
    from controller.store import StateStore

    with StateStore(state_file) as store:
        runs = store.list_runs(limit)
    if output == "json":
        click.echo(
            json.dumps(
                [
                    {
                        "id": r.id,
                        "command": r.command.value,
                        "trigger": r.trigger.value,
                        "status": r.status.value,
                        "started": r.started.isoformat(),
                        "finished": r.finished.isoformat() if r.finished else None,
                        "source": r.source,
                        "revision": r.revision,
                        "nodes": [
                            {"node": n.node, "status": n.status.value, "message": n.message}
                            for n in r.nodes
                        ],
                    }
                    for r in runs
                ],
                indent=2,
            )
        )
        return
    for r in runs:
        revision = f" {r.revision[:12]}" if r.revision else ""
        click.echo(
            f"{r.id:>5}  {r.started:%Y-%m-%d %H:%M:%S}  {r.command.value:<8} {r.status.value:<12}"
            f"{revision}  {', '.join(f'{n.node}={n.status.value}' for n in r.nodes)}"
        )


@main.command()
@click.argument("kind", required=False)
@click.option(
    "--plan", "plan_schema", is_flag=True, help="Print the schema of `plan --output json`."
)
def schema(kind: str | None, plan_schema: bool) -> None:
    """Print the JSON Schema of KIND's documents (all kinds when omitted)."""
    from controller.output import plan_json

    providers.load_all()
    if plan_schema:
        click.echo(json.dumps(plan_json.schema(), indent=2))
        return
    by_name = {name.lower(): kinds.get(name) for name in kinds.names()}
    if kind is None:
        every = {k.name: k.document_schema() for k in by_name.values() if k is not None}
        click.echo(json.dumps(every, indent=2))
        return
    found = by_name.get(kind.lower())
    if found is None:
        _fail(f"unknown kind {kind!r}; known kinds: {', '.join(kinds.names())}")
        return
    click.echo(json.dumps(found.document_schema(), indent=2))


@main.command()
@click.option(
    "--desired-state",
    "desired",
    type=click.Path(path_type=Path),
    default=None,
    help="Desired state to plan (default: the example shipped with FazAI).",
)
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    default=Path("/var/lib/fazai/sandbox"),
    show_default=True,
    help="Where the sandbox keeps its keys and known_hosts.",
)
@click.option("--output", "-o", type=click.Choice(["text", "json", "markdown"]), default="text")
def demo(desired: Path | None, workdir: Path, output: str) -> None:
    """Run the main job on a sandbox (root needed): real Linux nodes and an emulated
    OPNsense firewall; plan, apply, drift made by hand, plan, apply that heals it, plan in
    sync; then tear the sandbox down."""
    from controller.testing import sandbox

    code = sandbox.run_demo(desired, workdir, lambda result: emit_plan(result, output), stderr)
    sys.exit(code)


@main.group()
def emulate() -> None:
    """Run an emulator of a managed platform, for demos and your own tests."""


@emulate.command("opnsense")
@click.option("--listen", default="127.0.0.1:8443", show_default=True, metavar="HOST:PORT")
@click.option(
    "--version",
    "firmware",
    type=click.Choice(["24.7", "25.1", "25.7", "26.1", "26.7"]),
    default="26.1",
    show_default=True,
    help="The OPNsense release to imitate.",
)
@click.option("--api-key", envvar="FAZAI_EMULATOR_API_KEY", help="Default: generated, printed.")
@click.option("--api-secret", envvar="FAZAI_EMULATOR_API_SECRET", help="Default: generated.")
@click.option(
    "--state",
    "state_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Load the firewall's state from this JSON file and save it back after every change.",
)
@click.option("--tls", is_flag=True, help="Serve HTTPS with a self-signed certificate.")
def emulate_opnsense(
    listen: str,
    firmware: str,
    api_key: str | None,
    api_secret: str | None,
    state_file: Path | None,
    tls: bool,
) -> None:
    """Serve an emulated OPNsense REST API (aliases, filter rules, Unbound host overrides,
    backups, savepoints) until interrupted."""
    from controller.testing.opnsense import serve

    if (api_key is None) != (api_secret is None):
        _fail("give both --api-key and --api-secret, or neither")
    try:
        serve(listen, firmware, api_key, api_secret, state_file, tls)
    except ValueError as exc:
        _fail(str(exc))


def _with_prune(state: DesiredState, flag: bool, state_file: Path | None) -> DesiredState:
    """The desired state plus, on pruning nodes, the owned objects to delete."""
    from controller.engine import prune
    from controller.store import StateStore

    nodes = prune.prune_nodes(state, flag)
    if not nodes:
        return state
    with StateStore(state_file) as store:
        owned = {node: store.owned(node) for node in nodes}
    pruned, notes = prune.with_pruned(state, owned, nodes)
    for note in notes:
        stderr.print(f"[yellow]prune:[/] {_escape(note)}")
    return pruned


def _load(path: str, ref: str | None, subdir: str) -> DesiredState:
    tree = open_source(path, ref, subdir)
    state = loader.load(tree)
    for warning in state.warnings:
        stderr.print(f"[yellow]{_escape(str(warning))}[/]")
    return state


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _fail(message: str) -> Any:
    stderr.print(f"[bold red]error:[/] {_escape(message)}")
    sys.exit(EXIT_TROUBLE)


def run() -> None:
    """Entry point: FazAI errors become one clear message and exit code 2, never a traceback."""
    try:
        main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        sys.exit(EXIT_TROUBLE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_TROUBLE)
    except InvalidInputError as exc:
        for diagnostic in exc.diagnostics:
            style = "red" if diagnostic.is_error else "yellow"
            stderr.print(f"[{style}]{_escape(str(diagnostic))}[/]", soft_wrap=True)
        stderr.print(f"[bold red]{exc}[/]")
        sys.exit(EXIT_TROUBLE)
    except FazaiError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("FAZAI_DEBUG"):
            raise
        stderr.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {_escape(str(exc))}\n"
            "This is a bug in FazAI; run again with FAZAI_DEBUG=1 for the traceback."
        )
        sys.exit(EXIT_TROUBLE)
