"""The ``fazai`` command line."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

import controller
import controller.policy  # registers the Policy kind, as providers.load_all the platforms
from controller import agentcli, modelcli, providers, signals
from controller.errors import FazaiError, InvalidInputError
from controller.model import kinds, loader
from controller.model.state import DesiredState
from controller.output import terminal
from controller.output.terminal import SafeConsole
from controller.source import revision as revisions
from controller.source.open import open_source
from controller.source.tree import SourceTree
from controller.words import count

if TYPE_CHECKING:
    from controller.engine.prune import Pruning
    from controller.pipeline.gate import Checked
    from controller.plan import items as planitems
    from controller.plan.review import Review
    from controller.server.client import ApiClient
    from controller.store import StateStore

EXIT_OK, EXIT_DIFF, EXIT_TROUBLE = 0, 1, 2

F = TypeVar("F", bound=Callable[..., Any])


class _HangupConsole(SafeConsole):
    """stderr that survives the terminal going away (SIGHUP, then EIO on every write): a
    lost message must not turn an orderly rollback and exit 130 into a traceback."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        try:
            super().print(*objects, **kwargs)
        except OSError:
            # What could not be written stays in the stream's buffer, and a failed flush
            # at exit would make the exit status 120: write the rest to nowhere.
            sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115


stderr = _HangupConsole(stderr=True, highlight=False, soft_wrap=True)


def source_options(func: F, default: str = "the current directory") -> F:
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
    func = click.argument("path", required=False, metavar="[PATH]")(func)
    # Arguments have no help of their own in click: say it in the command's.
    func.__doc__ = (func.__doc__ or "") + (
        "\n\n    PATH: a folder of documents or, with --ref, a git repository (default: "
        f"{default}). YAML that is plainly another tool's (another tool's apiVersion "
        "and kind, or neither apiVersion nor kind) is skipped and counted; a file that "
        "holds a FazAI document is read whole."
    )
    return func


def state_option(func: F) -> F:
    return click.option(
        "--state",
        "state_file",
        type=click.Path(path_type=Path, dir_okay=False),
        envvar="FAZAI_STATE",
        help="The state store (runs, journal, owned objects). Default: $FAZAI_STATE, else "
        "$XDG_STATE_HOME/fazai/state.db (~/.local/state/fazai/state.db). Never created by a "
        "command that only reads it: history and rollback refuse one that does not exist; "
        "plan and review warn and prune nothing.",
    )(func)


def prune_option(func: F) -> F:
    return click.option(
        "--prune",
        is_flag=True,
        help="Delete objects FazAI created that no document describes any more (as a Node's "
        "prune: true does). Objects FazAI did not create are never deleted.",
    )(func)


