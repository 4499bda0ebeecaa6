"""The agent's loop: one goal on one node, cheapest way first, bounded, abortable.

1. A tool already bound to the goal (``resolvedBy``) never comes here: the plan resolves
   it deterministically.
2. A verified tool from the knowledge base whose description matches the goal: the
   executor model only fills its params, under a grammar made from the tool's own
   params schema, and the tool is verified on the node.
3. Otherwise the brain model works turn by turn, one JSON action per turn (see
   :mod:`~controller.agent.actions`) under a grammar of the actions' schema, validated
   again here.

Bounds: iterations, tokens and wall time (each completion gets what is left of them);
on the last iteration only ``done`` is allowed; an action identical to one already taken
is refused; what goes back into the prompt is masked and capped. The interrupt is looked
at between turns and between streamed pieces (closing the stream aborts the generation
on the backend). What a model says is data to this loop: it decides what each action may
do, the probe allow-list and the policy stage gate what reaches a node, and only
:meth:`Workbench.verify` (a transaction that rolls back unless everything holds) ever
writes to one.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from controller.agent import actions, masking, prompt
from controller.agent.episode import Episode, Outcome, Path, Turn, Verification, VerifiedTool
from controller.events import EventType, discard
from controller.llm.completion import Answer, Budget, Chunk, Completion, Message, Role
from controller.llm.errors import ModelError, SchemaUnsupported
from controller.llm.runtime import ModelRuntime
from controller.model.tool import secret_param

# Where the loop's events go (an EventBus's publish, or a terminal's printer): called
# with an EventType and its data; what it returns is not looked at.
Publish = Callable[..., object]


class Interrupt(Protocol):
    def is_set(self) -> bool: ...


class _Never:
    def is_set(self) -> bool:
        return False


NEVER: Interrupt = _Never()


@dataclass(frozen=True)
class Limits:
    """What one episode may spend. ``tokens`` counts prompt and answer tokens of every
    model call; ``turn_tokens`` bounds one answer."""

    iterations: int = 32
    tokens: int | None = None
    seconds: float | None = None
    turn_tokens: int = 768
    observation_chars: int = 2000


@dataclass(frozen=True)
class Candidate:
    """A verified tool the knowledge base holds for a goal like this one."""

    name: str
    spec: Mapping[str, Any] = field(compare=False)
    score: float = 0.0


class Workbench(Protocol):
    """What the loop may do in the world, for one goal on one node. Implementations gate
    and mask; the loop caps."""

    def refusal(self, command: str) -> str | None:
        """Why the policy stage does not let ``command`` run now (denied, or held for an
        approval the loop cannot wait for); None when it may."""
        ...

    async def probe(self, argv: Sequence[str]) -> str:
        """Run a read-only probe; its exit status and masked output, as one text."""
        ...

    async def observe(self) -> str | None:
        """The goal's checks again: why it is unmet, or None when it is met."""
        ...

    def check_tool(self, name: str, spec: Mapping[str, Any]) -> list[str]:
        """What is wrong with a proposed tool, as validation would say it (empty: valid)."""
        ...

    async def verify(
        self, name: str, spec: Mapping[str, Any], params: Mapping[str, Any], *, made: bool
    ) -> Verification:
        """Try the tool on the node inside one transaction (``made``: the agent wrote it,
        so it needs an approval before its first apply unless a policy allows it)."""
        ...

    async def research(self, query: str) -> list[str]:
        """Knowledge-base hits for the prompt, best first (masked)."""
        ...

    async def candidates(self) -> list[Candidate]:
        """Verified tools for this goal, best first."""
        ...

    async def remember(self, note: str) -> str:
        """Record a lesson; what to tell the model."""
        ...

    async def ask(self, question: str) -> str | None:
        """A person's answer, or None when none is at hand (the episode then waits)."""
        ...


@dataclass
class _Spend:
    started: float
    limits: Limits
    clock: Callable[[], float]
    tokens: int = 0
    calls: int = 0
    model: str = ""
    backend: str = ""

    def seconds_left(self) -> float | None:
        if self.limits.seconds is None:
            return None
        return self.limits.seconds - (self.clock() - self.started)

    def tokens_left(self) -> int | None:
        return None if self.limits.tokens is None else self.limits.tokens - self.tokens

    def exhausted(self) -> str | None:
        seconds = self.seconds_left()
        if seconds is not None and seconds <= 0:
            return f"the budget's {self.limits.seconds:g} s are spent"
        tokens = self.tokens_left()
        if tokens is not None and tokens <= 0:
            return f"the budget's {self.limits.tokens} tokens are spent"
        return None

    def budget(self) -> Budget:
        most = self.limits.turn_tokens
        tokens = self.tokens_left()
        if tokens is not None:
            most = max(1, min(most, tokens))
        seconds = self.seconds_left()
        return Budget(max_tokens=most, seconds=max(0.1, seconds) if seconds is not None else None)


