"""Marking a head's plan against its base's; the review's JSON, markdown and verdict."""

from __future__ import annotations

import json

import jsonschema

from controller.forges import command
from controller.forges.review import untrusted
from controller.model.document import Document
from controller.model.state import DesiredState
from controller.output import review_json, review_markdown
from controller.plan import plan_json
from controller.plan.diff import Action, Change
from controller.plan.items import NodePlan, Plan, PlanItem
from controller.plan.review import Marking, Review, classify
from controller.source.tree import SourceTree

DIFF = "--- live /etc/motd\n+++ desired /etc/motd\n@@ -1 +1 @@\n-old\n+{}\n"


def motd(desired: str) -> PlanItem:
    change = Change("content", "sha256:old", f"sha256:{desired}", DIFF.format(desired))
    return PlanItem("web-1", "File", "motd", Action.UPDATE, (change,))


def plan(revision: str, *items: PlanItem, error: str | None = None) -> Plan:
    web = NodePlan("web-1", "linux", tuple(items), error=error)
    return Plan(f"repo@{revision}", revision * 40, (web,))


def review_of(head: Plan, base: Plan) -> Review:
    markings, before, dropped = classify(head, base)
    return Review(head, base, base.source, base.revision, None, markings, before, dropped)


def test_markings() -> None:
    nginx = PlanItem("web-1", "Package", "nginx", Action.CREATE, (Change("installed", None, True),))
    telnet = PlanItem("web-1", "Package", "telnetd", Action.DELETE)
    curl_noop = PlanItem("web-1", "Package", "curl", Action.NOOP)
    curl = PlanItem("web-1", "Package", "curl", Action.CREATE, (Change("installed", None, True),))
    base = plan("b", motd("a"), telnet, curl_noop, PlanItem("web-1", "User", "old", Action.CREATE))
    head = plan("h", motd("b"), telnet, curl, nginx)
    result = review_of(head, base)
    assert dict(result.markings) == {
        ("web-1", "File", "motd"): Marking.CHANGED,  # both update it, to different contents
        ("web-1", "Package", "telnetd"): Marking.PENDING,
        ("web-1", "Package", "curl"): Marking.INTRODUCED,  # in sync on the base
        ("web-1", "Package", "nginx"): Marking.INTRODUCED,  # not in the base at all
    }
    assert result.before[("web-1", "File", "motd")].changes[0].desired == "sha256:a"
    assert [(i.kind, i.name) for i in result.dropped] == [("User", "old")]
    assert result.counts() == {"introduced": 2, "changed": 1, "pending": 1, "dropped": 1}


def test_diff_text_alone_does_not_make_a_change_different() -> None:
    a = motd("x")
    b = PlanItem(
        a.node, a.kind, a.name, a.action, (Change("content", "sha256:old", "sha256:x", None),)
    )
    assert classify(plan("h", a), plan("b", b))[0] == {("web-1", "File", "motd"): Marking.PENDING}


def test_nodes_one_side_could_not_read_are_not_compared() -> None:
    head = plan("h", motd("b"))
    base = plan("b", error="cannot connect")
    markings, _, dropped = classify(head, base)
    assert markings == {} and dropped == ()
    markings, _, dropped = classify(plan("h", error="cannot connect"), plan("b", motd("a")))
    assert markings == {} and dropped == ()


def test_review_json_extends_the_plan_schema() -> None:
    result = review_of(plan("h", motd("b")), plan("b", motd("a")))
    rendered = json.loads(review_json.render(result))
    jsonschema.validate(rendered, plan_json.schema())
    (change,) = rendered["changes"]
    assert change["review"] == "changed"
    assert change["base"]["changes"][0]["desired"] == "sha256:a"
    assert rendered["review"]["summary"]["changed"] == 1
    # The plan part is exactly what `plan --output json` writes for the head.
    plain = plan_json.to_dict(result.head)
    assert {k: v for k, v in rendered.items() if k not in ("review", "changes")} == {
        k: v for k, v in plain.items() if k != "changes"
    }