def lock_timeout_option(func: F) -> F:
    return click.option(
        "--lock-timeout",
        type=click.FloatRange(0),
        default=0.0,
        show_default=True,
        metavar="SECONDS",
        help="Wait this long for another apply/rollback/serve writing the same state store "
        "or node, then refuse (exit 2, naming the holder); 0 refuses at once.",
    )(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(controller.__version__, prog_name="fazai")
def main() -> None:
    """FazAI: declarative GitOps reconciliation for OPNsense firewalls and Linux servers.

    Exit codes follow diff(1): 0 in sync, 1 differences found, 2 trouble.
    """
    providers.load_all()  # every command reads documents of the platforms' kinds


@main.command()
@source_options
def validate(path: str | None, ref: str | None, subdir: str) -> None:
    """Check the documents in PATH: schema, references, conflicts. Reads no node."""
    state = _load(path, ref, subdir)
    resources = len(state.resources)
    stderr.print(
        f"[green]valid[/]: {count(len(state.nodes), 'node')}, {count(resources, 'resource')}"
        + (f" at {revisions.short(state.revision)}" if state.revision else "")
        + (f"; {count(len(state.skipped), 'YAML document')} skipped" if state.skipped else "")
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
@click.option(
    "--base",
    "base_ref",
    metavar="REF",
    help="With --head: plan a pull request. PATH is the repository; the head's plan is "
    "shown, each change marked introduced, changed or pending against the base's plan.",
)
@click.option("--head", "head_ref", metavar="REF", help="The pull request's head (see --base).")
@click.option(
    "--agent",
    "with_agent",
    is_flag=True,
    help="Hand each unresolved Goal to the agent, proposing only (its read-only probes "
    "run; nothing is applied) and show what it proposes. Models from --config.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="With --agent: fazai.yaml, whose models: section declares the models.",
)
@click.option(
    "--trust-head",
    is_flag=True,
    help="With --base/--head: also read nodes the head adds or reaches differently "
    "(default: only as the base says, so a pull request cannot redirect credentials).",
)
@prune_option
@state_option
def plan(
    path: str | None,
    ref: str | None,
    subdir: str,
    nodes: Sequence[str],
    output: str,
    concurrency: int,
    show_noop: bool,
    show_unmanaged: bool,
    prune: bool,
    state_file: Path | None,
    base_ref: str | None = None,
    head_ref: str | None = None,
    trust_head: bool = False,
    with_agent: bool = False,
    config_file: Path | None = None,
) -> None:
    """Show what applying PATH would change on the live nodes.

    Exit 0 when every node is in sync, 1 when there are differences, 2 on trouble
    (invalid documents, a node that cannot be read).
    """
    if base_ref is not None or head_ref is not None:
        if base_ref is None or head_ref is None or ref is not None:
            _fail("give both --base and --head (and no --ref): PATH is the repository")
            return
        options = {"only": nodes, "concurrency": concurrency, "show_unmanaged": show_unmanaged}
        reviewed = _plan_review(
            path or ".", base_ref, head_ref, subdir, prune, state_file, trust_head, options
        )
        emit_review(reviewed, output, show_noop)
        sys.exit(reviewed.exit_code)
    state = _load(path, ref, subdir)
    unknown = sorted(set(nodes) - set(state.nodes))
    if unknown:
        _fail(f"no Node named {', '.join(unknown)} in the desired state")
    state = _with_prune(state, prune, state_file, read_only=True).state
    result = run_plan(state, nodes, concurrency, show_unmanaged, mode="plan").plan
    if with_agent:
        result = agentcli.propose(state, result, config_file)
    emit_plan(result, output, show_noop)
    sys.exit(result.exit_code)


def _plan_review(
    path: str,
    base_ref: str,
    head_ref: str,
    subdir: str,
    prune: bool,
    state_file: Path | None,
    trust_head: bool,
    options: dict[str, Any],
) -> Review:
    """`plan --base --head`: the head's plan marked against the base's (one read per node)."""
    from controller.forges import command

    pair = command.load_pair(path, base_ref, head_ref, subdir)
    for warning in pair.head.warnings:
        stderr.print(f"[yellow]{_escape(str(warning))}[/]")
    if pair.base_error:
        stderr.print(f"[yellow]base {_escape(base_ref)}: {_escape(pair.base_error)}[/]")
    unknown = sorted(set(options["only"]) - set(pair.head.nodes))
    if unknown:
        _fail(f"no Node named {', '.join(unknown)} in the head's desired state")
    result = command.plan_pair(
        pair,
        trust_head=trust_head,
        prune=lambda state: _with_prune(state, prune, state_file, read_only=True).state,
        **options,
    )
    return result


def emit_review(result: Review, output: str, show_noop: bool = False) -> None:
    from controller.output import review_json, review_markdown, review_text

    if output == "json":
        click.echo(review_json.render(result), nl=False)
    elif output == "markdown":
        terminal.echo(review_markdown.render(result), nl=False)
    else:
        review_text.render(
            result, SafeConsole(highlight=False, soft_wrap=True), show_noop=show_noop
        )


@main.command()
@click.argument("path", default=".", metavar="[PATH]")
@click.option(
    "--base", "base_ref", required=True, metavar="REF", help="The target branch's commit."
)
@click.option("--head", "head_ref", required=True, metavar="REF", help="The pull request's.")
@click.option("--subdir", default="", metavar="DIR", help="Folder of the documents.")
@click.option(
    "--forge",
    required=True,
    metavar="github|gitlab|gitea|NAME",
    help="The forge's type (forgejo: gitea), or an entry's name in --config's forges.",
)
@click.option("--repo", required=True, metavar="OWNER/NAME|PROJECT", help="GitLab: id or path.")
@click.option("--pr", type=click.IntRange(1), required=True, help="Pull/merge request number.")
@click.option(
    "--sha", metavar="REF", help="Commit to set the status on, e.g. HEAD^2 (default: --head)."
)
@click.option("--api-url", metavar="URL", help="Default: $GITHUB_API_URL, $CI_API_V4_URL, "
              "api.github.com, gitlab.com.")  # fmt: skip
@click.option(
    "--token-ref",
    metavar="env:NAME|file:PATH",
    help="Where the token is (default env:GITHUB_TOKEN, env:GITLAB_TOKEN, env:GITEA_TOKEN).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A fazai.yaml whose forges section gives apiUrl, tokenRef, statusContext, tls.",
)
@click.option("--context", metavar="NAME", help="Commit status name (default fazai/plan).")
@click.option("--target-url", metavar="URL", help="Link of the status (the CI job's page).")
@click.option("--comment-key", default="", metavar="KEY", help="Tells several plan comments apart.")
@click.option("--node", "nodes", multiple=True, metavar="NAME", help="Only this node.")
@click.option("--concurrency", type=click.IntRange(1, 1024), default=32, show_default=True)
@click.option("--trust-head", is_flag=True, help="Also read nodes the head reaches differently.")
@click.option("--output", "-o", type=click.Choice(["text", "json", "markdown"]), default="text")
@prune_option
@state_option
def review(
    path: str,
    base_ref: str,
    head_ref: str,
    subdir: str,
    forge: str,
    repo: str,
    pr: int,
    sha: str | None,
    api_url: str | None,
    token_ref: str | None,
    config_file: Path | None,
    context: str | None,
    target_url: str | None,
    comment_key: str,
    nodes: Sequence[str],
    concurrency: int,
    trust_head: bool,
    output: str,
    prune: bool,
    state_file: Path | None,
) -> None:
    """Plan pull request PR of the repository at PATH against the live nodes, print the
    plan, update the one plan comment on the pull request and set a commit status on its
    head (GitHub, GitLab, Gitea/Forgejo). Exit codes as plan.
    """
    from controller.forges import command

    try:
        settings = command.forge_settings(
            forge,
            api_url=api_url,
            token_ref=token_ref,
            config=config_file,
            environ=dict(os.environ),
        )
        posting = command.prepare_posting(
            settings, repo, pr, comment_key=comment_key, context=context, target_url=target_url
        )
    except ValueError as exc:
        _fail(str(exc))
    code = command.run_review(
        path,
        base_ref,
        head_ref,
        posting,
        subdir=subdir,
        sha=sha,
        plan_options={
            "only": nodes,
            "concurrency": concurrency,
            "trust_head": trust_head,
            "prune": lambda state: _with_prune(state, prune, state_file, read_only=True).state,
        },
        emit=lambda result: emit_review(result, output),
        say=lambda line: stderr.print(_escape(line)),
    )
    sys.exit(code)


def run_plan(
    state: DesiredState,
    nodes: Sequence[str],
    concurrency: int,
    show_unmanaged: bool = False,
    *,
    mode: str,
) -> Checked:
    """The pipeline up to the policy stage, for the CLI command ``mode`` (plan, apply,
    drift), with a progress bar on a terminal."""
    from controller.pipeline import context, planning

    run = context.cli(mode, state.source.description)
    options: dict[str, Any] = {
        "only": nodes,
        "concurrency": concurrency,
        "show_unmanaged": show_unmanaged,
    }
    selected = [n for n in state.nodes if not nodes or n in nodes]
    if not stderr.is_terminal:
        return signals.run_cancellable(lambda: planning.plan(state, run, **options))
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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

        def advance(node: str, result: planitems.NodePlan | None) -> None:
            if result is None:
                progress.update(task, description=node)
            else:
                progress.advance(task)

        return signals.run_cancellable(
            lambda: planning.plan(state, run, progress=advance, **options)
        )


def emit_plan(result: planitems.Plan, output: str, show_noop: bool = False) -> None:
    from controller.output import plan_markdown, plan_text
    from controller.plan import plan_json

    if output == "json":
        click.echo(plan_json.render(result), nl=False)
    elif output == "markdown":
        terminal.echo(plan_markdown.render(result), nl=False)
    else:
        plan_text.render(result, SafeConsole(highlight=False, soft_wrap=True), show_noop=show_noop)


@main.command()
@source_options
@click.option("--node", "nodes", multiple=True, metavar="NAME", help="Apply only this node.")
@click.option("--auto-approve", is_flag=True, help="Apply without asking for confirmation.")
@click.option("--fail-fast", is_flag=True, help="Stop starting nodes after the first failure.")
@click.option("--output", "-o", type=click.Choice(["text", "json", "markdown"]), default="text")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=8,
    show_default=True,
    help="Nodes read and applied at once.",
)
@prune_option
@state_option
@lock_timeout_option
def apply(
    path: str | None,
    ref: str | None,
    subdir: str,
    nodes: Sequence[str],
    auto_approve: bool,
    fail_fast: bool,
    output: str,
    concurrency: int,
    prune: bool,
    state_file: Path | None,
    lock_timeout: float,
) -> None:
    """Converge the nodes to PATH: per node a transaction (snapshot, write, verify), rolled
    back to its snapshot on any failure.

    Shows the plan and asks for confirmation unless --auto-approve; with no terminal and
    no --auto-approve it refuses; answering no cancels it (exit 0, nothing applied).
    Exit 0 when every node converged, 1 when they did but differences no handler can
    write are left (unresolved: a failing Goal), 2 otherwise, 130 when interrupted
    (Ctrl-C, SIGTERM: the node in flight finishes or rolls back first).
    """
    from controller.pipeline import writes
    from controller.store import NodeStatus, StateStore

    state = _load(path, ref, subdir)
    unknown = sorted(set(nodes) - set(state.nodes))
    if unknown:
        _fail(f"no Node named {', '.join(unknown)} in the desired state")
    with StateStore(state_file) as store, store.writer(lock_timeout):
        _say_state(store.path)
        recovered, stopped = signals.run(
            lambda stop: writes.recover(state, store, interrupt=stop), _say, "the recovery"
        )
        for line in recovered:
            stderr.print(f"[yellow]recovery:[/] {_escape(line)}")
        # Ownership is read under the writer lock: an apply that waited for another one
        # prunes and binds from what that one recorded, not from what was there before.
        if stopped:
            _interrupted("during recovery; nothing applied")
        pruning = _with_prune(state, prune, store.path)
        state = pruning.state
        checked = run_plan(state, nodes, concurrency, mode="apply")
        result = checked.plan
        emit_plan(result, output)
        _gate(checked, "applied", store=store)
        if result.has_errors:
            _fail("the plan has errors; nothing applied")
        if not result.has_writes:
            _release(store, pruning, [n.node for n in result.nodes])
            for line in writes.record_adoptions(store, result):
                stderr.print(f"adopted: {_escape(line)}")
            if result.unresolved:
                _say_unresolved(result.unresolved)
                stderr.print("nothing to apply: what differs, no handler can write")
                sys.exit(EXIT_DIFF)
            stderr.print("[green]nothing to apply[/]")
            sys.exit(EXIT_OK)
        if not auto_approve:
            if not sys.stdin.isatty():
                _fail("no terminal to confirm on; pass --auto-approve to apply unattended")
            if not click.confirm("Apply these changes?", default=False, err=True):
                _cancelled("Apply cancelled: nothing applied.")
        outcome, stopped = signals.run(
            lambda stop: writes.apply(
                state,
                checked,
                store,
                concurrency=concurrency,
                fail_fast=fail_fast,
                lock_timeout=lock_timeout,
                interrupt=stop,
            ),
            _say,
            defer_after=True,
        )
        converged = [n.node for n in outcome.nodes if n.status is NodeStatus.CONVERGED]
        _release(store, pruning, converged, outcome.run_id)
    for node in outcome.nodes:
        colour = {"converged": "green", "skipped": "dim"}.get(node.status.value, "red")
        # One line: a node's message quoting its output could pose as another node's line.
        detail = f": {terminal.clean(node.message, one_line=True)}" if node.message else ""
        stderr.print(f"[{colour}]{node.node}: {node.status.value}[/]{_escape(detail)}")
    stderr.print(f"run {outcome.run_id} recorded; see `fazai history`")
    if outcome.interrupted:
        _interrupted(f"run {outcome.run_id} stopped; where each node ended is listed above")
    if stopped or signals.late():
        _interrupted(f"nothing was cut short; run {outcome.run_id} is recorded as the nodes ended")
    # What the apply's own reads still find unresolved (an apply can meet a goal: a File
    # it writes may be what the goal checks), with the reasons the plan gave.
    left = {(n.node, s) for n in outcome.nodes for s in n.unresolved}
    if outcome.exit_code == EXIT_OK and left:
        _say_unresolved([i for i in result.unresolved if (i.node, f"{i.kind}/{i.name}") in left])
        sys.exit(EXIT_DIFF)
    sys.exit(outcome.exit_code)


def _say_unresolved(items: Sequence[planitems.PlanItem]) -> None:
    """What an apply leaves as it is because no handler can make it so, item by item."""
    for item in items:
        why = terminal.clean(item.reason or "no handler can make it so", one_line=True)
        stderr.print(
            f"[yellow]unresolved:[/] {_escape(f'{item.node}: {item.kind}/{item.name}: {why}')}"
        )


def _recorded_source_options(func: F) -> F:
    return source_options(func, "the source the run recorded, at the commit it recorded")


@main.command()
@click.argument("run_id", type=int)
@_recorded_source_options
@click.option("--node", "nodes", multiple=True, metavar="NAME", help="Only this node.")
@click.option("--auto-approve", is_flag=True, help="Restore without asking for confirmation.")
@click.option(
    "--force",
    is_flag=True,
    help="Restore even where a later run changed the node (undoing it too; its changes "
    "are judged by the policies as well).",
)
@state_option
@lock_timeout_option
def rollback(
    run_id: int,
    path: str | None,
    ref: str | None,
    subdir: str,
    nodes: Sequence[str],
    auto_approve: bool,
    force: bool,
    state_file: Path | None,
    lock_timeout: float,
) -> None:
    """Restore, on each node, the snapshot run RUN_ID took before it wrote.

    PATH gives the nodes' connection details. A node a later run committed on is refused
    (its snapshot would undo that run too) unless --force. Exit 0 when every node was
    restored.
    """
    from controller.pipeline import context, planning, writes
    from controller.store import StateStore

    store_path = _existing_state(state_file)
    if store_path is None:
        _fail(f"no run {run_id}: no state store at {default_state_path()} yet")
        return
    _say_state(store_path)
    if path is None and ref is None and not subdir:
        state = _load_recorded(run_id, store_path)
    else:
        state = _load(path, ref, subdir)
    # A rollback writes too: what it would undo passes the policy stage first.
    with StateStore(store_path) as store:
        undo = writes.rollback_plan(state, store, run_id, nodes, force=force)
        checked = planning.check(state, undo, context.cli("rollback", state.source.description))
        _gate(checked, "restored", "Revert the change", store)
    if not auto_approve:
        if not sys.stdin.isatty():
            _fail("no terminal to confirm on; pass --auto-approve to roll back unattended")
        if not click.confirm(f"Restore the snapshots of run {run_id}?", default=False, err=True):
            _cancelled("Rollback cancelled: nothing restored.")
    with StateStore(store_path) as store, store.writer(lock_timeout):
        # Checked again under the writer lock: a run recorded meanwhile is judged too.
        checked = planning.check(
            state, writes.rollback_plan(state, store, run_id, nodes, force=force), checked.run
        )
        _gate(checked, "restored", "Revert the change", store)
        outcome, stopped = signals.run(
            lambda stop: writes.rollback(
                state,
                checked,
                store,
                run_id,
                only=nodes,
                force=force,
                lock_timeout=lock_timeout,
                interrupt=stop,
            ),
            _say,
            "the restore in flight",
            defer_after=True,
        )
    if not outcome.nodes:
        _fail(f"run {run_id} changed no node{' of those named' if nodes else ''}")
    for node in outcome.nodes:
        colour = "green" if node.status.value == "converged" else "red"
        stderr.print(f"[{colour}]{node.node}: {_escape(node.message)}[/]")
    stderr.print(f"run {outcome.run_id} recorded; see `fazai history`")
    if outcome.interrupted:
        _interrupted(f"run {outcome.run_id} stopped; the nodes not yet restored were skipped")
    if stopped or signals.late():
        _interrupted(f"nothing was cut short; run {outcome.run_id} is recorded as the nodes ended")
    sys.exit(outcome.exit_code)


@main.command()
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text")
@state_option
def history(limit: int, output: str, state_file: Path | None) -> None:
    """List recorded runs, newest first, with their ids.

    A plan or drift run's nodes read "in-sync" or "drift" (they change nothing); an apply's
    "converged", "rolled_back", "failed" or "skipped"."""
    from controller.store import StateStore

    store_path = _existing_state(state_file)
    _say_state(store_path or default_state_path())
    runs = []
    if store_path is not None:
        with StateStore(store_path) as store:
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
                        "actor": r.actor,
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
    if not runs:
        where = store_path or default_state_path()
        stderr.print(
            f"no runs recorded in {_escape(str(where))}"
            + ("" if store_path else " (it does not exist yet: no apply, plan or drift ran)")
        )
        return
    for r in runs:
        revision = f" {revisions.short(r.revision)}" if r.revision else ""
        nodes = ", ".join(
            f"{n.node}={_node_word(r.command.value, n.status.value)}" for n in r.nodes
        )
        actor = f"  by {r.actor}" if r.actor else ""
        terminal.echo(
            f"{r.id:>5}  {r.started:%Y-%m-%d %H:%M:%S}  {r.command.value:<8} {r.status.value:<12}"
            f"{revision}  {nodes}{actor}"
        )


# -- the audit trail (``store.audit``): listing, export and verification ----------------


@main.group(invoke_without_command=True)
@click.option(
    "--since",
    metavar="DURATION|TIMESTAMP",
    help="Only records from this long ago (90s, 10m, 1h30m, 7d) or from this ISO 8601 time "
    "(UTC when it names no zone).",
)
@click.option(
    "--output",
    "-o",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: JSON lines, one record per line, for a SIEM (fields in the README).",
)
@state_option
@click.pass_context
def audit(ctx: click.Context, since: str | None, output: str, state_file: Path | None) -> None:
    """List the audit trail: every write FazAI made, who asked, what policy said, and how
    it ended, oldest first. `fazai audit verify` checks that none was altered."""
    from controller.store import StateStore

    if ctx.invoked_subcommand is not None:
        return
    moment = _since(since) if since else None
    store_path = _existing_state(state_file)
    _say_state(store_path or default_state_path())
    if store_path is None:
        return
    with StateStore(store_path) as store:
        for record in store.audit_records(moment):
            if output == "json":
                click.echo(json.dumps(record.to_dict(), sort_keys=True))
            else:
                terminal.echo(_audit_line(record.to_dict()))


@audit.command("verify")
@click.option(
    "--expect-head",
    metavar="DIGEST",
    help="A head digest printed by an earlier verify and kept elsewhere: refuse a trail "
    "that no longer contains it (records removed from its end).",
)
@state_option
def audit_verify(expect_head: str | None, state_file: Path | None) -> None:
    """Check the audit trail's chain of digests. Exit 0 when intact (prints the count and
    the head digest: keep it elsewhere to detect a truncated trail later), 1 naming the
    first record modified, removed or reordered, 2 when it cannot be checked (no state
    file, keyed records and no $FAZAI_AUDIT_KEY / $FAZAI_AUDIT_KEY_FILE)."""
    from controller.store import StateStore

    store_path = _existing_state(state_file)
    if store_path is None:
        _fail(f"no audit trail: no state store at {default_state_path()} yet")
    _say_state(store_path)
    with StateStore(store_path) as store:
        verified = store.audit_verify(expect_head)
    # A record's columns were written by whoever edited the file: shown cleaned.
    problem = terminal.clean(str(verified.problem), one_line=True) if verified.problem else ""
    if problem:
        stderr.print(f"[bold red]audit trail altered:[/] {_escape(problem)}")
        stderr.print(f"{verified.count} record(s) before it are intact")
    # Plain records prove nothing against someone who can write the file: always said.
    stderr.print(
        f"{count(verified.unkeyed, 'record')} plain SHA-256 (unkeyed: recomputable by anyone "
        "who can write the state file; only --expect-head or a key defends them)"
    )
    if problem:
        sys.exit(EXIT_DIFF)
    terminal.echo(f"audit trail intact: {count(verified.count, 'record')}")
    terminal.echo(f"head: {verified.head}")


def _since(text: str) -> Any:
    from datetime import UTC, datetime, timedelta

    from controller.settings import durations

    try:
        return datetime.now(UTC) - timedelta(seconds=durations.parse(text, maximum=None))
    except ValueError:
        pass
    except OverflowError:
        _fail(f"--since {text!r}: further back than a date can go")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"--since {text!r}: neither a duration (90s, 10m, 7d) nor an ISO 8601 time")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _audit_line(record: dict[str, Any]) -> str:
    payload = record["payload"]
    if isinstance(payload, dict):
        what = payload.get("result") or payload.get("status") or payload.get("command") or ""
        items = payload.get("items")
        detail = f" {count(len(items), 'item')}" if isinstance(items, list) else ""
    else:  # edited by hand: shown raw, marked (``audit verify`` names it)
        what, detail = f"[undecodable: {record.get('defect', '')}]", f" {record['payloadText']:.80}"
    node = f" {record['node']}" if record["node"] else ""
    run = f" run {record['runId']}" if record["runId"] is not None else ""
    return terminal.clean(
        f"{record['seq']:>6}  {record['time'][:19]}  {record['action']:<17} {what}{detail}"
        f"{node}{run}  by {record['actor'] or '?'}",
        one_line=True,
    )


