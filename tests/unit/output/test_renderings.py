"""Plan renderings: JSON conforms to its published schema; text and markdown say the same."""

from __future__ import annotations

import io
import json

import jsonschema
from rich.console import Console

from controller.output import plan_markdown, plan_text
from controller.plan import plan_json
from controller.plan.diff import Action, Change
from controller.plan.items import NodePlan, Plan, PlanItem

DIFF = "--- live /etc/motd\n+++ desired /etc/motd\n@@ -1 +1 @@\n-old\n+new\n"


def sample_plan() -> Plan:
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
            PlanItem(
                "web-1", "Package", "nginx", Action.CREATE, (Change("installed", None, True),)
            ),
            PlanItem("web-1", "Package", "telnetd", Action.NOOP),
            PlanItem("web-1", "Service", "nginx", Action.ERROR, error="no systemd on this node"),
        ),
        seconds=0.25,
    )
    down = NodePlan(
        "db-1",
        "linux",
        error="cannot connect to 10.0.0.5:22: Connection refused",
        error_type="UnreachableError",
    )
    return Plan("/srv/state", "0123456789abcdef0123", (down, web))


def test_json_matches_published_schema_and_lists_only_changes() -> None:
    rendered = json.loads(plan_json.render(sample_plan()))
    jsonschema.validate(rendered, plan_json.schema())
    assert [(c["node"], c["kind"], c["name"], c["action"]) for c in rendered["changes"]] == [
        ("web-1", "File", "motd", "update"),
        ("web-1", "Package", "nginx", "create"),
        ("web-1", "Service", "nginx", "error"),
    ]
    assert rendered["changes"][0]["changes"][0] == {
        "field": "content",
        "live": "sha256:aa",
        "desired": "sha256:bb",
        "diff": DIFF,
    }
    assert rendered["changes"][2]["error"] == "no systemd on this node"
    assert rendered["summary"]["exitCode"] == 2
    assert rendered["nodes"][0]["errorType"] == "UnreachableError"


def test_exit_codes_follow_diff() -> None:
    in_sync = Plan("s", None, (NodePlan("a", "linux", (PlanItem("a", "File", "f", Action.NOOP),)),))
    changed = Plan(
        "s", None, (NodePlan("a", "linux", (PlanItem("a", "File", "f", Action.CREATE),)),)
    )
    assert (in_sync.exit_code, changed.exit_code, sample_plan().exit_code) == (0, 1, 2)


def test_text_groups_by_node_and_summarizes() -> None:
    buffer = io.StringIO()
    plan_text.render(sample_plan(), Console(file=buffer, width=200, color_system=None))
    out = buffer.getvalue()
    assert "db-1 (linux)" in out and "UnreachableError: cannot connect" in out
    assert "~ File/motd" in out and "mode: 0600 → 0644" in out and "+new" in out
    assert "Package/telnetd" not in out  # in sync, hidden unless asked
    assert out.strip().splitlines()[-1] == (
        "Plan: 1 to create, 1 to update, 0 to delete, 1 in sync, 1 not comparable "
        "on 2 nodes; 1 node could not be read."
    )


def test_markdown_has_table_and_diff_blocks() -> None:
    out = plan_markdown.render(sample_plan())
    assert out.startswith("### FazAI plan: ❌ trouble")
    assert "| web-1 | linux | 1 | 1 | 0 | 1 | ❗ errors |" in out
    assert (
        "| db-1 | linux | 0 | 0 | 0 | 0 | ⚠️ cannot connect to 10.0.0.5:22: Connection refused |"
        in out
    )
    assert "    ```diff\n    --- live /etc/motd" in out
    assert "`0600` → `0644`" in out
