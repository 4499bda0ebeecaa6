"""CEL expressions: compile errors with their position, names the activation lacks, and
the stage's economy (only what an expression reads is converted, equal inputs share a
result) never changing a result."""

from __future__ import annotations

import itertools

import pytest

from controller.plan.diff import Action, Change
from controller.plan.items import NodePlan, Plan, PlanItem
from controller.plan.verdicts import Effect, RunContext
from controller.policy import PolicySet, activation
from controller.policy.document import Match, Policy, Rule
from controller.policy.expressions import (
    EvaluationError,
    Expression,
    ExpressionError,
    compile_checked,
)


@pytest.mark.parametrize(
    ("source", "line", "column", "words"),
    [
        ('item.kind == "User" &&& item.action', 1, 23, "does not compile"),
        ("item.kind ==", 1, 13, "does not compile"),
        ("item.kind == 'x' &&\n  item.nmae == 'y'", 2, 8, "item has no field 'nmae'"),
        ("node.facts.mgmt == []", 1, 12, "node.facts has no field 'mgmt'"),
        ("run.who == 'x'", 1, 5, "run has no field 'who'"),
        ("itme.kind == 'User'", 1, 1, "unknown variable 'itme'"),
        ("item.name + 1 == 2", 1, 1, "Unsupported operation"),
        ("item.name", 1, 1, "not a boolean"),
    ],
)
def test_refused_with_position(source: str, line: int, column: int, words: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_checked(source)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert words in caught.value.message


@pytest.mark.parametrize(
    "source",
    [
        'item.kind == "User"',
        "item.fields.uid.live < 1000",  # a key of a map that depends on the item
        'item.changes.exists(c, c.field == "mode")',
        "'item.kidn' == item.name",  # inside a string: not a field
        "type(item.adopt) == bool && run.trigger in ['cli', 'commit']",
        "command != null && command.startsWith('rm ')",
        "size(node.labels) > 0 || node.facts.controllerInterfaces == []",
    ],
)
def test_accepted(source: str) -> None:
    compile_checked(source)


def test_runtime_errors_are_evaluation_errors() -> None:
    expression = Expression("item.fields.uid.live < 1000")
    with pytest.raises(EvaluationError, match="uid"):
        expression.evaluate({"item": {"fields": {}}})
    with pytest.raises(EvaluationError, match="not a boolean"):
        Expression("item.fields").evaluate({"item": {"fields": {}}})


EXPRESSIONS = [
    'item.action == "delete"',
    '"uid" in item.fields && item.fields.uid.live < 1000',
    'item.fields["mode"].desired == "0600"',
    "size(item.fields) > 1",
    'item.fields.exists(k, k == "mode")',
    'item["kind"] == "User" && item.name.startsWith("a")',
    'item.changes.exists(c, c.field == "uid" && c.live == 5)',
    'has(item.spec.path) && item.spec.path.startsWith("/etc/")',
    "item.fields.uid.live == 5",  # errors on items without a uid
    'node.labels.tier == "web" || command != null',
    "item.fields.uid.live == 5.0",  # 5 and 5.0 are different CEL values
]


def _items() -> list[PlanItem]:
    fields = [
        (Change("uid", 5, None),),
        (Change("uid", 5.0, None),),
        (Change("uid", "5", None),),
        (Change("mode", "0644", "0600"), Change("uid", 1500, None)),
        (Change("mode", "0644", "0600"),),
        (),
    ]
    out = []
    for n, (changes, action, command) in enumerate(
        itertools.product(fields, (Action.DELETE, Action.UPDATE), (None, "rm -rf /"))
    ):
        out.append(PlanItem("web-1", "User", f"a{n % 3}", action, changes, command=command))
    return out


def test_trimmed_and_shared_evaluation_gives_the_naive_results() -> None:
    """Every expression over every item: the stage's verdicts equal evaluating the whole
    activation afresh for each item and rule."""
    rules = tuple(
        Rule(f"r{i}", source, Effect.REQUIRE_APPROVAL, f"m{i}")
        for i, source in enumerate(EXPRESSIONS)
    )
    stage = PolicySet([Policy("p", Match(), rules)])
    run = RunContext("cli", "plan", "me")
    node = activation.node_view("web-1", "linux", None)
    node["labels"] = {"tier": "db"}
    items = _items()
    plan = Plan("s", None, (NodePlan("web-1", "linux", tuple(items)),))
    from controller.model.document import Document

    doc = Document("Node", "web-1", {"platform": "linux"}, {"tier": "db"})
    judged = stage.evaluate(plan, run, {"web-1": doc}).nodes[0].items
    for item, got in zip(items, judged, strict=True):
        expected = []
        for rule in rules:
            variables = activation.activation(
                activation.item_view(item, {}), node, activation.run_view(run), item.command
            )
            try:
                hit = Expression(rule.expression).evaluate(variables)
            except EvaluationError:
                expected.append((rule.name, Effect.DENY))
                continue
            if hit:
                expected.append((rule.name, Effect.REQUIRE_APPROVAL))
        assert sorted((v.rule, v.effect) for v in got.verdicts) == sorted(expected), item


def test_needs_name_what_is_read() -> None:
    needs = Expression('"uid" in item.fields && item.fields.uid.live < 1000').needs
    assert needs.variables == {"item"} and needs.item == {"fields"} and needs.fields == {"uid"}
    assert Expression("size(item.fields) > 0").needs.fields is None
    assert Expression('item["kind"] == "x"').needs.item is None
    assert Expression("node.facts.controllerInterfaces == []").needs.node == {"facts"}