@main.command()
@source_options
@click.option("--node", "nodes", multiple=True, metavar="NAME", help="Only this node (repeatable).")
@click.option(
    "--output",
    "-o",
    type=click.Choice(["text", "json", "markdown", "html"]),
    default="text",
    show_default=True,
)
@click.option(
    "--report-dir",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="Also write the report to DIR, in three files: <timestamp>.md, <timestamp>.json "
    "and <timestamp>.html, each also copied to latest.md, latest.json, latest.html.",
)
@click.option("--days", type=click.IntRange(1, 366), default=30, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 1024), default=32, show_default=True)
@state_option
def drift(
    path: str | None,
    ref: str | None,
    subdir: str,
    nodes: Sequence[str],
    output: str,
    report_dir: Path | None,
    days: int,
    concurrency: int,
    state_file: Path | None,
) -> None:
    """Report how the live nodes differ from PATH, with the drift of the last --days.

    Plans now, records the run in the state store (the history the chart draws) and prints
    the report. Exit 0 in sync, 1 drift, 2 trouble, as plan.
    """
    from controller.reports import drift_cli

    state = _load(path, ref, subdir)
    unknown = sorted(set(nodes) - set(state.nodes))
    if unknown:
        _fail(f"no Node named {', '.join(unknown)} in the desired state")
    result = run_plan(state, nodes, concurrency, mode="drift").plan
    code = drift_cli.report(
        result, output=output, report_dir=report_dir, state_file=state_file, days=days
    )
    sys.exit(code)


