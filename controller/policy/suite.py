"""``fazai policy test``: policies checked against plans kept as data, in the manner of
``conftest`` and ``kyverno test``.

A test case is a YAML document of kind ``PolicyTest`` (``schemas/policytest.json``): the
plan JSON it checks (as ``fazai plan --output json`` writes it), the run context, and the
verdict expected for each listed item. Items the case does not list are not checked.
A case file that cannot be read or does not fit the schema is trouble (InvalidInputError,
``FILE:LINE:COL``), never a failed expectation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from controller.diagnostics import Diagnostic, Location, format_path
from controller.errors import InvalidInputError
from controller.model.document import Document
from controller.model.yamlsource import MAX_FILE_BYTES, RawDocument, read_documents
from controller.plan import plan_json
from controller.plan.items import Plan, PlanItem
from controller.plan.verdicts import Effect, RunContext
from controller.policy.stage import PolicySet
from controller.words import count

NONE = "none"
_ORDER = (Effect.DENY, Effect.REQUIRE_APPROVAL, Effect.ALLOW)


@dataclass(frozen=True)
class CaseResult:
    name: str
    file: str
    checked: int
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


def effect_of(item: PlanItem) -> str:
    """The strongest verdict's effect, or ``none``."""
    found = {v.effect for v in item.verdicts}
    return next((e.value for e in _ORDER if e in found), NONE)


def case_files(paths: Sequence[Path]) -> list[Path]:
    """The given files, and the YAML files under the given folders, sorted."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
        else:
            out.append(path)
    return out


def run(
    policies: PolicySet, nodes: Mapping[str, Document], paths: Sequence[Path]
) -> list[CaseResult]:
    """Every case of ``paths``; InvalidInputError (all problems at once) when any case or
    plan file is unreadable, before anything is evaluated."""
    cases: list[tuple[RawDocument, Plan]] = []
    problems: list[Diagnostic] = []
    files = case_files(paths)
    if not files:
        problems.append(Diagnostic(Location(" ".join(map(str, paths))), "no test cases found"))
    for file in files:
        for raw in _read_cases(file, problems):
            plan = _read_plan(file, raw, problems)
            if plan is not None:
                cases.append((raw, plan))
    if problems:
        raise CaseFilesError(problems)
    return [_check(policies, nodes, raw, plan) for raw, plan in cases]


class CaseFilesError(InvalidInputError):
    """Test case or plan files that cannot be used; says so, not "the desired state"."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        super().__init__(diagnostics)
        errors = sum(1 for d in self.diagnostics if d.is_error)
        self.args = (f"{count(errors, 'error')} in the test files",)


def _check(
    policies: PolicySet, nodes: Mapping[str, Document], raw: RawDocument, plan: Plan
) -> CaseResult:
    spec = raw.value["spec"]
    given = spec.get("run", {})
    run_context = RunContext(
        trigger=given.get("trigger", "cli"),
        mode=given.get("mode", "apply"),
        actor=given.get("actor", "policy-test"),
        source=given.get("source", plan.source),
    )
    judged = policies.evaluate(plan, run_context, _nodes(plan, nodes, spec.get("nodes", {})))
    items = {(i.node, i.kind, i.name): i for n in judged.nodes for i in n.items}
    failures = [f for e in spec["expect"] for f in _expectation(e, items)]
    return CaseResult(raw.value["metadata"]["name"], raw.file, len(spec["expect"]), tuple(failures))


def _expectation(
    expected: Mapping[str, Any], items: Mapping[tuple[str, str, str], PlanItem]
) -> Iterator[str]:
    label = f"{expected['node']} {expected['kind']}/{expected['name']}"
    item = items.get((expected["node"], expected["kind"], expected["name"]))
    if item is None:
        yield f"{label}: not in the plan"
        return
    got = effect_of(item)
    verdicts = ", ".join(f"{v.effect.value} by {v.policy}/{v.rule}" for v in item.verdicts)
    said = f" ({verdicts})" if verdicts else ""
    if got != expected["effect"]:
        yield f"{label}: expected {expected['effect']}, got {got}{said}"
        return
    if expected["effect"] == NONE:
        return
    matching = [
        v
        for v in item.verdicts
        if v.effect.value == got
        and v.policy == expected.get("policy", v.policy)
        and v.rule == expected.get("rule", v.rule)
    ]
    if not matching:
        who = "/".join(str(expected[k]) for k in ("policy", "rule") if k in expected)
        yield f"{label}: expected {got} by {who}, got{said}"
    elif "approvals" in expected and item.approvals_needed != expected["approvals"]:
        yield f"{label}: expected {expected['approvals']} approval(s), got {item.approvals_needed}"


def _nodes(
    plan: Plan, documents: Mapping[str, Document], given: Mapping[str, Any]
) -> dict[str, Document]:
    """The repository's Node documents, with what the case says of a node instead."""
    out = dict(documents)
    for node_plan in plan.nodes:
        extra = given.get(node_plan.node)
        if extra is None:
            continue
        base = documents.get(node_plan.node)
        spec: dict[str, Any] = dict(base.spec) if base else {"platform": node_plan.platform}
        if "controllerInterfaces" in extra:
            spec["controllerInterfaces"] = list(extra["controllerInterfaces"])
        labels = dict(extra.get("labels", base.labels if base else {}))
        out[node_plan.node] = Document("Node", node_plan.node, spec, labels)
    return out


def _read_cases(file: Path, problems: list[Diagnostic]) -> list[RawDocument]:
    name = str(file)
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            problems.append(Diagnostic(Location(name), f"larger than {MAX_FILE_BYTES} bytes"))
            return []
        data = file.read_bytes()
    except OSError as exc:
        problems.append(Diagnostic(Location(name), f"cannot read: {exc.strerror or exc}"))
        return []
    raws, found = read_documents(name, data)
    problems.extend(found)
    good: list[RawDocument] = []
    for raw in raws:
        errors = sorted(
            _validator().iter_errors(raw.value), key=lambda e: list(map(str, e.absolute_path))
        )
        for error in errors:
            path = tuple(error.absolute_path)
            problems.append(
                Diagnostic(raw.location(path), error.message, "PolicyTest", format_path(path))
            )
        if not errors:
            good.append(raw)
    return good


def _read_plan(file: Path, raw: RawDocument, problems: list[Diagnostic]) -> Plan | None:
    plan_file = file.parent / raw.value["spec"]["plan"]
    where = raw.location(("spec", "plan"))
    try:
        if plan_file.stat().st_size > MAX_FILE_BYTES:
            problems.append(Diagnostic(where, f"{plan_file}: larger than {MAX_FILE_BYTES} bytes"))
            return None
        text = plan_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problems.append(
            Diagnostic(where, f"cannot read the plan {plan_file}: {why}", "", "spec.plan")
        )
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(Diagnostic(Location(str(plan_file), exc.lineno, exc.colno), exc.msg))
        return None
    except RecursionError:
        problems.append(Diagnostic(Location(str(plan_file)), "nested too deeply to read"))
        return None
    try:
        return plan_json.from_dict(data, str(plan_file))
    except InvalidInputError as exc:
        # The JSON reader keeps no positions: these name the file and the field's path.
        problems.extend(exc.diagnostics)
        return None
    except RecursionError:
        problems.append(Diagnostic(Location(str(plan_file)), "nested too deeply to read"))
        return None


@cache
def _validator() -> jsonschema.protocols.Validator:
    text = resources.files("controller.policy").joinpath("schemas", "policytest.json").read_text()
    validator: jsonschema.protocols.Validator = jsonschema.Draft202012Validator(json.loads(text))
    return validator
