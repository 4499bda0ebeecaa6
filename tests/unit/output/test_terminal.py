"""controller.output.terminal: control characters become visible escapes, once, and
FazAI's own styling and cursor control pass untouched."""

from __future__ import annotations

import io
import logging

from rich.control import Control

from controller.output.terminal import SafeConsole, SafeFormatter, clean
from controller.server import watchview


def test_clean_escapes_c0_del_c1_and_bidi_and_keeps_tab_and_newline() -> None:
    assert clean("a\x1b[2J\x07\x7f\x9b\u202e\u2066b\tc\nd\re") == (
        "a\\x1b[2J\\x07\\x7f\\x9b\\u202e\\u2066b\tc\nd\\re"
    )
    assert clean("x\ny", one_line=True) == "x\\ny"
    assert clean("plain — ünïcode ✓") == "plain — ünïcode ✓"
    once = clean("\x1b[31m")
    assert clean(once) == once  # cleaning twice changes nothing more


def test_safe_console_keeps_its_styles_and_cursor_control() -> None:
    buffer = io.StringIO()
    console = SafeConsole(file=buffer, force_terminal=True, color_system="standard")
    console.print("[red]alert[/] \x1b[2Jhidden", highlight=False)
    console.control(Control.move_to_column(0))
    out = buffer.getvalue()
    assert "\x1b[31malert" in out  # FazAI's red
    assert "\\x1b[2Jhidden" in out and "\x1b[2J" not in out
    assert out.endswith("\x1b[1G")  # control segments are not text


def test_log_lines_are_cleaned() -> None:
    record = logging.LogRecord("x", logging.INFO, "f", 1, "node %s", ("a\x1b[2J",), None)
    assert SafeFormatter("%(message)s").format(record) == "node a\\x1b[2J"


def test_watch_keeps_one_line_per_event() -> None:
    event = {"type": "node.failed", "data": {"node": "web-1", "message": "x\n12:00 ok\x1b[2J"}}
    plain = watchview.line(event).plain
    assert "\n" not in plain and "\x1b" not in plain
    assert "message: x\\n12:00 ok\\x1b[2J" in plain


def test_text_plan_diffs_are_escaped() -> None:
    from controller.output import plan_text
    from controller.plan.diff import Action, Change
    from controller.plan.items import NodePlan, Plan, PlanItem

    diff = "--- live\n+++ desired\n@@ -1 +1 @@\n-old\n+\x1b]0;owned\x07new\u202e\n"
    item = PlanItem("w", "NftTable", "t", Action.UPDATE, (Change("definition", "a", "b", diff),))
    buffer = io.StringIO()
    console = SafeConsole(file=buffer, force_terminal=True, color_system="standard")
    plan_text.render(Plan("s", None, (NodePlan("w", "linux", (item,)),)), console)
    out = buffer.getvalue()
    assert "\x1b]0;" not in out and "\u202e" not in out
    # (rich itself drops BEL; what it keeps is escaped)
    assert "+\\x1b]0;owned" in out and "new\\u202e" in out


FAKE = "refused\nweb-2 (linux) 0.10s\n  in sync (12 resources)\n  + File/x  create"


def test_node_and_item_errors_stay_on_their_own_line_in_text_and_markdown() -> None:
    """A node's error quoting its output must not pose as plan lines of other nodes."""
    from controller.output import plan_markdown, plan_text
    from controller.plan.diff import Action
    from controller.plan.items import NodePlan, Plan, PlanItem

    item = PlanItem("web-1", "File", "motd", Action.ERROR, error=FAKE)
    plan = Plan(
        "s",
        None,
        (
            NodePlan("web-1", "linux", (item,)),
            NodePlan("web-3", "linux", error=FAKE, error_type="NodeUnreachable"),
        ),
    )
    buffer = io.StringIO()
    plan_text.render(plan, SafeConsole(file=buffer, width=300, color_system=None))
    text = buffer.getvalue()
    assert "web-2 (linux)" in text  # shown, but escaped on the error's own line
    for line in text.splitlines():
        assert not line.startswith(("web-2", "  in sync", "  + File/x")), text
    markdown = plan_markdown.render(plan)
    assert "refused\\nweb-2 (linux) 0.10s\\n  in sync" in markdown
    for line in markdown.splitlines():
        assert not line.lstrip().startswith(("web-2", "in sync", "+ File/x")), markdown


def test_click_usage_errors_print_the_argument_escaped() -> None:
    """`fazai validate a $'b\\e]8;;http://evil\\e\\\\'`: click quotes the extra argument."""
    import subprocess
    import sys

    hostile = "b\x1b]8;;http://evil\x1b\\click me\x1b]8;;\x1b\\\nError: fake"
    result = subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", "validate", "a", hostile],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "\x1b" not in result.stderr
    assert "\\x1b]8;;http://evil" in result.stderr
    assert "Usage: " in result.stderr and "validate --help' for help." in result.stderr
    assert [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")] == [
        ln for ln in result.stderr.splitlines() if "Got unexpected extra argument" in ln
    ]