@main.command("import")
@source_options
@click.option("--node", "node_name", required=True, metavar="NAME", help="The node to read.")
@click.option(
    "--kind",
    "only_kinds",
    multiple=True,
    metavar="KIND",
    help="Only objects of this kind (repeatable). Default: every kind the node has.",
)
@state_option
def import_(
    path: str,
    ref: str | None,
    subdir: str,
    node_name: str,
    only_kinds: Sequence[str],
    state_file: Path | None,
) -> None:
    """Print documents for the objects on NAME that no document in PATH describes.

    Like `terraform import`: each document states its object as it is and binds to it
    (spec.adopt), so it plans in sync; once applied, FazAI owns the object and prune can
    reach it. Nothing is written to the node. Save the output in PATH and commit it.
    Objects FazAI already owns (--state), and any whose document would not validate, are
    left out, each with a line on stderr saying why.
    """
    from controller.engine import importing
    from controller.store import OwnedObject, StateStore

    state = _load(path, ref, subdir)
    if node_name not in state.nodes:
        _fail(f"no Node named {node_name} in the desired state")
    known = {k.lower(): k for k in kinds.names()}
    unknown = [k for k in only_kinds if k.lower() not in known]
    if unknown:
        _fail(f"unknown kind {', '.join(unknown)}; known kinds: {', '.join(kinds.names())}")
    wanted = {known[k.lower()] for k in only_kinds}
    owned: list[OwnedObject] = []
    store_path = _existing_state(state_file)  # read only: never created here
    if store_path is not None:
        with StateStore(store_path) as store:
            owned = store.owned(node_name)
    imported = asyncio.run(importing.documents(state, node_name, wanted, owned=owned))
    docs = imported.documents
    click.echo(importing.render(docs, node_name), nl=False)
    for line in imported.skipped:
        stderr.print(f"[yellow]skipped:[/] {_escape(line)}")
    stderr.print(f"{count(len(docs), 'document')} for unmanaged objects on {node_name}")
    sys.exit(EXIT_OK)