class _Aborted(Exception):
    pass


@dataclass(frozen=True)
class _Garbage:
    why: str


def _broke_schema(exc: ModelError) -> bool:
    if isinstance(exc, SchemaUnsupported):
        return True
    attempts = getattr(exc, "attempts", ())
    return bool(attempts) and all(isinstance(a, SchemaUnsupported) for a in attempts)


class Loop:
    """One episode. ``run()`` once."""

    def __init__(
        self,
        task: prompt.Task,
        runtime: ModelRuntime,
        bench: Workbench,
        limits: Limits,
        *,
        interrupt: Interrupt = NEVER,
        publish: Publish = discard,
        clock: Callable[[], float] = time.monotonic,
        known_secrets: Sequence[str] = (),
    ) -> None:
        self.task = task
        self.runtime = runtime
        self.bench = bench
        self.limits = limits
        self.interrupt = interrupt
        self.publish = publish
        self.clock = clock
        self.session = f"agent-{uuid.uuid4().hex[:12]}"
        self._secrets = tuple(known_secrets)
        self._spend = _Spend(clock(), limits, clock)
        if limits.seconds is not None and hasattr(bench, "deadline"):
            bench.deadline = time.monotonic() + limits.seconds
        self._turns: list[Turn] = []

    async def run(self) -> Episode:
        try:
            episode = await self._retrieved()
            if episode is None:
                episode = await self._synthesize()
        except _Aborted:
            episode = self._episode(Outcome.ABORTED, Path.FAILED, "aborted by a person")
        self.publish(
            EventType.AGENT_FINISHED, session=self.session, goal=self.task.goal,
            node=self.task.node, outcome=episode.outcome.value, path=episode.path.value,
            reason=episode.reason, spent=episode.tokens,
        )  # fmt: skip
        return episode

    # -- the cheaper way: a verified tool, the model fills its params ------------------

    async def _retrieved(self) -> Episode | None:
        for candidate in await self.bench.candidates():
            if self.interrupt.is_set():
                raise _Aborted
            if self._spend.exhausted() is not None:
                return None
            schema = candidate.spec.get("params") or {"type": "object", "properties": {}}
            text = prompt.params_prompt(
                self.task.description, self.task.goal, candidate.name,
                str(candidate.spec.get("description", "")),
            )  # fmt: skip
            messages = (
                Message("system", "You fill a verified tool's params. Answer one JSON object."),
                Message("user", masking.mask(text, self._secrets)),
            )
            answer = await self._generate(Role.EXECUTOR, messages, schema)
            index = len(self._turns)
            if not isinstance(answer, Answer) or answer.finish_reason != "stop":
                why = answer.why if isinstance(answer, _Garbage) else str(answer)
                if isinstance(answer, Answer):
                    why = "the answer was cut off"
                self._record(index, f"params for {candidate.name}", why, 0)
                continue
            try:
                params = json.loads(answer.text)
            except ValueError:
                self._record(index, f"params for {candidate.name}", "not JSON", 0)
                continue
            if not isinstance(params, dict):
                self._record(index, f"params for {candidate.name}", "not a JSON object", 0)
                continue
            self._learn_secrets(params)
            problems = self.bench.check_tool(candidate.name, candidate.spec)
            if problems:
                continue
            verdict = await self.bench.verify(candidate.name, candidate.spec, params, made=False)
            shown = actions.render(actions.UseTool(candidate.name, params))
            self._record(index, shown, verdict.reason, 0)
            if verdict.proposed:
                tool = VerifiedTool(candidate.name, candidate.spec, params, verdict.evidence)
                return self._episode(Outcome.PROPOSED, Path.RETRIEVED, verdict.reason, tool)
            if verdict.verified:
                tool = VerifiedTool(candidate.name, candidate.spec, params, verdict.evidence)
                return self._episode(Outcome.RESOLVED, Path.RETRIEVED, verdict.reason, tool)
        return None

    # -- the full loop -------------------------------------------------------------------

    async def _synthesize(self) -> Episode:
        knowledge = await self.bench.research(self.task.description)
        messages = list(prompt.first(self.task, knowledge))
        proposed: dict[str, Mapping[str, Any]] = {}
        taken: set[str] = set()
        last_reason = self.task.failing
        for index in range(self.limits.iterations):
            if self.interrupt.is_set():
                raise _Aborted
            spent = self._spend.exhausted()
            if spent is not None:
                return self._episode(Outcome.UNRESOLVED, Path.FAILED, f"{spent}; {last_reason}")
            final = index == self.limits.iterations - 1
            allowed = ("done",) if final else actions.NAMES
            answer = await self._generate(Role.BRAIN, tuple(messages), actions.schema(allowed))
            if isinstance(answer, _Garbage):
                messages.append(Message("assistant", "(an answer that is not one valid action)"))
                text = masking.mask(f"invalid action, nothing done: {answer.why}", self._secrets)
                messages.append(
                    prompt.observation(text, "fazai", self.limits.iterations - index - 1)
                )
                self._record(index, "(invalid)", text, 0)
                continue
            if isinstance(answer, str):
                why = f"no model answered ({answer}); {last_reason}"
                return self._episode(Outcome.UNRESOLVED, Path.FAILED, why)
            messages.append(Message("assistant", answer.text))
            try:
                if answer.finish_reason == "length":
                    raise actions.InvalidAction(
                        f"the answer was cut at {self._spend.budget().max_tokens} tokens; "
                        "answer with a shorter action"
                    )
                action = actions.parse(answer.text, allowed)
            except actions.InvalidAction as exc:
                observed = f"invalid action, nothing done: {exc}"
                self._turn(index, answer.text[:300], observed, answer, messages)
                continue
            if isinstance(action, actions.UseTool):
                self._learn_secrets(action.params)
            shown = masking.mask(actions.render(action), self._secrets)
            self.publish(
                EventType.AGENT_ACTION, session=self.session, goal=self.task.goal,
                node=self.task.node, index=index, action=shown,
            )  # fmt: skip
            key = shown
            if isinstance(action, actions.UseTool) and action.tool in proposed:
                # The same call of a tool proposed again with another body is not a repeat.
                key += " " + actions.digest(proposed[action.tool])
            if key in taken and not isinstance(action, actions.Observe):
                observed = "refused: this exact action was taken already; do something else"
                self._turn(index, shown, observed, answer, messages)
                continue
            taken.add(key)
            if isinstance(action, actions.Done):
                self._turn(index, shown, "done", answer, messages)
                met = await self.bench.observe()
                if met is None:
                    # The goal holds (a person fixed it meanwhile?): said, not claimed.
                    return self._episode(Outcome.RESOLVED, Path.FAILED, "the goal's checks pass")
                said = action.summary[:200]
                why = (
                    f"the model said it was resolved ({said}), but the goal is unmet: {met}"
                    if action.outcome == "resolved"
                    else f"the model gave up: {said}; {met}"
                )
                return self._episode(Outcome.UNRESOLVED, Path.FAILED, why)
            if isinstance(action, actions.Ask):
                reply = await self.bench.ask(action.question)
                if reply is None:
                    self._turn(index, shown, "waiting for an answer", answer, messages)
                    asked = self._episode(
                        Outcome.ASKED, Path.FAILED, f"waiting for an answer: {action.question}"
                    )
                    return _with_question(asked, action.question)
                self._turn(index, shown, reply, answer, messages, source="operator")
                continue
            observed, ended = await self._act(action, proposed)
            if ended is not None:
                self._turn(index, shown, observed, answer, messages)
                return dataclasses.replace(ended, turns=tuple(self._turns))
            if isinstance(action, actions.UseTool):
                last_reason = observed
            self._turn(index, shown, observed, answer, messages)
        return self._episode(
            Outcome.UNRESOLVED,
            Path.FAILED,
            f"{self.limits.iterations} iterations spent; {last_reason}",
        )

    async def _act(
        self, action: actions.Action, proposed: dict[str, Mapping[str, Any]]
    ) -> tuple[str, Episode | None]:
        """What came of one action, and the episode when it ends the loop."""
        command = actions.command(action)
        if command is not None:
            refused = self.bench.refusal(command)
            if refused is not None:
                return f"refused by policy: {refused}", None
        if isinstance(action, actions.Plan):
            return "noted", None
        if isinstance(action, actions.Research):
            hits = await self.bench.research(action.query)
            return ("\n---\n".join(hits) if hits else "nothing found"), None
        if isinstance(action, actions.Shell):
            return await self.bench.probe(action.argv), None
        if isinstance(action, actions.Observe):
            why = await self.bench.observe()
            return ("every goal check passes" if why is None else why), None
        if isinstance(action, actions.CommitKb):
            return await self.bench.remember(action.note), None
        if isinstance(action, actions.ToolSpec):
            problems = self.bench.check_tool(action.name, action.tool)
            if problems:
                return "tool refused: " + "; ".join(problems[:5]), None
            proposed[action.name] = action.tool
            return f"tool {action.name} accepted; try it with usetool", None
        if isinstance(action, actions.UseTool):
            spec = proposed.get(action.tool)
            if spec is None:
                return f"no tool {action.tool!r} was proposed; propose it with toolspec", None
            verdict = await self.bench.verify(action.tool, spec, action.params, made=True)
            if verdict.proposed:
                tool = VerifiedTool(action.tool, spec, action.params, verdict.evidence)
                ended = self._episode(Outcome.PROPOSED, Path.SYNTHESIZED, verdict.reason, tool)
                return verdict.reason, ended
            if not verdict.verified:
                return f"not verified: {verdict.reason}", None
            tool = VerifiedTool(action.tool, spec, action.params, verdict.evidence)
            episode = self._episode(Outcome.RESOLVED, Path.SYNTHESIZED, verdict.reason, tool)
            return f"verified: {verdict.reason}", episode
        return "nothing to do", None

    # -- the model -----------------------------------------------------------------------

    async def _generate(
        self, role: Role, messages: Sequence[Message], schema: Mapping[str, Any]
    ) -> Answer | _Garbage | str:
        """One completion, streamed as agent.token events: the Answer (finished or cut by
        max_tokens), _Garbage (an answer the endpoint's own schema check refused), or why
        there is none (no backend answered within the budget)."""
        request = Completion(
            role=role, messages=tuple(messages), session=self.session, schema=schema,
            budget=self._spend.budget(),
        )  # fmt: skip
        stream = self.runtime.stream(request)
        answer: Answer | None = None
        self._spend.calls += 1
        try:
            async for item in stream:
                if self.interrupt.is_set():
                    raise _Aborted
                if isinstance(item, Chunk):
                    text = masking.mask(item.text, self._secrets)
                    self.publish(EventType.AGENT_TOKEN, session=self.session, text=text)
                elif isinstance(item, Answer):
                    answer = item
        except ModelError as exc:
            if _broke_schema(exc):
                # The model answered, but not one valid action: garbage is a turn spent,
                # said to the model, not the end of the episode.
                return _Garbage("the answer broke the actions' schema")
            return masking.mask(str(exc), self._secrets)[:300]
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        if answer is None:
            return "the model runtime ended without an answer"
        self._spend.tokens += answer.usage.prompt_tokens + answer.usage.completion_tokens
        self._spend.model, self._spend.backend = answer.model, answer.backend
        if answer.finish_reason not in ("stop", "length"):
            return f"the backend ended the answer ({answer.finish_reason})"
        return answer

    # -- bookkeeping ---------------------------------------------------------------------

    def _learn_secrets(self, params: Mapping[str, Any]) -> None:
        """The values of secret-named params are secrets from now on, everywhere the
        episode writes (events, turns, the audit record)."""
        found = [str(v) for k, v in params.items() if secret_param(str(k)) and v is not None]
        self._secrets = (*self._secrets, *found)

    def _turn(
        self,
        index: int,
        shown: str,
        observed: str,
        answer: Answer,
        messages: list[Message],
        source: str = "node",
    ) -> None:
        text = masking.mask(observed, self._secrets)[: self.limits.observation_chars]
        left = self.limits.iterations - index - 1
        messages.append(prompt.observation(text, source, left))
        spent = answer.usage.prompt_tokens + answer.usage.completion_tokens
        self._record(index, shown, text, spent, answer.backend)

    def _record(self, index: int, shown: str, observed: str, spent: int, backend: str = "") -> None:
        text = masking.mask(observed, self._secrets)[: self.limits.observation_chars]
        self.publish(
            EventType.AGENT_OBSERVATION, session=self.session, goal=self.task.goal,
            node=self.task.node, index=index, text=text,
        )  # fmt: skip
        self._turns.append(
            Turn(index, masking.mask(shown, self._secrets), text, spent, 0.0, backend)
        )

    def _episode(
        self, outcome: Outcome, path: Path, reason: str, tool: VerifiedTool | None = None
    ) -> Episode:
        return Episode(
            goal=self.task.goal,
            node=self.task.node,
            outcome=outcome,
            path=path,
            reason=masking.mask(reason, self._secrets)[:1000],
            turns=tuple(self._turns),
            tokens=self._spend.tokens,
            calls=self._spend.calls,
            seconds=self.clock() - self._spend.started,
            tool=tool,
            model=self._spend.model,
            backend=self._spend.backend,
        )


def _with_question(episode: Episode, question: str) -> Episode:
    return dataclasses.replace(episode, question=question)
