"""``fazai agent GOAL``: one goal resolved the cheapest way, streamed as it works.

The goal's checks are read first (met: nothing to do); its committed tool, when it has
one, is applied and verified with no model call; otherwise the agent's loop runs under
the goal's budget, its tokens, actions and observations printed as they come (stderr),
the outcome stated at the end (stdout with ``--output json``). Every tool the agent
makes is shown and needs a yes before its first apply (``--approve-tools`` gives it for
the run); Ctrl-C aborts the generation, or rolls back the transaction in flight.

Exit codes: 0 resolved, 1 unresolved (or waiting for an answer), 2 trouble, 130 aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import click
import yaml
from rich.console import Console
from rich.markup import escape

from controller import providers, signals
from controller.output import terminal

EXIT_OK, EXIT_DIFF, EXIT_TROUBLE, EXIT_INTERRUPTED = 0, 1, 2, 130
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    sys.exit(EXIT_TROUBLE)


class _Stream:
    """Prints the agent's events as they come: tokens dim on one running line, then each
    action and what came of it (cleaned of terminal controls, one line each)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.mid_line = False

    def __call__(self, type: Any, **data: Any) -> None:
        from controller.events import EventType

        if type is EventType.AGENT_TOKEN:
            self.console.print(escape(terminal.clean(str(data["text"]), one_line=True)),
                               style="dim", end="")  # fmt: skip
            self.mid_line = True
            return
        if self.mid_line:
            self.console.print()
            self.mid_line = False
        if type is EventType.AGENT_ACTION:
            shown = terminal.clean(str(data["action"]), one_line=True)[:300]
            self.console.print(f"[bold]action {data['index'] + 1}:[/] {escape(shown)}")
        elif type is EventType.AGENT_OBSERVATION:
            seen = terminal.clean(str(data["text"]), one_line=True)[:300]
            self.console.print(f"  [cyan]→[/] {escape(seen)}")


async def _approve_on_terminal(
    name: str, spec: Mapping[str, Any], params: Mapping[str, Any], given: bool
) -> bool:
    shown = yaml.safe_dump({"tool": name, "spec": dict(spec), "params": dict(params)},
                           sort_keys=False)  # fmt: skip
    err.print("[bold yellow]The agent wants to try this tool on the node[/] (in a transaction "
              "that rolls back unless it verifies):")  # fmt: skip
    err.print(escape(terminal.clean(shown)))
    if given:
        err.print("approved by --approve-tools")
        return True
    if not sys.stdin.isatty():
        err.print("no terminal to approve on and no --approve-tools: not applied")
        return False
    return await asyncio.to_thread(click.confirm, "Try this tool?", default=False, err=True)


@click.command("agent")
@click.argument("goal_name", metavar="GOAL")
@click.option("--node", "node_name", metavar="NAME", help="The node (default: each it targets).")
@click.argument("path", required=False, metavar="[PATH]")
@click.option("--ref", default=None, metavar="REF", help="Read PATH as a git repository at REF.")
@click.option("--subdir", default="", metavar="DIR", help="Folder of the documents.")
@click.option("--state", "state_file", type=click.Path(path_type=Path, dir_okay=False),
              envvar="FAZAI_STATE", help="The state store (default: $FAZAI_STATE, else "
              "the usual one; see fazai apply --help).")  # fmt: skip
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False),
              help="fazai.yaml, whose models: section declares the models.")  # fmt: skip
@click.option("--knowledge", "knowledge_dir", type=click.Path(path_type=Path, file_okay=False),
              help="The knowledge base's folder (default: beside the state store).")  # fmt: skip
@click.option("--no-knowledge", is_flag=True, help="Run without the knowledge base.")
@click.option(
    "--approve-tools", is_flag=True, help="Approve the tools the agent makes, for this run."
)
@click.option("--turn-tokens", type=click.IntRange(16, 8192), default=768, show_default=True,
              help="The most tokens of one answer of the model.")  # fmt: skip