@main.command()
@click.argument("kind", required=False)
@click.option(
    "--plan", "plan_schema", is_flag=True, help="Print the schema of `plan --output json`."
)
def schema(kind: str | None, plan_schema: bool) -> None:
    """Print the JSON Schema of KIND's documents (all kinds when omitted)."""
    from controller.plan import plan_json

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
    help="Where the sandbox keeps its keys, known_hosts and state store (state.db).",
)
@click.option("--output", "-o", type=click.Choice(["text", "json", "markdown"]), default="text")
@click.option(
    "--clean",
    is_flag=True,
    help="Run nothing: remove what the sandbox left in --workdir (its SSH key, the "
    "firewall's API key and secret, its state store; not infra/ nor files of yours), "
    "and the folder if FazAI made it, then exit.",
)
def demo(desired: Path | None, workdir: Path, output: str, clean: bool) -> None:
    """Run the main job on a sandbox (root needed): real Linux nodes and an emulated
    OPNsense firewall; plan, apply, drift made by hand, plan, apply that heals it, plan in
    sync; then tear the sandbox down. Its folder (--workdir) stays, with the runs in its
    state.db for `fazai history --state`; `fazai demo --clean` removes what the sandbox
    wrote there. An existing --workdir must be empty (or a sandbox's)."""
    from controller.testing import sandbox

    if clean:
        for line in sandbox.clean(workdir):
            stderr.print(_escape(line))
        sys.exit(EXIT_OK)
    code = sandbox.run_demo(
        desired, workdir, lambda result: emit_plan(result, output), stderr, agentcli.demo_step
    )
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


def api_options(func: F) -> F:
    """Where the running controller's API is, and the token to call it with."""
    func = click.option(
        "--ca-file",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        help="CA bundle to verify an https URL with (default: the system's).",
    )(func)
    func = click.option(
        "--token-ref",
        envvar="FAZAI_TOKEN_REF",
        metavar="env:NAME|file:PATH",
        help="Where the API token is; default env:FAZAI_TOKEN when that is set.",
    )(func)
    func = click.option(
        "--url",
        envvar="FAZAI_URL",
        default="http://127.0.0.1:8080",
        show_default=True,
        help="The API of `fazai serve` ($FAZAI_URL).",
    )(func)
    return func


