"""The agent's workbench on one real node: what each action may do there, gated.

Reads go through the provider (probes through the allow-list, masked); every command
passes the policy stage first; a tool is tried only in :meth:`NodeBench.verify`, which
holds the whole verification inside one node transaction of the engine:

* before: the tool bound to the goal plans as an update (its check fails, the goal is
  unmet), and the node's other managed resources are read;
* the policy stage judges the tool call (a deny stops it; an approval is asked);
* in the transaction, after the engine's own verify (every goal check passes): the
  tool's check passes, applying it a second time changes nothing, and a re-read of the
  node's other managed resources shows no new difference. Anything else rolls the node
  back to the snapshot (the engine's rollback), and the attempt is a failure.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from controller import providers
from controller.agent import actions, masking, prompt
from controller.agent.episode import Verification
from controller.agent.loop import Candidate
from controller.engine import plan as planner
from controller.errors import FazaiError
from controller.model import probes, tool, validate
from controller.model.crosscheck import CheckContext
from controller.model.document import API_VERSION, Document
from controller.model.goal import checks_of
from controller.model.state import DesiredState
from controller.model.yamlsource import RawDocument
from controller.pipeline import policy, writes
from controller.plan.diff import Action
from controller.plan.items import NodePlan, Plan, PlanItem
from controller.plan.verdicts import Effect, RunContext
from controller.policy import activation
from controller.policy.stage import PolicySet
from controller.providers.base import Probing, Reapplying
from controller.store import StateStore
from controller.store.records import NodeStatus
from controller.store.redact import redact

if TYPE_CHECKING:  # qdrant-client is imported (2 s) only where a knowledge base is used
    from controller.agent.knowledge import KnowledgeBase

PROBE_TIMEOUT = 10
PROBE_KEEP = 4000  # characters of a probe's output read back (the loop caps again)

Approve = Callable[[str, Mapping[str, Any], Mapping[str, Any]], Awaitable[bool]]
Answer = Callable[[str], Awaitable[str | None]]


async def _never_approve(name: str, spec: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
    return False


async def _no_answer(question: str) -> str | None:
    return None


def unbound(goal: Document) -> Document:
    """The goal without its resolvedBy: what the agent works on is the goal itself."""
    spec = {k: v for k, v in goal.spec.items() if k != "resolvedBy"}
    return dataclasses.replace(goal, spec=spec)


def facts_of(node: Document) -> dict[str, str]:
    spec = node.spec
    found = {"platform": str(spec["platform"])}
    labels = {k: v for k, v in node.labels.items() if k in ("os", "distro", "role")}
    found.update(labels)
    return found


def task_for(
    goal: Document, node: Document, failing: str, iterations: int, tokens: int | None
) -> prompt.Task:
    shown = tuple(
        {
            "name": c.name,
            **({"command": list(c.command)} if hasattr(c, "command") else {"get": c.path}),
        }
        for c in checks_of(goal.spec)
    )
    return prompt.Task(
        goal=goal.name,
        node=node.name,
        platform=str(node.spec["platform"]),
        description=str(goal.spec["description"]),
        checks=shown,
        failing=failing,
        facts=facts_of(node),
        iterations=iterations,
        tokens=tokens,
    )


class NodeBench:
    """The :class:`~controller.agent.loop.Workbench` of one goal on one node."""

    def __init__(
        self,
        state: DesiredState,
        goal: Document,
        node: Document,
        store: StateStore,
        run_id: int,
        run: RunContext,
        policies: PolicySet,
        *,
        knowledge: KnowledgeBase | None = None,
        approve: Approve = _never_approve,
        answer: Answer = _no_answer,
        interrupt: writes.Interrupt = writes.NEVER,
        known_secrets: Sequence[str] = (),
        propose_only: bool = False,
    ) -> None:
        self.state = state
        self.goal = unbound(goal)
        self.node = node
        self.platform = str(node.spec["platform"])
        self.store = store
        self.run_id = run_id
        self.run = run
        self.policies = policies
        self.knowledge = knowledge
        self.approve = approve
        self.answer = answer
        self.interrupt = interrupt
        # The episode's wall-time budget reaches into a trial: past it, the transaction
        # stops between batches and rolls back, as on Ctrl-C (set by the loop).
        self.deadline: float | None = None
        self._secrets = tuple(known_secrets)
        # fazai plan --agent: a tool that would be tried is proposed, never applied.
        self.propose_only = propose_only
        self._provider = providers.for_platform(self.platform)
        self._node_view = activation.node_view(node.name, self.platform, node)

    # -- policy --------------------------------------------------------------------------

    def _verdicts(self, command: str) -> tuple[str | None, int]:
        item = PlanItem(self.node.name, "Goal", self.goal.name, Action.UNRESOLVED, command=command)
        verdicts = self.policies.evaluate_item(item, self.run, self._node_view)
        denied = [v for v in verdicts if v.effect is Effect.DENY]
        if denied:
            return "; ".join(f"{v.policy}/{v.rule}: {v.message}" for v in denied), 0
        needed = max(
            (v.approvals for v in verdicts if v.effect is Effect.REQUIRE_APPROVAL), default=0
        )
        return None, needed

    def refusal(self, command: str) -> str | None:
        denied, needed = self._verdicts(command)
        if denied is not None:
            return f"denied: {denied}"
        if needed and not command.startswith("usetool "):
            # A probe cannot wait for a person: held is refused (a tool is asked about
            # in verify, where a person can answer).
            return "held for an approval; probes cannot wait for one"
        return None

    # -- reads ---------------------------------------------------------------------------

    async def probe(self, argv: Sequence[str]) -> str:
        refused = probes.refusal(list(argv))
        if refused is not None:
            return f"refused: not a read-only probe: {refused}"
        if not isinstance(self._provider, Probing):
            return f"refused: no probes run on {self.platform} nodes"
        got = await self._provider.probe(self.node, argv, PROBE_TIMEOUT, PROBE_KEEP)
        head = f"error: {got.error}" if got.error else f"exit {got.exit}"
        cut = " (output cut)" if got.truncated or len(got.output) >= PROBE_KEEP else ""
        return masking.mask(f"{head}{cut}\n{got.output}", self._secrets)

    async def observe(self) -> str | None:
        seen = (await self._provider.observe(self.node, [self.goal], self.state.source)).resources
        item = planner.item_of(self.node.name, self.goal, seen[self.goal])
        if item.action is Action.NOOP:
            return None
        return item.reason or item.error or item.action.value

    async def research(self, query: str) -> list[str]:
        if self.knowledge is None:
            return []
        os = facts_of(self.node).get("os")
        hits = await self.knowledge.search(query, self.platform, os)
        return [masking.mask(h.text, self._secrets) for h in hits]

    async def candidates(self) -> list[Candidate]:
        if self.knowledge is None:
            return []
        os = facts_of(self.node).get("os")
        found = await self.knowledge.solutions_for(self.goal.spec["description"], self.platform, os)
        return [Candidate(s.tool, s.spec) for s in found]

    async def remember(self, note: str) -> str:
        return "noted (lessons are kept with the episode's transcript)"

    async def ask(self, question: str) -> str | None:
        return await self.answer(question)

    # -- tools ---------------------------------------------------------------------------

    def tool_document(
        self, name: str, spec: Mapping[str, Any]
    ) -> tuple[Document | None, list[str]]:
        value = {
            "apiVersion": API_VERSION,
            "kind": "Tool",
            "metadata": {"name": name},
            "spec": dict(spec),
        }
        raw = RawDocument(f"<agent tool {name}>", 0, value)
        document, found = validate.to_document(raw)
        problems = [f"{d.path or 'tool'}: {d.message}" for d in found]
        if document is None:
            return None, problems
        context = CheckContext(
            self.state.nodes, [*self.state.resources, document], self.state.source
        )
        problems += [f"{d.path or 'tool'}: {d.message}" for d in tool.check_tool(document, context)]
        if document.spec.get("platform") != self.platform:
            problems.append(f"platform: this goal's node is {self.platform}")
        return (document if not problems else None), problems

    def check_tool(self, name: str, spec: Mapping[str, Any]) -> list[str]:
        return self.tool_document(name, spec)[1]

    def _bound(
        self, document: Document, params: Mapping[str, Any]
    ) -> tuple[Document | None, list[str]]:
        goal = dataclasses.replace(
            self.goal,
            spec={**self.goal.spec, "resolvedBy": {"tool": document.name, "params": dict(params)}},
        )
        context = CheckContext(
            self.state.nodes, [*self.state.resources, document], self.state.source
        )
        problems = [f"{d.path}: {d.message}" for d in tool.check_resolved_by(goal, context)]
        if problems:
            return None, problems
        return tool.bind([goal, document])[0], []

    async def verify(
        self,
        name: str,
        spec: Mapping[str, Any],
        params: Mapping[str, Any],
        *,
        made: bool,
        proposed: bool = True,
    ) -> Verification:
        """``proposed``: the agent chose the tool (the policy stage sees the call as the
        item's command); False for the goal's own committed tool, a typed change."""
        document, problems = self.tool_document(name, spec)
        if document is None:
            return Verification(False, "the tool is not valid: " + "; ".join(problems[:5]))
        bound, problems = self._bound(document, params)
        if bound is None:
            return Verification(False, "the params are not valid: " + "; ".join(problems[:5]))
        resolution = tool.resolution_of(bound.spec)
        assert resolution is not None
        # Before: the tool must have something to do (the goal unmet, its check failing).
        seen = (await self._provider.observe(self.node, [bound], self.state.source)).resources
        item = planner.item_of(self.node.name, bound, seen[bound])
        if item.action is Action.NOOP:
            return Verification(False, "the goal is met already: nothing to verify")
        if item.action is not Action.UPDATE:
            return Verification(
                False, f"not tried: {item.reason or item.error or item.action.value}"
            )
        command = actions.usetool_command(name, params)
        if made and not getattr(self._provider, "reapplies", False):
            # Verification needs a second application shown to change nothing: refused
            # before anything is asked or sent.
            return Verification(
                False,
                f"tools the agent makes cannot be verified on {self.platform} nodes yet "
                "(a second application cannot be shown to change nothing there)",
            )
        others = [
            d
            for d in self.state.resources_for(self.node.name)
            if (d.kind, d.name) != ("Goal", self.goal.name)
        ]
        before = await self._actions(others)
        trial = dataclasses.replace(
            self.state, resources=[bound], controls=(*self.state.controls, document)
        )
        # Through the policy stage as any plan: the item carries the tool call as its
        # command, so a Policy can deny it or hold it for an approval.
        proposal = dataclasses.replace(item, command=command if proposed else None, verdicts=())
        plan = Plan(self.state.source.description, self.state.revision,
                    (NodePlan(self.node.name, self.platform, (proposal,)),))  # fmt: skip
        checked = policy.judged(policy.check(trial, plan, self.run), self.run)
        if checked.denied:
            why = "; ".join(checked.denials())
            return await self._failed(bound, resolution, f"denied by policy: {why}")
        if self.propose_only:
            held = (
                f" (a policy holds it for {checked.approvals_needed} approval(s))"
                if (checked.approvals_needed)
                else ""
            )
            return Verification(False, f"proposed, not applied{held}", proposed=True)
        needed = checked.approvals_needed
        granted = 0
        if needed or made:
            if not await self.approve(name, spec, params):
                return Verification(False, "not approved: the tool was not applied")
            granted = needed
        evidence: list[str] = ["the goal was unmet and the tool's check failed before"]

        async def more(txn: Any, journal: Any) -> list[str]:
            found: list[str] = []
            if resolution.check_command is not None and isinstance(self._provider, Probing):
                got = await self._provider.probe(
                    self.node, resolution.check_command, resolution.check_timeout, 0
                )
                if got.exit != 0:
                    found.append(f"the tool's check still fails after apply (exit {got.exit})")
                else:
                    evidence.append("the tool's check passes after apply")
            if not isinstance(txn, Reapplying):
                found.append(f"idempotence cannot be shown on {self.platform} nodes yet")
            else:
                changed = await txn.reapply(journal)
                if changed:
                    found.append("applying it a second time changed " + ", ".join(changed[:5]))
                else:
                    evidence.append(
                        "applying it a second time changed nothing (of what its snapshot lists)"
                    )
            after = await self._actions(others)
            broke = [
                f"{subject} ({after[subject]})"
                for subject, action in before.items()
                if action == Action.NOOP.value and after.get(subject) != Action.NOOP.value
            ]
            if broke:
                found.append("it made a difference on other resources: " + ", ".join(broke[:5]))
            else:
                evidence.append("a re-read of the node's other resources shows no new difference")
            return found

        async def plain(txn: Any, journal: Any) -> list[str]:
            return []  # a committed tool: verified as any change (the goal's checks pass)

        try:
            outcome = await writes.apply_trial(
                trial, checked, self.store, self.run_id, granted=granted,
                also_verify=more if proposed else plain,
                interrupt=_Until(self.interrupt, self.deadline),
            )  # fmt: skip
        except FazaiError as exc:
            return await self._failed(bound, resolution, masking.mask(str(exc), self._secrets))
        if outcome.status is NodeStatus.CONVERGED:
            evidence.insert(1, "every goal check passes after apply")
            verdict = Verification(True, "verified on " + self.node.name, tuple(evidence))
            await self._learn(bound, resolution, verdict)
            return verdict
        why = masking.mask(outcome.message, self._secrets)
        if outcome.status is NodeStatus.ROLLED_BACK:
            why += " (the tool's snapshot list and the node's managed objects)"
        return await self._failed(bound, resolution, why)

    async def _actions(self, documents: Sequence[Document]) -> dict[str, str]:
        if not documents:
            return {}
        seen = (await self._provider.observe(self.node, documents, self.state.source)).resources
        return {
            d.subject: planner.item_of(self.node.name, d, seen[d]).action.value for d in documents
        }

    async def _failed(self, bound: Document, resolution: tool.Resolution, why: str) -> Verification:
        """A failed attempt: said to the model, and kept in the knowledge base."""
        if self.knowledge is not None:
            from controller.agent.knowledge import Failure

            await self.knowledge.add_failure(
                Failure(
                    goal=str(self.goal.spec["description"]),
                    platform=self.platform,
                    os=facts_of(self.node).get("os"),
                    spec=bound.spec["resolvedBy"][tool.BOUND]["spec"],
                    params=redact(dict(resolution.params)),
                    why=why,
                    node=self.node.name,
                )
            )
        return Verification(False, why)

    async def _learn(
        self, bound: Document, resolution: tool.Resolution, verdict: Verification
    ) -> None:
        if self.knowledge is None:
            return
        from controller.agent.knowledge import Solution

        bound_spec = bound.spec["resolvedBy"][tool.BOUND]["spec"]
        await self.knowledge.add_solution(
            Solution(
                goal=str(self.goal.spec["description"]),
                platform=self.platform,
                os=facts_of(self.node).get("os"),
                tool=resolution.tool,
                spec=bound_spec,
                params=redact(dict(resolution.params)),
                node=self.node.name,
                verified_at=datetime.now(UTC).isoformat(timespec="seconds"),
                run=self.run_id,
            )
        )


class _Until:
    """An interrupt that is also set once ``deadline`` (time.monotonic) has passed."""

    def __init__(self, interrupt: writes.Interrupt, deadline: float | None) -> None:
        self.interrupt = interrupt
        self.deadline = deadline

    def is_set(self) -> bool:
        late = self.deadline is not None and time.monotonic() > self.deadline
        return late or self.interrupt.is_set()