@click.option(
    "--commit-back",
    type=click.Choice(["pr", "direct", "off"]),
    default="pr",
    show_default=True,
    help="Where a tool the agent verified goes: a pull request (a branch pushed to PATH's "
    "remote, and a PR with --forge/--repo), a push to the branch, or nowhere (it is kept "
    "in the state store either way).",
)
@click.option(
    "--forge", "forge_name", metavar="NAME", help="The forge of fazai.yaml's forges: section."
)
@click.option("--repo", metavar="OWNER/NAME", help="The repository on --forge (GitLab: its path).")
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text")
def agent(
    goal_name: str,
    node_name: str | None,
    path: str | None,
    ref: str | None,
    subdir: str,
    state_file: Path | None,
    config_file: Path | None,
    knowledge_dir: Path | None,
    no_knowledge: bool,
    approve_tools: bool,
    turn_tokens: int,
    commit_back: str,
    forge_name: str | None,
    repo: str | None,
    output: str,
) -> None:
    """Resolve GOAL on its nodes the cheapest way: its committed tool with no model call,
    a verified tool from the knowledge base, or a new one the agent makes; streamed.

    PATH: the desired state (default: the current directory). Exit 0 resolved, 1
    unresolved (said why), 2 trouble, 130 aborted."""
    from controller.agent import commitback
    from controller.agent import run as agent_run
    from controller.agent.episode import Episode, Outcome
    from controller.agent.errors import GoalNotFound, KnowledgeLockedError
    from controller.errors import FazaiError, InvalidInputError
    from controller.modelcli import build_runtime, load_models
    from controller.pipeline import context
    from controller.pipeline import source as pipeline_source
    from controller.source.open import open_source
    from controller.store import StateStore

    providers.load_all()
    try:
        state = pipeline_source.load(open_source(path or ".", ref=ref, subdir=subdir))
        goal, nodes = agent_run.find_goal(state, goal_name, node_name)
    except InvalidInputError as exc:
        for problem in exc.diagnostics:
            err.print(escape(str(problem)))
        sys.exit(EXIT_TROUBLE)
    except (GoalNotFound, FazaiError) as exc:
        _fail(str(exc))
        return
    if not nodes:
        _fail(f"Goal/{goal_name} targets no node")
    models = load_models(config_file)
    if (forge_name is None) != (repo is None):
        _fail("give both --forge and --repo (or neither: the branch is pushed, no PR opened)")
    commit = agent_run.CommitBackSettings(
        commitback.CommitMode(commit_back),
        Path(path or "."),
        _forge_opener(config_file, forge_name, repo) if forge_name and repo else None,
    )
    stream = _Stream(err)
    episodes: list[Episode] = []

    async def work(stop: asyncio.Event) -> None:
        runtime = build_runtime(models)
        try:
            with StateStore(state_file) as store:
                folder = knowledge_dir or store.path.parent / "knowledge"
                async with contextlib.AsyncExitStack() as stack:
                    kb = None
                    if not no_knowledge:
                        from controller.agent.knowledge import KnowledgeBase  # qdrant: 2 s

                        try:
                            kb = await stack.enter_async_context(
                                KnowledgeBase(runtime.embed, path=folder)
                            )
                        except KnowledgeLockedError as exc:
                            err.print(f"[yellow]without the knowledge base:[/] {escape(str(exc))}")
                    for name in nodes:
                        if stop.is_set():
                            break
                        err.rule(f"Goal/{goal_name} on {name}")

                        async def approve(
                            n: str, s: Mapping[str, Any], p: Mapping[str, Any]
                        ) -> bool:
                            return await _approve_on_terminal(n, s, p, approve_tools)

                        episodes.append(
                            await agent_run.resolve(
                                state,
                                goal,
                                state.nodes[name],
                                store,
                                runtime,
                                context.cli("apply"),
                                knowledge=kb,
                                approve=approve,
                                interrupt=stop,
                                publish=stream,
                                turn_tokens=turn_tokens,
                                commit=commit,
                            )
                        )
        finally:
            await runtime.close()

    try:
        _, stopped = signals.run(work, lambda m: err.print(escape(m)), "the agent's step in flight")
    except FazaiError as exc:
        _fail(str(exc))
        return
    for episode in episodes:
        _say(episode)
    if output == "json":
        click.echo(json.dumps([e.to_dict() for e in episodes], indent=2))
    if stopped or any(e.outcome is Outcome.ABORTED for e in episodes):
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(EXIT_OK if episodes and all(e.resolved for e in episodes) else EXIT_DIFF)


def _forge_opener(config_file: Path | None, name: str, repo: str) -> Any:
    """Opens a client of fazai.yaml's forge ``name`` on ``repo`` when called (the token is
    read then)."""
    from controller import daemon
    from controller.forges import settings as forge_settings
    from controller.forges.clients import open_client
    from controller.reconcile import config as configuration

    daemon.register_sections()
    config = configuration.load(config_file or Path("fazai.yaml"))
    forges = config.sections.get(forge_settings.SECTION) or forge_settings.ForgesSettings()
    found = forges.get(name)
    if found is None:
        _fail(f"no forge named {name!r} in the forges: section of fazai.yaml")
    chosen = found
    return lambda: open_client(chosen.target(), repo)


def _say(episode: Any, console: Console = err) -> None:
    colour = {"resolved": "green", "aborted": "yellow"}.get(episode.outcome.value, "red")
    reason = terminal.clean(episode.reason, one_line=True)
    console.print(
        f"[{colour}]{episode.node}: Goal/{episode.goal} {episode.outcome.value}[/] "
        f"({episode.path.value}; {episode.calls} model calls, {episode.tokens} tokens, "
        f"{episode.seconds:.1f}s): {escape(reason)}"
    )
    if episode.tool is not None:
        for line in episode.tool.evidence:
            console.print(f"  [green]✓[/] {escape(line)}")
    if episode.committed is not None:
        shown = terminal.clean(episode.committed, one_line=True)
        console.print(f"  committed back: {escape(shown)}")