@main.command()
@api_options
@click.option("--since", type=click.IntRange(0), metavar="ID", help="Replay kept events after ID.")
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text")
def watch(
    url: str, token_ref: str | None, ca_file: Path | None, since: int | None, output: str
) -> None:
    """Show the controller's live events (runs, reads, changes, verifications, rollbacks)
    as they happen, until Ctrl-C. A dropped connection is resumed where it stopped."""
    from controller.server import sse, watchview

    out = SafeConsole(highlight=False, soft_wrap=True)

    def note(text: str) -> None:
        stderr.print(f"[dim]{_escape(text)}[/]")

    with _api_client(url, token_ref, ca_file) as client:
        try:
            for event in client.events(since, note):
                if output == "json":
                    click.echo(json.dumps(event), nl=True)
                    sys.stdout.flush()
                    continue
                # Loss is what the server says: ids have gaps of their own (a scoped
                # token's stream leaves other sources' events out).
                if event.get("type") == sse.LOST:
                    missed = (event.get("data") or {}).get("missed")
                    if isinstance(missed, int) and missed > 0:
                        stderr.print(f"[yellow]… {count(missed, 'event')} missed[/]")
                    continue
                out.print(watchview.line(event))
        except KeyboardInterrupt:
            sys.exit(EXIT_OK)


@main.command()
@click.argument("approval_id", metavar="ID")
@click.option("--abort", "abort_it", is_flag=True, help="Drop the pending plan instead.")
@click.option("--yes", "-y", is_flag=True, help="Approve without showing the plan and asking.")
@api_options
def approve(
    approval_id: str,
    abort_it: bool,
    yes: bool,
    url: str,
    token_ref: str | None,
    ca_file: Path | None,
) -> None:
    """Apply the plan waiting for approval ID (see `fazai approvals`), or drop it.

    Shows the plan's changes and asks first unless --yes; with no terminal and no --yes
    it refuses. Answering no leaves the approval pending (exit 0)."""
    from controller.output import approval_text

    with _api_client(url, token_ref, ca_file) as client:
        if abort_it:
            client.abort(approval_id)
            stderr.print(f"[yellow]aborted[/] {_escape(approval_id)}")
            return
        if not yes:
            found = [a for a in client.approvals() if a.get("id") == approval_id]
            if not found:
                _fail(f"no pending approval {approval_id!r}; `fazai approvals` lists them")
            for line in approval_text.lines(found[0]):
                stderr.print(_escape(line), highlight=False)
            if not sys.stdin.isatty():
                _fail("no terminal to confirm on; pass --yes to approve unattended")
            if not click.confirm("Apply this plan?", default=False, err=True):
                _cancelled(f"Approval cancelled: nothing applied; {approval_id} stays pending.")
        answer = client.approve(approval_id)
    run_id = answer.get("run_id")
    if run_id is None:
        again = "" if answer.get("counted", True) else "already approved by this token; "
        stderr.print(
            f"[green]approved[/] {_escape(approval_id)}: {again}"
            f"{_escape(approval_text.standing(answer))}; not applied yet"
        )
        return
    stderr.print(f"[green]approved[/] {_escape(approval_id)}: run {run_id}")
    click.echo(run_id)


@main.command()
@api_options
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text")
def approvals(url: str, token_ref: str | None, ca_file: Path | None, output: str) -> None:
    """List the plans waiting for `fazai approve`, with per node the changes each would
    make (+create ~update -delete)."""
    from controller.output import approval_text

    with _api_client(url, token_ref, ca_file) as client:
        pending = client.approvals()
    if output == "json":
        click.echo(json.dumps(pending, indent=2))
        return
    if not pending:
        stderr.print("no pending approvals")
    for item in pending:
        revision = revisions.short(item.get("revision") or "")
        per_node = approval_text.counts(item.get("plan") or {})
        for node in item.get("nodes", []):
            per_node.setdefault(str(node), dict.fromkeys(approval_text.ACTIONS, 0))
        terminal.echo(
            f"{item['id']}  {item.get('created', '')}  {item.get('source', '')} {revision}"
            f"  {approval_text.counts_text(per_node)}  {approval_text.standing(item)}"
        )


def _api_client(url: str, token_ref: str | None, ca_file: Path | None) -> ApiClient:
    from controller import secrets
    from controller.server.client import ApiClient
    from controller.server.settings import SecretRef

    if token_ref is None and os.environ.get("FAZAI_TOKEN"):
        token_ref = "env:FAZAI_TOKEN"
    token = None
    if token_ref:
        try:
            ref = SecretRef.parse(token_ref)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--token-ref") from None
        token = secrets.resolve(ref.as_mapping(), "api", "--token-ref")
    return ApiClient(url, token, verify=str(ca_file) if ca_file else True)


@main.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The controller's configuration. Default: ./fazai.yaml (with --sandbox: the "
    "sandbox's own).",
)
@click.option("--listen", metavar="HOST:PORT", help="Where the HTTP API listens (server.listen).")
@click.option(
    "--state",
    "state_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The state store (overrides the config's state).",
)
@click.option(
    "--mode",
    type=click.Choice(["auto", "detect", "manual"]),
    help="Every node of every source in this mode (nodeModes included): --mode detect "
    "never writes.",
)
@click.option("--poll", metavar="DURATION", help="Poll interval of every source (0: off).")
@click.option("--once", is_flag=True, help="Reconcile every source once and exit (diff(1) codes).")
@click.option("--no-api", is_flag=True, help="Run the loop without the HTTP API.")
@click.option(
    "--sandbox",
    is_flag=True,
    help="Start the sandbox fleet and emulated firewall first (root needed), and remove "
    "them at exit.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    envvar="FAZAI_LOG_FORMAT",
    show_default=True,
    help="json: one JSON object per line, outcome lines carrying run_id, source and node "
    "(also $FAZAI_LOG_FORMAT).",
)
def serve(
    config_file: Path | None,
    listen: str | None,
    state_file: Path | None,
    mode: str | None,
    poll: str | None,
    once: bool,
    no_api: bool,
    sandbox: bool,
    log_format: str,
) -> None:
    """Run the GitOps controller: reconcile the configured git sources on every commit
    (webhook, poll or working-copy watch) and periodically, until SIGTERM or SIGINT.

    On a signal the apply in flight finishes or rolls back first; exit 0.
    """
    import logging

    from controller import daemon, logformat
    from controller.daemon import serve as serving
    from controller.reconcile import config as configuration
    from controller.reconcile import sandbox as sandboxing
    from controller.reconcile.handle import Mode
    from controller.settings import durations

    logformat.configure(log_format)
    for noisy in ("httpx", "watchfiles", "asyncssh"):  # per-request chatter
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        poll_seconds = durations.parse(poll) if poll is not None else None
    except ValueError as exc:
        _fail(f"--poll: {exc}")
    if poll_seconds is not None and 0 < poll_seconds < 1:
        _fail("--poll: must be at least 1s (or 0, which turns polling off)")
    overrides = configuration.Overrides(
        listen=listen,
        state=state_file,
        mode=Mode(mode) if mode else None,
        poll=poll_seconds,
    )
    if sandbox:
        from controller.testing.fleet import fleet_available

        reason = fleet_available()
        if reason is not None:
            _fail(f"cannot start the sandbox: {reason}")
        daemon.register_sections()
        settings = sandboxing.load_config(config_file, overrides)
        with sandboxing.running(settings) as started:
            stderr.print(f"[dim]sandbox: {', '.join(started)}[/]")
            sys.exit(asyncio.run(serving(settings, api=not no_api, once=once)))
    path = config_file or Path(configuration.DEFAULT_FILE)
    if config_file is None and not path.exists():
        _fail("no fazai.yaml here; pass --config FILE (or --sandbox to try the sandbox)")
    daemon.register_sections()
    settings = configuration.load(path, overrides)
    sys.exit(asyncio.run(serving(settings, api=not no_api, once=once)))


