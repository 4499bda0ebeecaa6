"""Plan JSON read back: ``from_dict`` gives the typed plan ``to_dict`` wrote, checked
against plan.schema.json, and refuses a document that is not one, naming the field."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from controller.diagnostics import Diagnostic, Location, Severity
from controller.errors import PlanFormatError
from controller.plan import plan_json
from controller.plan.diff import Action, Change
from controller.plan.items import NodePlan, Plan, PlanItem

DIFF = "--- live /etc/motd\n+++ desired /etc/motd\n@@ -1 +1 @@\n-old\n+new\n"


def plan() -> Plan:
    """Every shape the JSON carries, with JSON-native values (lists, not tuples)."""
    web = NodePlan(
        "web-1",
        "linux",
        (
            PlanItem(
                "web-1",
                "File",
                "motd",
                Action.UPDATE,
                (Change("content", "sha256:aa", "sha256:bb", DIFF), Change("mode", "0600", "0644")),
            ),
            PlanItem("web-1", "User", "deploy", Action.CREATE, (Change("groups", None, ["a"]),)),
            PlanItem("web-1", "Service", "nginx", Action.ERROR, error="no systemd on this node"),
            PlanItem("web-1", "File", "stray", Action.UNMANAGED),
        ),
        seconds=0.25,
    )
    firewall = NodePlan(
        "fw",
        "opnsense",
        (
            PlanItem(
                "fw",
                "FirewallRule",
                "ssh",
                Action.UPDATE,
                (Change("description", "old", "ssh"),),
                adopt="5f0c8c1e-0a6b-4c39-9d7e-1c2b3a4d5e6f",
            ),
            PlanItem(
                "fw", "FirewallAlias", "web", Action.DELETE, (Change("content", ["a"], None),)
            ),
        ),
        seconds=1.5,
    )
    down = NodePlan(
        "db-1",
        "linux",
        error="cannot connect to 10.0.0.5:22: Connection refused",
        error_type="UnreachableError",
    )
    warnings = (
        Diagnostic(
            Location("state/web.yaml", 3, 5),
            "deprecated",
            "File/motd",
            "spec.mode",
            Severity.WARNING,
        ),
        Diagnostic(Location("node fw"), "released, left as it is", severity=Severity.WARNING),
    )
    return Plan("/srv/state", "0123456789abcdef0123", (down, web, firewall), warnings)


def test_a_plan_reads_back_as_it_was_written() -> None:
    written = plan_json.to_dict(plan())
    stored = json.loads(json.dumps(written))  # as the store or a file holds it

    read = plan_json.from_dict(stored)

    assert read.nodes == plan().nodes
    assert (read.source, read.revision, read.exit_code) == ("/srv/state", plan().revision, 2)
    assert [str(w) for w in read.warnings] == [str(w) for w in plan().warnings]
    assert plan_json.to_dict(read) == written


def test_noop_items_are_counted_not_listed_so_they_do_not_come_back() -> None:
    with_noop = plan()
    web = with_noop.nodes[1]
    noop = PlanItem("web-1", "Package", "telnetd", Action.NOOP)
    with_noop = Plan(
        with_noop.source,
        with_noop.revision,
        (
            with_noop.nodes[0],
            NodePlan(web.node, web.platform, (*web.items, noop), seconds=0.25),
            with_noop.nodes[2],
        ),
        with_noop.warnings,
    )
    read = plan_json.from_dict(plan_json.to_dict(with_noop))
    assert read.nodes == plan().nodes
    assert read.exit_code == with_noop.exit_code


def _broken(change: Any) -> dict[str, Any]:
    document = copy.deepcopy(plan_json.to_dict(plan()))
    change(document)
    return document


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (lambda d: d["changes"][1].update(action="explode"), "changes[1].action", "explode"),
        (lambda d: d["changes"][0]["changes"][0].pop("live"), "changes[0].changes[0]", "live"),
        (lambda d: d["nodes"][0].update(seconds="soon"), "nodes[0].seconds", "soon"),
        (lambda d: d.update(kind="Review"), "kind", "Plan"),
        (lambda d: d["changes"][0].update(node="ghost"), "changes[0].node", "ghost"),
    ],
)
def test_a_document_that_is_not_a_plan_is_refused_naming_the_field(
    change: Any, path: str, words: str
) -> None:
    with pytest.raises(PlanFormatError) as caught:
        plan_json.from_dict(_broken(change))
    assert caught.value.path == path
    assert words in str(caught.value)


def test_one_item_reads_back_and_a_bad_one_is_refused() -> None:
    item = plan().nodes[2].items[0]
    assert plan_json.item_from_dict(json.loads(json.dumps(plan_json.item_dict(item)))) == item
    with pytest.raises(PlanFormatError, match="'kind' is a required property"):
        plan_json.item_from_dict({"node": "fw", "name": "x", "action": "update", "changes": []})
