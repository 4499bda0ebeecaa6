"""One goal on one node, the cheapest way that works: what ``fazai agent`` runs.

The goal met: nothing to do. The goal's own committed tool (``resolvedBy``) can help:
it is applied and verified with no model call. Otherwise the agent's loop, under the
goal's budget, with the knowledge base when there is one. The whole episode is one run
of the state store (its transactions, journal and audit as any apply) and is recorded,
redacted, with its outcome.
"""

from __future__ import annotations

from collections.abc import Sequence

from controller.agent import bench as benches
from controller.agent.episode import Episode, Outcome, Path, VerifiedTool
from controller.agent.errors import GoalNotFound
from controller.agent.knowledge import KnowledgeBase
from controller.agent.loop import NEVER, Interrupt, Limits, Loop, Publish
from controller.agent.metrics import AgentMetrics
from controller.events import discard
from controller.llm.runtime import ModelRuntime
from controller.model import goal as goals
from controller.model import tool
from controller.model.document import Document
from controller.model.state import DesiredState, target_nodes
from controller.plan.verdicts import RunContext
from controller.policy import stage
from controller.store import Command, RunStatus, StateStore, Trigger, audit


def find_goal(state: DesiredState, name: str, node: str | None) -> tuple[Document, list[str]]:
    """The Goal named ``name`` and the nodes to run it on (``node``, or every node it
    targets); GoalNotFound with what there is otherwise."""
    found = next((d for d in state.resources if d.kind == "Goal" and d.name == name), None)
    if found is None:
        known = sorted(d.name for d in state.resources if d.kind == "Goal")
        hint = f"; goals: {', '.join(known)}" if known else "; the desired state has no Goal"
        raise GoalNotFound(f"no Goal named {name!r}{hint}")
    targets = sorted(target_nodes(found, state.nodes))
    if node is not None:
        if node not in targets:
            raise GoalNotFound(
                f"Goal/{name} does not target node {node!r}; it targets: "
                + (", ".join(targets) or "no node")
            )
        targets = [node]
    return found, targets


async def resolve(
    state: DesiredState,
    goal: Document,
    node: Document,
    store: StateStore,
    runtime: ModelRuntime | None,
    run: RunContext,
    *,
    knowledge: KnowledgeBase | None = None,
    approve: benches.Approve = benches._never_approve,
    answer: benches.Answer = benches._no_answer,
    interrupt: Interrupt = NEVER,
    publish: Publish = discard,
    known_secrets: Sequence[str] = (),
    turn_tokens: int = Limits.turn_tokens,
    metrics: AgentMetrics | None = None,
    propose_only: bool = False,
) -> Episode:
    """Resolve ``goal`` on ``node`` (see the module's docstring); ``turn_tokens`` bounds
    one answer of the model."""
    run_id = store.start_run(
        Trigger.CLI, Command.APPLY, state.source.description, state.revision, None, run.actor
    )
    outcome = Outcome.UNRESOLVED
    try:
        episode = await _resolve(
            state, goal, node, store, run_id, runtime, run, knowledge, approve, answer,
            interrupt, publish, known_secrets, turn_tokens, propose_only,
        )  # fmt: skip
        outcome = episode.outcome
        if metrics is not None:
            metrics.record(episode)
        # The episode in the audit trail, redacted: every action and what came of it.
        store.audit_append(
            audit.Entry("agent.episode", payload=episode.to_dict(), run_id=run_id, node=node.name)
        )
        return episode
    finally:
        status = {
            Outcome.RESOLVED: RunStatus.SUCCEEDED,
            Outcome.ABORTED: RunStatus.INTERRUPTED,
        }.get(outcome, RunStatus.FAILED)
        store.finish_run(run_id, status)


async def _resolve(
    state: DesiredState,
    goal: Document,
    node: Document,
    store: StateStore,
    run_id: int,
    runtime: ModelRuntime | None,
    run: RunContext,
    knowledge: KnowledgeBase | None,
    approve: benches.Approve,
    answer: benches.Answer,
    interrupt: Interrupt,
    publish: Publish,
    known_secrets: Sequence[str],
    turn_tokens: int,
    propose_only: bool = False,
) -> Episode:
    bench = benches.NodeBench(
        state, goal, node, store, run_id, run, stage.load(state),
        knowledge=knowledge, approve=approve, answer=answer, interrupt=interrupt,
        known_secrets=known_secrets, propose_only=propose_only,
    )  # fmt: skip
    failing = await bench.observe()
    if failing is None:
        return Episode(goal.name, node.name, Outcome.RESOLVED, Path.BOUND, "the goal's checks pass")
    resolution = tool.resolution_of(goal.spec)
    if resolution is not None:
        bound = goal.spec["resolvedBy"]
        spec = bound[tool.BOUND]["spec"]
        verdict = await bench.verify(
            resolution.tool, spec, bound.get("params", {}), made=False, proposed=False
        )
        if verdict.verified:
            verified = VerifiedTool(resolution.tool, spec, resolution.params, verdict.evidence)
            return Episode(
                goal.name, node.name, Outcome.RESOLVED, Path.BOUND, verdict.reason, tool=verified
            )
        failing = f"{failing}; Tool/{resolution.tool} did not resolve it: {verdict.reason}"
    if runtime is None:
        return Episode(
            goal.name, node.name, Outcome.UNRESOLVED, Path.FAILED,
            f"{failing}; no model runtime to hand it to",
        )  # fmt: skip
    budget = goals.budget_of(goal.spec)
    limits = Limits(
        iterations=budget.iterations,
        tokens=budget.tokens,
        seconds=budget.seconds,
        turn_tokens=turn_tokens,
    )
    task = benches.task_for(bench.goal, node, failing, budget.iterations, budget.tokens)
    loop = Loop(
        task, runtime, bench, limits, interrupt=interrupt, publish=publish,
        known_secrets=known_secrets,
    )  # fmt: skip
    return await loop.run()