def _gate(
    checked: Checked, done: str, how: str = "Commit the change", store: StateStore | None = None
) -> None:
    """Exit 2 unless the policies let ``checked`` be written from the CLI: a deny stops
    it whole (recorded in ``store``'s audit trail as ``policy.denied``); an approval the
    CLI cannot give (a y/N, or --auto-approve, is the same person saying yes) is given
    through serve's approval API."""
    if checked.denied:
        if store is not None:
            from controller.pipeline import writes

            writes.record_denied(store, checked)
        for line in checked.denials():
            # A policy's message is the repository's text: one line, no terminal escapes.
            shown = _escape(terminal.clean(line, one_line=True))
            stderr.print(f"[bold red]denied:[/] {shown}")
        _fail(f"a policy denies {count(len(checked.denied), 'change')}; nothing {done}")
    needed = checked.approvals_needed
    if needed and checked.plan.has_changes:
        for line in checked.approval_reasons():
            stderr.print(
                f"[yellow]needs approval:[/] {_escape(terminal.clean(line, one_line=True))}"
            )
        _fail(
            f"a policy requires {count(needed, 'approval')} that the CLI cannot give "
            "(--auto-approve or answering yes is not one); nothing "
            f"{done}. {how} in a source `fazai serve` reconciles: it waits "
            "there as a pending approval (`fazai approvals`, `fazai approve ID`)"
        )


def _interrupted(what: str) -> NoReturn:
    stderr.print(f"[bold yellow]interrupted:[/] {_escape(what)}")
    sys.exit(signals.EXIT_INTERRUPTED)


def _with_prune(
    state: DesiredState, flag: bool, state_file: Path | None, *, read_only: bool = False
) -> Pruning:
    """The desired state plus, on pruning nodes, the owned objects to delete (and those
    to release once the node is applied). ``read_only`` (plan, review): the store is not
    created; one that does not exist yet owns nothing, so nothing is pruned."""
    from controller.pipeline import desired
    from controller.store import OwnedObject, StateStore

    nodes = desired.pruning_nodes(state, flag)
    path = _readable_state(state_file, warn=bool(nodes)) if read_only else state_file
    owned: dict[str, list[OwnedObject]] = {node: [] for node in state.nodes}
    if path is not None or not read_only:  # else nothing ever ran here: nothing owned yet
        with StateStore(path) as store:
            owned = {node: store.owned(node) for node in state.nodes}
    pruning = desired.prepare(state, owned, flag)
    for note in pruning.notes:
        stderr.print(f"[yellow]prune:[/] {_escape(note)}")
    return pruning


def _release(
    store: StateStore, pruning: Pruning, nodes: Sequence[str], run_id: int | None = None
) -> None:
    from controller.engine import prune

    for line in prune.release(store, pruning.releases, nodes, run_id):
        stderr.print(f"prune: {_escape(line)}")


def default_state_path() -> Path:
    from controller.store.paths import default_path

    return default_path()


def _existing_state(state_file: Path | None) -> Path | None:
    """The state file a command that only reads it (history, rollback) opens: never
    created here. None when the default one does not exist yet (nothing ran); a named
    one (--state, $FAZAI_STATE) that does not exist is refused, so a typo cannot pass
    for an empty history."""
    path = state_file.expanduser() if state_file is not None else default_state_path()
    if path.is_file():
        return path
    if state_file is None and not path.exists():
        return None
    if path.exists():
        _fail(f"state store {path} is not a file")
    _fail(f"state store {path} does not exist ({_named_by(state_file)}); nothing was created")
    return None


def _readable_state(state_file: Path | None, *, warn: bool = True) -> Path | None:
    """The state file a plan reads ownership from: a named one that does not exist yet
    (a first CI run before any apply) is not an error, only a warning (``warn``: some
    node prunes), since nothing can be owned, and so pruned, before something was
    applied."""
    path = state_file.expanduser() if state_file is not None else default_state_path()
    if path.exists() and not path.is_file():
        _fail(f"state store {path} is not a file")
    if path.is_file():
        return path
    if state_file is not None and warn:
        stderr.print(
            f"[yellow]prune:[/] state store {_escape(str(path))} does not exist yet "
            f"({_escape(_named_by(state_file))}): nothing is owned there, so nothing is "
            "pruned; it was not created"
        )
    return None


def _named_by(state_file: Path | None) -> str:
    """Where a missing state file's name came from, and what the default would be."""
    from controller.store.paths import default_path

    env = os.environ.get("FAZAI_STATE")
    if state_file is not None and env and Path(env) == state_file:
        unset = {k: v for k, v in os.environ.items() if k != "FAZAI_STATE"}
        return f"named by $FAZAI_STATE: mistyped? Without it the default is {default_path(unset)}"
    source = "$FAZAI_STATE" if env else "the default"
    return f"mistyped --state? Without it FazAI uses {default_state_path()} ({source})"


