"""The policy stage: every plan item, checked against the repository's policies and the
shipped defaults, comes back carrying its verdicts.

Semantics, in order of strength:

1. ``deny`` wins over everything: a plan with a denied item is not applied at all.
2. ``requireApproval`` holds the item until enough distinct approvers release it, even
   in ``auto`` mode (the item's ``approvals_needed`` is the largest count asked).
3. ``allow`` is an exception to the shipped defaults only: a repository rule with
   ``effect: allow`` (and its required ``reason`` and ``overrides``) that matches an item
   removes the verdicts of the shipped rules it names in ``overrides`` for that item,
   and is recorded so every output says why. It never
   overrides a repository's own deny or requireApproval, nor a rule that failed.
4. A deny or requireApproval rule that cannot be evaluated for an item (a missing key,
   a wrong type, a result that is not a boolean) fails closed: a deny verdict naming the
   policy, rule and error. An allow that cannot be evaluated does not apply.

Each expression is compiled once, when the set is built, not per item.

Cost: the CEL library has no budget of its own and holds the GIL while it evaluates, so
``limits`` bounds each expression statically and ``evaluate`` has a deadline
(``budget`` seconds for the whole plan, checked before each evaluation): past it the
set raises BudgetExceeded, which the pipeline turns into its PolicyError (fails closed,
nothing written). One evaluation is not interrupted; its worst case within the limits is
in bench/results/policy_limits.json.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.diagnostics import Diagnostic, Location
from controller.errors import InvalidInputError
from controller.model.document import Document
from controller.model.state import DesiredState
from controller.plan.diff import Action
from controller.plan.items import NodePlan, Plan, PlanItem
from controller.plan.verdicts import Effect, RunContext, Verdict
from controller.policy import activation
from controller.policy.celengine import engine as cel
from controller.policy.defaults import shipped_policies
from controller.policy.document import Match, Policy, Rule, from_document
from controller.policy.expressions import EvaluationError, Expression, ExpressionError
from controller.policy.expressions import compile_checked as _compile

# Items the stage never looks at: nothing of them is applied.
_QUIET = (Action.NOOP, Action.ERROR)
_STRENGTH = {Effect.DENY: 0, Effect.REQUIRE_APPROVAL: 1, Effect.ALLOW: 2}
BUDGET = 10.0  # seconds of evaluation for one plan; a real set takes milliseconds


class BudgetExceeded(RuntimeError):
    """The policies took longer than their budget: nothing may be decided from them.
    Not a FazaiError on purpose: the pipeline turns any evaluator failure into its
    PolicyError (this layer may not import it)."""


@dataclass(frozen=True)
class _CompiledRule:
    rule: Rule
    expression: Expression


@dataclass(frozen=True)
class _CompiledPolicy:
    policy: Policy
    rules: tuple[_CompiledRule, ...]


class PolicySet:
    """Policies compiled once; ``evaluate`` is pure and may run for many plans."""

    def __init__(
        self,
        policies: Sequence[Policy],
        documents: Mapping[tuple[str, str], Document] | None = None,
        budget: float = BUDGET,
    ) -> None:
        self.policies = tuple(policies)
        self.budget = budget
        self._compiled = tuple(_compile_policy(p) for p in self.policies)
        # (kind, name) -> the desired document, for ``item.spec``.
        self._documents = dict(documents or {})
        # Its spec as rules see it (masked, normalized): built once per document, as
        # masking walks the whole spec and a set judges many plans.
        self._specs: dict[tuple[str, str], Mapping[str, Any]] = {}

    def _spec(self, key: tuple[str, str]) -> Mapping[str, Any]:
        known = self._specs.get(key)
        if known is None:
            known = self._specs[key] = activation.spec_view(self._documents.get(key))
        return known

    def evaluate(
        self, plan: Plan, run: RunContext, nodes: Mapping[str, Document] | None = None
    ) -> Plan:
        """``plan`` with every item's ``verdicts`` set (replacing any it had)."""
        nodes = nodes or {}
        run_view = activation.run_view(run)
        seen: dict[tuple[int, str], bool | str] = {}
        deadline = time.monotonic() + self.budget
        out: list[NodePlan] = []
        for node_plan in plan.nodes:
            node_view = activation.node_view(
                node_plan.node, node_plan.platform, nodes.get(node_plan.node)
            )
            items = tuple(
                self._item(item, node_view, run, run_view, deadline, seen)
                for item in node_plan.items
            )
            out.append(dataclasses.replace(node_plan, items=items))
        return dataclasses.replace(plan, nodes=tuple(out))

    def evaluate_item(
        self, item: PlanItem, run: RunContext, node: Mapping[str, Any]
    ) -> tuple[Verdict, ...]:
        """The verdicts for one item (the agent's proposals); ``node`` as
        ``activation.node_view`` builds it."""
        deadline = time.monotonic() + self.budget
        return self._item(item, node, run, activation.run_view(run), deadline).verdicts

    def _item(
        self,
        item: PlanItem,
        node: Mapping[str, Any],
        run: RunContext,
        run_view: Mapping[str, Any],
        deadline: float,
        seen: dict[tuple[int, str], bool | str] | None = None,
    ) -> PlanItem:
        if item.action in _QUIET:
            return item if not item.verdicts else dataclasses.replace(item, verdicts=())
        action = item.action.value
        matching = [c for c in self._compiled if _matches(c.policy.match, item, action, node, run)]
        if not matching:
            return item if not item.verdicts else dataclasses.replace(item, verdicts=())
        key = (item.kind, item.name)
        memo: dict[tuple[int, str], bool | str] = {} if seen is None else seen

        def outcome(expression: Expression) -> bool:
            """The rule's result for this item. Only what the expression reads is built
            and handed to the library (its conversion of Python values, some 4 us each,
            is most of an evaluation's cost); and as expressions are pure, an item that
            looks the same to the rule as one before gets that one's result: most items
            of a plan share their kind and action, which is all many rules read."""
            needs = expression.needs
            # The spec view only for a rule that reads item.spec (it is built once per
            # document, but most items meet only rules that never look at it).
            reads_spec = needs.item is None or "spec" in needs.item
            view = activation.item_view(item, self._spec(key) if reads_spec else {}, needs)
            variables = activation.activation(view, node, run_view, item.command, needs)
            seen_key = (id(expression), _fingerprint(variables))
            known = memo.get(seen_key)
            if known is None:
                if time.monotonic() > deadline:
                    raise BudgetExceeded(
                        f"the policies took over {self.budget:g} s to evaluate "
                        f"(at {item.kind}/{item.name} on {item.node}); nothing is decided"
                    )
                try:
                    known = memo[seen_key] = expression.evaluate(cel.Context(variables=variables))
                except EvaluationError as exc:
                    known = memo[seen_key] = str(exc)
            if isinstance(known, str):
                raise EvaluationError(known)
            return known

        return dataclasses.replace(item, verdicts=_decide(_fired(matching, outcome)))


