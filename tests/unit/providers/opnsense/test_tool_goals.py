"""Goals resolved by an OPNsense Tool: the tool's check judged with the goal's, from the
same read, and the goal planned against the emulator over plain HTTP.

A met goal is in sync whatever its tool says; an unmet one whose tool check does not
hold is an update (``Tool/<name>``: "not converged" to "converged"); an unmet one whose
tool check holds, or cannot be read, is unresolved with the reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.engine import plan as planning
from controller.model import loader
from controller.model.document import Document
from controller.model.tool import BOUND, CONVERGED, NOT_CONVERGED
from controller.plan import items as planitems
from controller.plan.diff import Action, compare
from controller.providers.opnsense import goals
from controller.providers.opnsense.live import ReadFailed
from controller.source.open import open_source
from controller.testing.opnsense import EmulatorServer

NODE = "fw"
SETTINGS = "unbound/settings/get"

DNSSEC_TOOL: dict[str, Any] = {
    "platform": "opnsense",
    "description": "turn DNSSEC validation on in Unbound",
    "params": {
        "type": "object",
        "properties": {"value": {"type": "string", "enum": ["0", "1"], "default": "1"}},
    },
    "check": {"get": SETTINGS, "expect": {"path": "unbound.general.dnssec", "equals": "${value}"}},
    "apply": {
        "calls": [
            {
                "post": "unbound/settings/set",
                "body": {"unbound": {"general": {"dnssec": "${value}"}}},
            },
            {"post": "unbound/service/reconfigure"},
        ]
    },
}
DNSSEC_CHECK = {
    "name": "dnssec",
    "get": "unbound/settings/get",
    "expect": {"path": "unbound.general.dnssec", "equals": "1"},
}


def bound_goal(tool_spec: dict[str, Any], *checks: dict[str, Any], **params: Any) -> Document:
    """A goal as the loader leaves it: its tool bound into ``resolvedBy``."""
    by = {"tool": "dnssec", "params": params, BOUND: {"name": "dnssec", "spec": tool_spec}}
    spec = {"target": {"node": NODE}, "description": "d", "checks": list(checks), "resolvedBy": by}
    return Document("Goal", "dnssec-on", spec)


def answer(dnssec: str) -> dict[str, Any]:
    return {SETTINGS: {"unbound": {"general": {"dnssec": dnssec}}}}


# -- judging from answers -------------------------------------------------------------


def test_the_tool_check_path_is_read_with_the_goal_checks() -> None:
    other = {**DNSSEC_TOOL, "check": {"get": "core/service/search", "expect": {"exists": True}}}
    assert goals.paths([bound_goal(other, DNSSEC_CHECK)]) == {SETTINGS, "core/service/search"}
    # a path both read is read once
    assert goals.paths([bound_goal(DNSSEC_TOOL, DNSSEC_CHECK)]) == {SETTINGS}


def test_met_goal_is_in_sync_whatever_the_tool_says() -> None:
    # the tool's check (value 0 wanted) does not hold, yet the goal is met: nothing to do
    seen = goals.observe(bound_goal(DNSSEC_TOOL, DNSSEC_CHECK, value="0"), answer("1"))
    assert (seen.desired, seen.live, seen.unresolved) == ({"dnssec": "pass"}, {"dnssec": "pass"},
                                                          None)  # fmt: skip
    assert compare(seen)[0] is Action.NOOP


def test_unmet_goal_with_a_tool_that_has_not_run_is_an_update() -> None:
    seen = goals.observe(bound_goal(DNSSEC_TOOL, DNSSEC_CHECK), answer("0"))
    assert seen.desired == {"dnssec": "pass", "Tool/dnssec": CONVERGED}
    assert seen.live == {"dnssec": "fail: value differs", "Tool/dnssec": NOT_CONVERGED}
    assert seen.unresolved is None
    action, changes = compare(seen)
    assert action is Action.UPDATE
    assert {c.field for c in changes} == {"dnssec", "Tool/dnssec"}


def test_unmet_goal_whose_tool_reports_converged_is_unresolved() -> None:
    # the tool turns dnssec on, which it is; the goal wants something the tool never does
    other = {"name": "hidden", "get": SETTINGS,
             "expect": {"path": "unbound.advanced.hideversion", "equals": "1"}}  # fmt: skip
    answers = {SETTINGS: {"unbound": {"general": {"dnssec": "1"},
                                      "advanced": {"hideversion": "0"}}}}  # fmt: skip
    seen = goals.observe(bound_goal(DNSSEC_TOOL, other), answers)
    assert compare(seen)[0] is Action.UNRESOLVED
    assert seen.unresolved == (
        "checks failing: hidden (value differs); Tool/dnssec reports it converged, so "
        "applying it cannot help"
    )
    assert seen.live == {"hidden": "fail: value differs", "Tool/dnssec": CONVERGED}


@pytest.mark.parametrize(
    ("read", "why"),
    [
        (ReadFailed("HTTP 404"), "Tool/dnssec's check could not be read: HTTP 404"),
        (None, "Tool/dnssec's check was not read"),
    ],
)
def test_a_tool_check_that_cannot_be_read_leaves_the_goal_unresolved(
    read: ReadFailed | None, why: str
) -> None:
    tool = {**DNSSEC_TOOL, "check": {"get": "ids/settings/get", "expect": {"exists": True}}}
    answers: dict[str, Any] = answer("0")
    if read is not None:
        answers["ids/settings/get"] = read
    seen = goals.observe(bound_goal(tool, DNSSEC_CHECK), answers)
    assert compare(seen)[0] is Action.UNRESOLVED
    assert seen.unresolved == f"checks failing: dnssec (value differs); {why}"
    assert str(seen.live and seen.live["Tool/dnssec"]).startswith("error: ")


def test_a_linux_tool_on_a_firewall_goal_is_unresolved() -> None:
    linux = {"platform": "linux", "description": "d", "check": {"command": ["true"]},
             "apply": {"script": "true"}}  # fmt: skip
    seen = goals.observe(bound_goal(linux, DNSSEC_CHECK), answer("0"))
    assert compare(seen)[0] is Action.UNRESOLVED
    assert "not an OPNsense API check" in str(seen.unresolved)


def test_the_verdicts_quote_nothing_the_firewall_answered() -> None:
    secretish = {SETTINGS: {"unbound": {"general": {"dnssec": "s3cr3t-value"}}}}
    seen = goals.observe(bound_goal(DNSSEC_TOOL, DNSSEC_CHECK), secretish)
    assert "s3cr3t" not in repr((seen.live, seen.unresolved))


# -- planned against the emulator -----------------------------------------------------


def document(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "fazai.dev/v1alpha1", "kind": kind, "metadata": {"name": name},
            "spec": spec}  # fmt: skip


class Firewall:
    def __init__(self, emu: EmulatorServer, folder: Path) -> None:
        self.emu = emu
        self.folder = folder

    def plan(self, *documents: dict[str, Any]) -> dict[tuple[str, str], planitems.PlanItem]:
        node = document("Node", NODE, {
            "platform": "opnsense", "url": self.emu.url, "requestTimeout": 5,
            "apiKeyRef": {"env": "FAZAI_TEST_FW_KEY"},
            "apiSecretRef": {"env": "FAZAI_TEST_FW_SECRET"},
        })  # fmt: skip
        (self.folder / "fw.yaml").write_text(yaml.safe_dump_all([node, *documents]))
        state = loader.load(open_source(str(self.folder)))
        self.emu.requests.clear()
        result = asyncio.run(planning.build(state))
        (planned,) = result.nodes
        assert planned.error is None, planned.error
        return {(i.kind, i.name): i for i in planned.items}


@pytest.fixture(params=["24.7", "26.7"])
def fw(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Firewall]:
    with EmulatorServer(version=request.param) as emu:
        monkeypatch.setenv("FAZAI_TEST_FW_KEY", emu.api_key)
        monkeypatch.setenv("FAZAI_TEST_FW_SECRET", emu.api_secret)
        yield Firewall(emu, tmp_path)


def goal_document(tool: str = "dnssec", **params: Any) -> dict[str, Any]:
    by: dict[str, Any] = {"tool": tool, **({"params": params} if params else {})}
    return document("Goal", "dnssec-on", {"target": {"node": NODE}, "description": "DNSSEC on",
                                          "checks": [DNSSEC_CHECK], "resolvedBy": by})  # fmt: skip


def test_plan_against_the_emulator_shows_the_update_and_reads_once(fw: Firewall) -> None:
    items = fw.plan(document("Tool", "dnssec", DNSSEC_TOOL), goal_document())
    item = items[("Goal", "dnssec-on")]
    assert item.action is Action.UPDATE
    assert {(c.field, c.live, c.desired) for c in item.changes} == {
        ("dnssec", "fail: value differs", "pass"),
        ("Tool/dnssec", NOT_CONVERGED, CONVERGED),
    }
    assert ("Tool", "dnssec") not in items  # a tool is no object on the node
    assert fw.emu.requests.count("GET", r"^/api/unbound/settings/get$") == 1
    assert fw.emu.requests.count("POST") == 0


def test_plan_against_the_emulator_is_in_sync_once_the_goal_is_met(fw: Firewall) -> None:
    fw.emu.state.settings["unbound.general"]["dnssec"] = "1"
    items = fw.plan(document("Tool", "dnssec", DNSSEC_TOOL), goal_document(value="0"))
    assert items[("Goal", "dnssec-on")].action is Action.NOOP