def _say_state(path: Path) -> None:
    """One line naming the state file in use: the demo, serve and the CLI can each be
    pointed at another, and a history that looks empty is often the wrong file."""
    stderr.print(f"[dim]state: {_escape(str(path))}[/]")


def _node_word(command: str, status: str) -> str:
    """A node's status as history shows it: a plan or drift run changes nothing, so its
    "converged" means in sync and its "skipped" means drift found."""
    if command in ("plan", "drift"):
        return {"converged": "in-sync", "skipped": "drift"}.get(status, status)
    return status


def _cancelled(message: str) -> Any:
    """The person answered no: not an error, so exit 0 (as Terraform's "Apply
    cancelled")."""
    stderr.print(f"[yellow]{_escape(message)}[/]")
    sys.exit(EXIT_OK)


def _load(path: str | None, ref: str | None, subdir: str) -> DesiredState:
    if path is None:
        # Said once, so that 0 nodes or a flood of errors is not a mystery in a folder
        # the user did not mean.
        stderr.print("[dim]reading the desired state in the current directory (.); give PATH "
                     "to read another[/]")  # fmt: skip
    return _loaded(open_source(path or ".", ref, subdir))


def _loaded(tree: SourceTree) -> DesiredState:
    from controller.pipeline import source

    state = source.load(tree)
    for warning in state.warnings:
        stderr.print(f"[yellow]{_escape(str(warning))}[/]")
    if state.skipped:
        stderr.print(f"[dim]{_escape(loader.skip_note(state.skipped))}[/]")
    return state


def _load_recorded(run_id: int, state_file: Path | None) -> DesiredState:
    """The desired state run ``run_id`` was made from: its recorded source, a git source
    at its recorded commit, so the nodes are reached as that run reached them."""
    from controller.errors import SourceError
    from controller.source.open import reopen
    from controller.store import StateStore

    with StateStore(state_file) as store:
        run = store.get_run(run_id)
    if run is None:
        _fail(f"no run {run_id} in the state store")
    assert run is not None
    at = f" at {revisions.short(run.revision)}" if run.revision else ""
    try:
        tree = reopen(run.source, run.revision)
    except SourceError as exc:
        _fail(f"{exc}; give PATH, the documents with the nodes' connection details")
    now = " as it is now" if tree.revision != run.revision else ""
    stderr.print(f"[dim]reading run {run_id}'s source {_escape(run.source)}{at}{now}[/]")
    return _loaded(tree)


def _say(message: str) -> None:
    stderr.print(f"[bold yellow]{_escape(message)}[/]")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _fail(message: str) -> NoReturn:
    stderr.print(f"[bold red]error:[/] {_escape(message)}")
    sys.exit(EXIT_TROUBLE)


def _stopped() -> NoReturn:
    # Ctrl-C or SIGTERM outside a transaction (plan, validate, the confirmation prompt):
    # nothing was being written.
    stderr.print("[bold yellow]interrupted:[/] stopped; no transaction was in flight")
    sys.exit(signals.EXIT_INTERRUPTED)


def _show_click_error(exc: click.ClickException) -> None:
    """What ``exc.show()`` prints, cleaned: a usage error quotes the argument as typed,
    and an ESC in it would print a hyperlink (OSC 8) or clear the screen."""
    ctx = exc.ctx if isinstance(exc, click.UsageError) else None
    if ctx is not None:
        hint = ""
        if ctx.command.get_help_option(ctx) is not None:
            option = max(ctx.command.get_help_option_names(ctx), key=len)
            hint = f"Try '{ctx.command_path} {option}' for help.\n"
        click.echo(terminal.clean(f"{ctx.get_usage()}\n{hint}"), err=True)
    # One line: a newline in the argument could pose as a line of FazAI's own.
    click.echo(f"Error: {terminal.clean(exc.format_message(), one_line=True)}", err=True)


# -- policies ------------------------------------------------------------------------


@main.group()
def policy() -> None:
    """Guardrails as data: Policy documents and the shipped defaults."""


@policy.command("test")
@source_options
@click.option(
    "--plans",
    "cases",
    multiple=True,
    required=True,
    metavar="DIR_OR_FILE",
    type=click.Path(path_type=Path),
    help="PolicyTest case files (YAML), or folders of them (repeatable); each names its "
    "plan JSON (fazai plan --output json) and the verdict expected per item.",
)
def policy_test(path: str | None, ref: str | None, subdir: str, cases: Sequence[Path]) -> None:
    """Check the policies of PATH (and the shipped defaults) against plans kept as data.

    Exit 0 when every case passes, 1 when a verdict differs from the expected one, 2 on
    trouble (a case or plan that cannot be read, invalid documents).
    """
    from controller.policy import suite

    state = _load(path, ref, subdir)
    results = suite.run(controller.policy.load(state), state.nodes, cases)
    # The results on stdout, as a test runner's (CI logs and `> report.txt` keep them).
    out = SafeConsole(highlight=False, soft_wrap=True)
    for result in results:
        mark = "[green]PASS[/]" if result.passed else "[red]FAIL[/]"
        out.print(
            f"{mark} {_escape(result.name)} ({_escape(result.file)}): "
            f"{count(result.checked, 'expectation')}"
        )
        for failure in result.failures:
            out.print(f"  [red]{_escape(failure)}[/]")
    failed = sum(1 for r in results if not r.passed)
    out.print(f"[{'red' if failed else 'green'}]{count(len(results), 'case')}, {failed} failed[/]")
    sys.exit(EXIT_DIFF if failed else EXIT_OK)


# `fazai model ...`: its own module, so this one does not grow with the model runtime.
main.add_command(modelcli.model)
main.add_command(agentcli.agent)


def run() -> None:
    """Entry point: FazAI errors become one clear message and exit code 2, never a traceback."""
    signals.install_sigterm()
    try:
        main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort as exc:
        # Click turns Ctrl-C (and SIGTERM, see ``signals``) into Abort.
        if isinstance(exc.__context__, KeyboardInterrupt):
            _stopped()
        sys.exit(EXIT_TROUBLE)
    except click.ClickException as exc:
        _show_click_error(exc)
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
        _stopped()
    except Exception as exc:
        if os.environ.get("FAZAI_DEBUG"):
            raise
        stderr.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {_escape(str(exc))}\n"
            "This is a bug in FazAI; run again with FAZAI_DEBUG=1 for the traceback."
        )
        sys.exit(EXIT_TROUBLE)