@dataclass(frozen=True)
class _Fired:
    policy: Policy
    rule: Rule
    verdict: Verdict
    failed: bool = False  # the rule could not be evaluated: a deny nothing overrides


def _fired(
    policies: Iterable[_CompiledPolicy], outcome: Callable[[Expression], bool]
) -> list[_Fired]:
    fired: list[_Fired] = []
    for compiled in policies:
        policy = compiled.policy
        for entry in compiled.rules:
            rule = entry.rule
            try:
                hit = outcome(entry.expression)
            except EvaluationError as exc:
                if rule.effect is Effect.ALLOW:
                    # An exception that cannot be evaluated is no exception: the defaults
                    # it names stand. Only deny and requireApproval must fail closed.
                    continue
                message = f"denied because the rule could not be evaluated: {exc}"
                fired.append(
                    _Fired(
                        policy, rule, Verdict(policy.name, rule.name, Effect.DENY, message), True
                    )
                )
                continue
            if hit:
                approvals = rule.approvals if rule.effect is Effect.REQUIRE_APPROVAL else 1
                verdict = Verdict(
                    policy.name, rule.name, rule.effect, rule.message, approvals, rule.reason
                )
                fired.append(_Fired(policy, rule, verdict))
    return fired


def _decide(fired: Sequence[_Fired]) -> tuple[Verdict, ...]:
    """The verdicts kept: a repository allow lifts only the shipped rules it names in
    ``overrides``, and is shown only where it lifted one."""
    allows = [f for f in fired if f.verdict.effect is Effect.ALLOW and not f.policy.shipped]
    kept: list[Verdict] = []
    used: list[Verdict] = []
    for f in fired:
        if f.verdict.effect is Effect.ALLOW:
            continue
        key = (f.verdict.policy, f.verdict.rule)
        lifting = [a for a in allows if key in a.rule.overrides]
        if f.policy.shipped and lifting and not f.failed:
            used.extend(a.verdict for a in lifting if a.verdict not in used)
            continue
        kept.append(f.verdict)
    kept.extend(used)
    return tuple(sorted(kept, key=lambda v: (_STRENGTH[v.effect], v.policy, v.rule)))


def _fingerprint(variables: Mapping[str, Any]) -> str:
    """Equal only for values CEL cannot tell apart: a repr keeps 1, 1.0, True and "1"
    apart, and a map's key 1 from its key "1" (a list and a tuple differ where CEL sees
    the same list: a missed share, never a wrong one)."""
    return repr(variables)


def _matches(
    match: Match, item: PlanItem, action: str, node: Mapping[str, Any], run: RunContext
) -> bool:
    if match.kinds and item.kind not in match.kinds:
        return False
    if match.actions and action not in match.actions:
        return False
    if match.platforms and node["platform"] not in match.platforms:
        return False
    if match.triggers and run.trigger not in match.triggers:
        return False
    if match.sources and run.source not in match.sources:
        return False
    if match.node_labels:
        labels = node["labels"]
        return all(labels.get(k) == v for k, v in match.node_labels.items())
    return True


def _compile_policy(policy: Policy) -> _CompiledPolicy:
    rules: list[_CompiledRule] = []
    for index, rule in enumerate(policy.rules):
        try:
            rules.append(_CompiledRule(rule, _compile(rule.expression)))
        except ExpressionError as exc:
            # Validation refuses these; a set built from unvalidated input still stops.
            doc = policy.document
            where = (
                doc.location(("spec", "rules", index, "expression"))
                if doc
                else Location("<memory>")
            )
            raise InvalidInputError(
                [
                    Diagnostic(
                        where,
                        exc.message,
                        f"Policy/{policy.name}",
                        f"spec.rules[{index}].expression",
                    )
                ]
            ) from None
    return _CompiledPolicy(policy, tuple(rules))


def load(state: DesiredState) -> PolicySet:
    """The repository's Policy documents and the shipped defaults, compiled."""
    repo = [from_document(d) for d in state.controls if d.kind == "Policy"]
    documents = {(d.kind, d.name): d for d in state.resources}
    return PolicySet([*repo, *shipped_policies()], documents)