def test_markdown_keeps_within_the_forge_limit() -> None:
    items = [
        PlanItem("web-1", "File", f"f{i:03}", Action.UPDATE,
                 (Change("content", "sha256:a", "sha256:b", DIFF.format("x" * 200)),))
        for i in range(200)
    ]  # fmt: skip
    result = review_of(plan("h", *items), plan("b"))
    full = review_markdown.render(result)
    assert len(full) > 65_000
    fitted = review_markdown.render(result, 20_000)
    assert len(fitted) <= 20_000
    assert "✂️" in fitted and "f000" in fitted
    assert "#### Introduced or changed by this pull request (200)" in fitted
    no_diffs = review_markdown.render(result, len(full) - 1)
    assert "```diff" not in no_diffs and "Unified diffs left out" in no_diffs


def test_invalid_head_comment_lists_diagnostics() -> None:
    from controller.diagnostics import Diagnostic, Location

    diagnostics = [
        Diagnostic(Location("a.yaml", 3, 5), "unknown field 'x'", "File/motd", "spec.x"),
        Diagnostic(Location("b.yaml", 1, 1), "```evil", "File/m"),
    ]
    body = review_markdown.render_invalid(diagnostics, "repo@feature")
    assert "❌ invalid documents" in body and "2 error(s)" in body
    assert "a.yaml:3:5: File/motd: spec.x: unknown field 'x'" in body
    assert body.count("````") == 2  # the fence is not broken by a message


def test_verdicts() -> None:
    changed = review_of(plan("h", motd("b")), plan("b", motd("a")))
    state, text = command.verdict(changed)
    assert state.value == "success"
    assert text == (
        "0 to create, 1 to update, 0 to delete; 0 introduced, 1 changed, "
        "0 already pending on the base"
    )
    in_sync = review_of(plan("h"), plan("b"))
    assert command.verdict(in_sync)[1] == "in sync with the live nodes"
    broken = review_of(
        plan("h", PlanItem("web-1", "Service", "nginx", Action.ERROR, error="no systemd")),
        plan("b"),
    )
    assert command.verdict(broken)[0].value == "failure"
    down = Review(
        Plan("r", None, (NodePlan("web-1", "linux", error="refused", error_type="X"),)),
        None,
        "",
        None,
    )
    assert command.verdict(down) == (
        command.CommitState.ERROR,
        "1 node(s) could not be read: web-1",
    )


def _state(**nodes: dict[str, object]) -> DesiredState:
    tree = SourceTree("mem", None, {}, {})
    docs = {n: Document("Node", n, spec) for n, spec in nodes.items()}
    return DesiredState(tree, docs, ())


def test_untrusted_nodes() -> None:
    base = _state(web={"platform": "linux", "address": "10.0.0.1"}, fw={"platform": "opnsense",
                  "url": "https://fw", "apiKeyRef": {"env": "K"}})  # fmt: skip
    head = _state(
        web={"platform": "linux", "address": "10.0.0.1", "prune": True},
        fw={"platform": "opnsense", "url": "https://fw", "apiKeyRef": {"file": "/etc/shadow"}},
        new={"platform": "linux", "address": "203.0.113.9"},
    )
    assert untrusted(base, head) == {
        "fw": "the pull request changes how to reach this node (apiKeyRef)",
        "new": "the pull request adds this node",
    }
    assert set(untrusted(None, head)) == {"web", "fw", "new"}


def test_markdown_escapes_names_and_line_breaks_from_live_state() -> None:
    # Names and messages can carry text from the live side (a firewall's answer, an
    # unmanaged rule's description): no markup of theirs reaches the comment.
    sneaky = PlanItem(
        "web-1",
        "FirewallRule",
        "</details><img src=x> | by hand (1234)",
        Action.ERROR,
        error="the firewall said <b>no</b>",
    )
    update = PlanItem("web-1", "File", "motd", Action.UPDATE, (Change("owner", "a\nb", "root"),))
    result = review_of(plan("h", sneaky, update), plan("b"))
    body = review_markdown.render(result)
    assert "<img" not in body and "<b>" not in body
    assert "&lt;/details&gt;&lt;img src=x&gt; \\| by hand (1234)" in body
    assert "`a\\nb` → `root`" in body
