"""Goals on OPNsense: each check's verdict from its API answer, and goals planned against
the emulator over plain HTTP with the production client.

A goal whose checks pass is in sync; one that fails plans as unresolved with the failing
checks as its reason, in fixed words that quote nothing read from the firewall. A check
whose read fails (404 on this firmware, not JSON) fails alone: the goal's other checks,
and the node's other objects, plan as usual. Each distinct path is read once a pass.
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
from controller.model.goal import ApiCheck
from controller.model.state import DesiredState
from controller.plan import items as planitems
from controller.plan.diff import Action
from controller.providers.opnsense import goals
from controller.providers.opnsense.live import ReadFailed
from controller.providers.opnsense.provider import OpnsenseProvider
from controller.source.open import open_source
from controller.testing.opnsense import Drift, EmulatorServer

NODE = "fw"

# -- the verdict of one check, from a JSON answer ---------------------------------------

ANSWER = {
    "product": {"product_series": "26.1", "product_check": None, "tier": 1},
    "enabled": "1",
    "off": "0",
    "flags": [True, False],
    "rows": [{"name": "unbound", "running": 1}, {"name": "pf", "running": 0}],
    "interfaces": ["lan", "opt1", 7],
    "text": "unbound is running",
    "port": "443",
}


def check(**expect: Any) -> ApiCheck:
    path = expect.pop("at", None)
    fields: dict[str, Any] = {"name": "c", "path": "core/x/status", "at": path}
    if "equals" in expect:
        fields.update(equals=expect.pop("equals"), has_equals=True)
    return ApiCheck(**fields, **expect)


def verdict(**expect: Any) -> str:
    return goals.judge(check(**expect), {"core/x/status": ANSWER})


@pytest.mark.parametrize(
    ("expect", "want"),
    [
        ({"at": "product.product_series", "equals": "26.1"}, "pass"),
        ({"at": "product.product_series", "equals": "25.7"}, "fail: value differs"),
        # OPNsense writes booleans as "0"/"1"; some controllers send integers
        ({"at": "enabled", "equals": 1}, "pass"),
        ({"at": "enabled", "equals": True}, "pass"),
        ({"at": "enabled", "equals": "1"}, "pass"),
        ({"at": "enabled", "equals": 0}, "fail: value differs"),
        ({"at": "off", "equals": False}, "pass"),
        ({"at": "rows.0.running", "equals": "1"}, "pass"),
        ({"at": "rows.1.running", "equals": "1"}, "fail: value differs"),
        ({"at": "flags.1", "equals": "0"}, "pass"),
        ({"at": "product.tier", "equals": True}, "pass"),
        # the API answers numbers as text: a document's 443 is the firewall's "443"
        ({"at": "port", "equals": "443"}, "pass"),
        ({"at": "port", "equals": 443}, "pass"),
        ({"at": "port", "equals": 444}, "fail: value differs"),
        ({"at": "port", "equals": 443.5}, "fail: value differs"),
        # equals: null is an expectation, not "no expectation"
        ({"at": "product.product_check", "equals": None}, "pass"),
        ({"at": "product.product_series", "equals": None}, "fail: value differs"),
        ({"at": "product.nothing", "equals": None}, "fail: path missing"),
        ({"at": "rows.1", "equals": {"name": "pf", "running": "0"}}, "pass"),
        ({"at": "rows.2.name", "equals": "x"}, "fail: path missing"),
        ({"at": "text.0", "equals": "u"}, "fail: path missing"),  # strings are not indexed
        # exists
        ({"at": "product.product_check", "exists": True}, "pass"),  # present, null
        ({"at": "product.nothing", "exists": True}, "fail: path missing"),
        ({"at": "product.nothing", "exists": False}, "pass"),
        ({"at": "product", "exists": False}, "fail: path present"),
        ({"at": "rows.5", "exists": False}, "pass"),
        ({"at": "rows.-1", "exists": False}, "pass"),  # no negative indexes
        # contains: a substring of text, or an item of a list
        ({"at": "text", "contains": "is running"}, "pass"),
        ({"at": "text", "contains": "stopped"}, "fail: not contained"),
        ({"at": "interfaces", "contains": "opt1"}, "pass"),
        ({"at": "interfaces", "contains": "opt"}, "fail: not contained"),  # whole items
        ({"at": "interfaces", "contains": "7"}, "pass"),
        ({"at": "rows", "contains": "unbound"}, "fail: not contained"),
        ({"at": "product.tier", "contains": "1"}, "fail: neither text nor a list"),
        ({"at": "nothing", "contains": "x"}, "fail: path missing"),
    ],
)
def test_verdict_of_one_check(expect: dict[str, Any], want: str) -> None:
    assert verdict(**expect) == want


def test_whole_answer_compares_when_no_path_is_given() -> None:
    assert goals.judge(check(equals={"a": "1"}), {"core/x/status": {"a": True}}) == "pass"
    assert goals.judge(check(equals={"a": "1"}), {"core/x/status": {"a": 2}}) != "pass"


def test_failed_read_and_unread_path_fail_in_a_few_words() -> None:
    failing = check(at="a", equals="1")
    assert goals.judge(failing, {"core/x/status": ReadFailed("HTTP 404")}) == "fail: HTTP 404"
    assert goals.judge(failing, {}) == "fail: not read"


@pytest.mark.parametrize(
    "path",
    [
        "core/../firewall/alias/delItem",
        "core/firmware/..",
        "core/./firmware/status",
        "/core/firmware/status",
        "core//firmware/status",
        "core/firmware/status?x=1",
        "core/firmware/status#x",
        "core/firmware/%2e%2e",
        "core/firmware",
        "https://evil.example/api/x/y",
        "core\\firmware\\status",
    ],
)
def test_a_path_that_could_leave_the_api_is_never_read(path: str) -> None:
    assert not goals.plain_path(path)
    goal = goal_doc("g", {"name": "c", "get": path, "expect": {"exists": True}})
    assert goals.paths([goal]) == set()
    assert goals.observe(goal, {path: {}}).live == {"c": "fail: not a plain API path"}


def test_plain_paths_are_read() -> None:
    for path in ("core/firmware/status", "firewall/alias_util/list/my_alias", "a/b/c.d:e-f"):
        assert goals.plain_path(path), path


# -- goals planned against the emulator --------------------------------------------------


def goal_doc(name: str, *checks: dict[str, Any]) -> Document:
    spec = {"target": {"node": NODE}, "description": "d", "checks": list(checks)}
    return Document("Goal", name, spec)


def doc(kind: str, doc_name: str, /, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": doc_name},
        "spec": {"target": {"node": NODE}, **spec},
    }


def goal(name: str, *checks: dict[str, Any]) -> dict[str, Any]:
    return doc("Goal", name, description=f"{name} holds", checks=list(checks))


def get(name: str, api: str, /, **expect: Any) -> dict[str, Any]:
    return {"name": name, "get": api, "expect": expect}


class Firewall:
    def __init__(self, emu: EmulatorServer, folder: Path) -> None:
        self.emu = emu
        self.folder = folder

    def node(self) -> dict[str, Any]:
        return {
            "apiVersion": "fazai.dev/v1alpha1",
            "kind": "Node",
            "metadata": {"name": NODE},
            "spec": {
                "platform": "opnsense",
                "url": self.emu.url,
                "apiKeyRef": {"env": "FAZAI_TEST_FW_KEY"},
                "apiSecretRef": {"env": "FAZAI_TEST_FW_SECRET"},
                "requestTimeout": 5,
            },
        }

    def state(self, *documents: dict[str, Any]) -> DesiredState:
        (self.folder / "fw.yaml").write_text(yaml.safe_dump_all([self.node(), *documents]))
        return loader.load(open_source(str(self.folder)))

    def plan(self, *documents: dict[str, Any]) -> dict[tuple[str, str], planitems.PlanItem]:
        self.emu.requests.clear()
        result = asyncio.run(planning.build(self.state(*documents), show_unmanaged=True))
        (node,) = result.nodes
        assert node.error is None, node.error
        return {(i.kind, i.name): i for i in node.items}


@pytest.fixture(params=["24.7", "26.1"])
def fw(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Firewall]:
    with EmulatorServer(version=request.param) as emu:
        monkeypatch.setenv("FAZAI_TEST_FW_KEY", emu.api_key)
        monkeypatch.setenv("FAZAI_TEST_FW_SECRET", emu.api_secret)
        yield Firewall(emu, tmp_path)


def series(fw: Firewall) -> str:
    return fw.emu.state.version.name


def test_goal_whose_checks_pass_is_in_sync(fw: Firewall) -> None:
    items = fw.plan(
        goal(
            "healthy",
            get("series", "core/firmware/status", path="product.product_series",
                equals=series(fw)),
            get("version-text", "core/firmware/status", path="product.product_version",
                contains=series(fw) + "."),
            get("dns-running", "unbound/service/status", path="status", equals="running"),
            # core/service/search sends integers: "1" and true both match 1
            get("unbound-up", "core/service/search", path="rows.6.running", equals="1"),
            get("unbound-row", "core/service/search", path="rows.6.name", equals="unbound"),
            get("locked-pf", "core/service/search", path="rows.3.locked", equals=True),
            get("no-check-yet", "core/firmware/status", path="product.nothing", exists=False),
            # a model the pass reads for the unmanaged listing anyway
            get("no-geoip", "firewall/alias/get", path="alias.geoip.url", equals=""),
        ),
    )  # fmt: skip
    item = items[("Goal", "healthy")]
    assert (item.action, item.changes, item.reason) == (Action.NOOP, (), None)
    # one GET per distinct path, the firmware status shared with the version read
    log = fw.emu.requests
    assert log.count("GET", r"^/api/core/firmware/status$") == 1
    assert log.count("GET", r"^/api/core/service/search$") == 1
    assert log.count("GET", r"^/api/unbound/service/status$") == 1
    assert log.count("GET", r"^/api/firewall/alias/get$") == 1
    assert log.count("POST") == 0


def test_goal_whose_value_differs_is_unresolved_with_the_failing_checks(fw: Firewall) -> None:
    items = fw.plan(
        goal(
            "dns",
            get("dns-stopped", "unbound/service/status", path="status", equals="stopped"),
            get("series", "core/firmware/status", path="product.product_series",
                equals=series(fw)),
            get("pf-down", "core/service/search", path="rows.3.running", equals=False),
            get("no-status", "unbound/service/status", path="status", exists=False),
        ),
    )  # fmt: skip
    item = items[("Goal", "dns")]
    assert item.action is Action.UNRESOLVED
    assert item.reason == (
        "checks failing: dns-stopped (value differs), pf-down (value differs), "
        "no-status (path present)"  # in the goal's order
    )
    assert {(c.field, c.live, c.desired) for c in item.changes} == {
        ("dns-stopped", "fail: value differs", "pass"),
        ("no-status", "fail: path present", "pass"),
        ("pf-down", "fail: value differs", "pass"),
    }
    # nothing read from the firewall is in the verdicts
    shown = repr((item.reason, item.changes))
    assert "running" not in shown and "Packet Filter" not in shown


def test_missing_endpoint_fails_its_check_alone(fw: Firewall) -> None:
    Drift(fw.emu.state).add("alias", {"name": "kept", "type": "host", "content": "192.0.2.1"})
    items = fw.plan(
        doc("FirewallAlias", "web", name="web", type="host", content=["192.0.2.10"]),
        goal(
            "ids",
            get("ids-on", "ids/settings/get", path="ids.general.enabled", equals="1"),
            get("series", "core/firmware/status", path="product.product_series",
                equals=series(fw)),
        ),
        goal("fine", get("dns", "unbound/service/status", path="status", equals="running")),
    )  # fmt: skip
    item = items[("Goal", "ids")]
    assert (item.action, item.reason) == (Action.UNRESOLVED, "checks failing: ids-on (HTTP 404)")
    assert [(c.field, c.live) for c in item.changes] == [("ids-on", "fail: HTTP 404")]
    assert items[("Goal", "fine")].action is Action.NOOP
    assert items[("FirewallAlias", "web")].action is Action.CREATE
    # goals claim no object: the alias no document describes is still listed
    assert items[("FirewallAlias", "kept")].action is Action.UNMANAGED
    assert fw.emu.requests.count("GET", r"^/api/ids/settings/get$") == 1  # 404: not retried


def test_contains_on_a_list_and_exists_false_against_the_emulator(fw: Firewall) -> None:
    items = fw.plan(
        goal(
            "lists",
            # the unbound model's alias list is empty on a fresh box
            get("has-alias", "unbound/settings/get", path="unbound.aliases.alias",
                contains="www"),
            get("no-dns-alias", "unbound/settings/get", path="unbound.aliases.alias.0",
                exists=False),
            get("no-packages", "core/firmware/info", path="package.0", exists=False),
        ),
    )  # fmt: skip
    item = items[("Goal", "lists")]
    assert item.reason == "checks failing: has-alias (not contained)"


def test_a_check_read_is_its_own_failure_and_the_body_is_never_quoted(fw: Firewall) -> None:
    """Through the provider itself (no validation in front): a path that is not JSON, a
    5xx on a check, and a path that would leave /api/, which is never sent."""
    node = Document("Node", NODE, fw.node()["spec"])
    fw.emu.faults.fail(403, path=r"^/api/core/firmware/info$", times=None)
    bad = "core/../firewall/alias/delItem/x"
    goal = goal_doc(
        "odd",
        {"name": "xml", "get": "core/backup/download/this", "expect": {"exists": True}},
        {"name": "denied", "get": "core/firmware/info", "expect": {"exists": True}},
        {"name": "escape", "get": bad, "expect": {"exists": True}},
        {"name": "ok", "get": "unbound/service/status", "expect": {"equals": {"status": 1}}},
    )
    alias = Document("FirewallAlias", "web", {"target": {"node": NODE}, "name": "web",
                     "type": "host", "enabled": True, "content": ["192.0.2.10"]})  # fmt: skip
    seen = asyncio.run(OpnsenseProvider().observe(node, [alias, goal], fw.state().source))
    assert seen.resources[goal].live == {
        "xml": "fail: not JSON",
        "denied": "fail: HTTP 403",
        "escape": "fail: not a plain API path",
        "ok": "fail: value differs",  # "running" is neither 1 nor "1"
    }
    assert seen.resources[goal].unresolved == (
        "checks failing: xml (not JSON), denied (HTTP 403), escape (not a plain API path), "
        "ok (value differs)"
    )
    assert seen.resources[alias].live is None and seen.resources[alias].error is None
    assert not [r for r in fw.emu.requests if "delItem" in r.path or ".." in r.path]


def test_goal_only_node_reads_its_checks_and_lists_unmanaged(fw: Firewall) -> None:
    node = Document("Node", NODE, fw.node()["spec"])
    Drift(fw.emu.state).add("alias", {"name": "kept", "type": "host", "content": "192.0.2.1"})
    only = goal_doc("g", {"name": "dns", "get": "unbound/service/status",
                          "expect": {"path": "status", "equals": "running"}})  # fmt: skip
    provider = OpnsenseProvider()
    seen = asyncio.run(provider.observe(node, [only], fw.state().source))
    assert seen.resources[only].live == {"dns": "pass"}
    assert [u.name for u in seen.unmanaged] == ["kept"]
    unmanaged = asyncio.run(provider.unmanaged(node, [only], fw.state().source))
    assert [u.name for u in unmanaged] == ["kept"]


def test_one_read_for_many_parts_judges_each_part_with_its_own_checks(fw: Firewall) -> None:
    """observe_many (review plans of base and head): the checks of every part in one
    pass, each part seeing only its own paths (as its own read would)."""
    node = Document("Node", NODE, fw.node()["spec"])
    tree = fw.state().source
    dns = {"name": "dns", "get": "unbound/service/status", "expect": {"exists": True}}
    ids = {"name": "ids", "get": "ids/settings/get", "expect": {"exists": True}}
    base, head = goal_doc("g", dns), goal_doc("g", dns, ids)
    fw.emu.requests.clear()
    seen = asyncio.run(OpnsenseProvider().observe_many(node, [([base], tree), ([head], tree)]))
    assert seen[0].resources[base].live == {"dns": "pass"}
    assert seen[1].resources[head].live == {"dns": "pass", "ids": "fail: HTTP 404"}
    assert fw.emu.requests.count("GET", r"^/api/unbound/service/status$") == 1