def demo_step(state: Any, final: Any, store_path: Path, console: Console) -> None:
    """``fazai demo``'s last step: each unresolved Goal of the final plan handed to the
    embedded models under its budget, streamed; nothing they make is approved (a person
    would be asked), so whatever they propose is shown and not applied."""
    import importlib.util
    import tempfile

    from controller.agent import run as agent_run
    from controller.llm.runtime import ModelRuntime
    from controller.llm.settings import ModelsSettings, WorkerSettings
    from controller.pipeline import context
    from controller.store import StateStore

    goals = [i for i in final.unresolved if i.kind == "Goal"]
    if not goals:
        return
    if importlib.util.find_spec("llama_cpp") is None:
        console.print(
            "the agent needs the model runtime, which this install lacks "
            "(`scripts/install.sh llm` builds it: llama.cpp compiles in 5-12 min, once): "
            + ", ".join(f"Goal/{i.name} on {i.node}" for i in goals)
            + " stays unresolved"
        )
        return

    async def deny(name: str, spec: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
        console.print(f"the model proposes Tool/{escape(name)}; the demo approves nothing a "
                      "model made (a person would be asked): not applied")  # fmt: skip
        return False

    async def work() -> list[Any]:
        # The worker's socket and locks in a folder of their own, gone with the step: the
        # sandbox's folder keeps only what `fazai demo --clean` knows to remove.
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="fazai-demo-"))
        socket = Path(scratch) / "models.sock"
        runtime = ModelRuntime(ModelsSettings(worker=WorkerSettings(socket=socket)))
        done = []
        try:
            with StateStore(store_path) as store:
                for item in goals:
                    goal, _ = agent_run.find_goal(state, item.name, item.node)
                    console.print(f"Goal/{goal.name} on {item.node}: {escape(str(item.reason))}")
                    done.append(
                        await agent_run.resolve(
                            state, goal, state.nodes[item.node], store, runtime,
                            context.cli("apply"), approve=deny, publish=_Stream(console),
                            turn_tokens=128,
                        )
                    )  # fmt: skip
        finally:
            await runtime.close()
        return done

    with contextlib.ExitStack() as stack:
        for episode in asyncio.run(work()):
            _say(episode, console)


def propose(state: Any, plan: Any, config_file: Path | None, turn_tokens: int = 768) -> Any:
    """``fazai plan --agent``: each unresolved Goal of ``plan`` handed to the agent in
    propose mode (its probes read the node; no tool is applied, nothing is recorded),
    streamed on stderr; ``plan`` with each proposal as its item's ``command``, judged
    again by the policy stage (so a proposal shows the approval it would need)."""
    import dataclasses
    import tempfile

    from controller.agent import actions
    from controller.agent import run as agent_run
    from controller.agent.episode import Outcome
    from controller.modelcli import build_runtime, load_models
    from controller.pipeline import context, policy
    from controller.store import StateStore

    goals = [i for i in plan.unresolved if i.kind == "Goal"]
    if not goals:
        return plan
    models = load_models(config_file)
    proposals: dict[tuple[str, str], str] = {}

    async def work(stop: asyncio.Event) -> None:
        runtime = build_runtime(models)
        try:
            with (
                tempfile.TemporaryDirectory() as scratch,
                StateStore(Path(scratch) / "plan-agent.db") as store,
            ):
                for item in goals:
                    if stop.is_set():
                        break
                    err.rule(f"the agent on Goal/{item.name} ({item.node}), proposing only")
                    goal, _ = agent_run.find_goal(state, item.name, item.node)
                    episode = await agent_run.resolve(
                        state, goal, state.nodes[item.node], store, runtime,
                        context.cli("plan"), interrupt=stop, publish=_Stream(err),
                        turn_tokens=turn_tokens, propose_only=True,
                    )  # fmt: skip
                    _say(episode)
                    if episode.outcome is Outcome.PROPOSED and episode.tool is not None:
                        tool = episode.tool
                        command = actions.usetool_command(tool.name, tool.params)
                        proposals[(item.node, item.name)] = command
                        shown = yaml.safe_dump(dict(tool.spec), sort_keys=False)
                        err.print(escape(terminal.clean(shown)))
        finally:
            await runtime.close()

    signals.run(work, lambda m: err.print(escape(m)), "the agent's proposal in flight")
    if not proposals:
        return plan
    nodes = tuple(
        dataclasses.replace(
            node,
            items=tuple(
                dataclasses.replace(i, command=proposals.get((i.node, i.name), i.command))
                if i.kind == "Goal"
                else i
                for i in node.items
            ),
        )
        for node in plan.nodes
    )
    return policy.check(state, dataclasses.replace(plan, nodes=nodes), context.cli("plan"))
