"""One goal on one node, the cheapest way that works: what ``fazai agent`` runs.

The goal met: nothing to do. The goal's own committed tool (``resolvedBy``) can help:
it is applied and verified with no model call. Otherwise the agent's loop, under the
goal's budget, with the knowledge base when there is one. The whole episode is one run
of the state store (its transactions, journal and audit as any apply) and is recorded,
redacted, with its outcome.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import TYPE_CHECKING

from controller.agent import bench as benches
from controller.agent import commitback, masking
from controller.agent.episode import Episode, Outcome, Path, VerifiedTool
from controller.agent.errors import GoalNotFound
from controller.agent.loop import NEVER, Interrupt, Limits, Loop, Publish
from controller.agent.metrics import AgentMetrics
from controller.errors import FazaiError
from controller.events import discard
from controller.forges.base import ForgeClient
from controller.llm.runtime import ModelRuntime
from controller.model import goal as goals
from controller.model import tool
from controller.model.document import Document
from controller.model.state import DesiredState, target_nodes
from controller.plan.verdicts import RunContext
from controller.policy import stage
from controller.store import Command, RunStatus, StateStore, Trigger, audit

if TYPE_CHECKING:  # qdrant-client is imported (2 s) only where a knowledge base is used
    from controller.agent.knowledge import KnowledgeBase

log = logging.getLogger("fazai.agent")


@dataclass(frozen=True)
class CommitBackSettings:
    """Where a verified tool goes: ``mode`` (pr, direct, off), the desired-state folder
    (inside a git working copy with the remote), and the forge a pull request is opened
    on (None: the branch is pushed, no pull request opened)."""

    mode: commitback.CommitMode
    source: FsPath
    forge: Callable[[], contextlib.AbstractAsyncContextManager[ForgeClient]] | None = None


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
    commit: CommitBackSettings | None = None,
) -> Episode:
    """Resolve ``goal`` on ``node`` (see the module's docstring); ``turn_tokens`` bounds
    one answer of the model."""
    run_id = store.start_run(
        Trigger.CLI, Command.APPLY, state.source.description, state.revision, None, run.actor
    )
    outcome = Outcome.UNRESOLVED
    started = time.monotonic()
    try:
        episode = await _resolve(
            state, goal, node, store, run_id, runtime, run, knowledge, approve, answer,
            interrupt, publish, known_secrets, turn_tokens, propose_only, commit,
        )  # fmt: skip
        outcome = episode.outcome
        if not episode.seconds:  # ended before any loop (met, its own or a stored tool)
            episode = dataclasses.replace(episode, seconds=time.monotonic() - started)
        if episode.resolved and episode.tool is not None and episode.path in _LEARNED:
            episode = await _keep(episode, goal, store, run_id, commit, known_secrets)
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
    commit: CommitBackSettings | None = None,
) -> Episode:
    bench = benches.NodeBench(
        state, goal, node, store, run_id, run, stage.load(state),
        knowledge=knowledge, approve=approve, answer=answer, interrupt=interrupt,
        known_secrets=known_secrets, propose_only=propose_only,
    )  # fmt: skip
    failing = await bench.observe()
    if failing is None:
        return Episode(goal.name, node.name, Outcome.RESOLVED, Path.BOUND, "the goal's checks pass")
    stored = await _from_store(bench, goal, node, store, run_id, commit, known_secrets)
    if stored is not None:
        return stored
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


_LEARNED = (Path.SYNTHESIZED, Path.RETRIEVED)


async def _from_store(
    bench: benches.NodeBench,
    goal: Document,
    node: Document,
    store: StateStore,
    run_id: int,
    commit: CommitBackSettings | None,
    known_secrets: Sequence[str],
) -> Episode | None:
    """A tool the agent verified for this very goal on this node before (its pull
    request not merged yet): tried again with no model call, through the policy stage as
    the agent's proposal (the shipped policy asks a person each time: a record in the
    state file is not desired state), and verified in full again. A record the commit
    back of which failed is committed back now."""
    if bench.propose_only or tool.resolution_of(goal.spec) is not None:
        return None  # the goal's own committed tool, or nothing may be applied
    for record in store.verified_tools(goal.name, node.name):
        if record.masked:
            continue  # a secret was masked when it was stored: it cannot be applied as is
        verified_for = record.spec.get("provenance", {}).get("goalSha256")
        if verified_for != goals.digest(goal.spec):
            log.info("Goal/%s changed since Tool/%s was verified for it: not reused",
                     goal.name, record.tool)  # fmt: skip
            continue
        verdict = await bench.verify(record.tool, record.spec, record.params, made=False)
        if not verdict.verified:
            continue
        kept = VerifiedTool(record.tool, record.spec, record.params, verdict.evidence)
        where = f", {record.reference}" if record.reference else ""
        why = f"Tool/{record.tool} from the state store (verified in run {record.run_id}{where})"
        episode = Episode(goal.name, node.name, Outcome.RESOLVED, Path.BOUND, why, tool=kept)
        if not record.reference:
            episode = await _commit(episode, goal, store, record.id, run_id, commit, known_secrets)
        return episode
    return None


async def _keep(
    episode: Episode,
    goal: Document,
    store: StateStore,
    run_id: int,
    commit: CommitBackSettings | None,
    known_secrets: Sequence[str],
) -> Episode:
    """A tool the agent verified: kept in the state store (the next run of the goal uses
    it, no model), and committed back as the settings say. A tool whose params hold a
    secret is neither: desired state names secrets by reference, never by value."""
    verified = episode.tool
    assert verified is not None
    secret = sorted(k for k in verified.params if tool.secret_param(str(k)))
    if secret:
        said = (
            f"not kept nor committed back: param {secret[0]!r} holds a secret, which desired "
            "state must not hold by value"
        )
        return dataclasses.replace(episode, committed=said)
    # Kept with the goal it was verified for: a goal edited since does not get it.
    provenance = {**verified.spec.get("provenance", {}), "goalSha256": goals.digest(goal.spec)}
    spec = {**verified.spec, "provenance": provenance}
    record = store.record_verified_tool(
        goal.name, episode.node, verified.name, spec, verified.params, run_id
    )
    return await _commit(episode, goal, store, record, run_id, commit, known_secrets)


async def _commit(
    episode: Episode,
    goal: Document,
    store: StateStore,
    record: int,
    run_id: int,
    commit: CommitBackSettings | None,
    known_secrets: Sequence[str],
) -> Episode:
    """Commit back as the settings say; a failure leaves the tool kept and applied, and
    says why in the episode (the next run tries again)."""
    if commit is None or commit.mode is commitback.CommitMode.OFF:
        return episode
    proposal = commitback.proposal_of(
        episode, goal, run=run_id, summary=[f"{t.action} -> {t.observation}"[:300]
                                            for t in episode.turns],
        transcript_sha256=episode.transcript_sha256(),
    )  # fmt: skip
    try:
        async with contextlib.AsyncExitStack() as stack:
            forge = await stack.enter_async_context(commit.forge()) if commit.forge else None
            done = await commitback.commit_back(
                proposal, commit.source, mode=commit.mode, forge=forge,
                known_secrets=known_secrets,
            )  # fmt: skip
    except FazaiError as exc:
        # A git or forge error can quote a remote's URL, credentials and all.
        why = masking.mask(str(exc), known_secrets)
        log.warning("Goal/%s: not committed back: %s", goal.name, why)
        return dataclasses.replace(episode, committed=f"not committed back: {why}")
    store.note_verified_tool_reference(record, done.reference)
    return dataclasses.replace(episode, committed=done.reference)
