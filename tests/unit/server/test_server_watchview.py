"""How `fazai watch` shows events."""

from __future__ import annotations

from controller.events import EventBus, EventType
from controller.server import watchview


def shown(type: EventType, **data: object) -> tuple[str, str]:
    event = EventBus().publish(type, **data).to_dict()
    return watchview.line(event).plain, watchview.style(event)


def test_a_change_names_run_node_kind_and_name() -> None:
    text, style = shown(
        EventType.CHANGE_APPLIED,
        source="infra",
        run_id=12,
        node="edge-fw",
        kind="FirewallAlias",
        name="web",
        action="update",
    )
    assert "change.applied" in text
    assert text.split("change.applied", 1)[1].split() == [
        "infra",
        "run",
        "12",
        "edge-fw",
        "FirewallAlias/web",
        "update",
    ]
    assert style == "green"


def test_styles_by_type_and_run_status() -> None:
    assert shown(EventType.NODE_FAILED, node="n", reason="r")[1] == "bold red"
    assert shown(EventType.NODE_ROLLED_BACK, node="n", reason="r")[1] == "yellow"
    assert shown(EventType.RUN_FINISHED, run_id=1, status="succeeded", seconds=1.0)[1] == (
        "bold green"
    )
    assert shown(EventType.RUN_FINISHED, run_id=1, status="failed", seconds=1.0)[1] == "bold red"
    assert watchview.style({"type": "something.new"}) == ""


def test_details() -> None:
    text, _ = shown(
        EventType.RUN_FINISHED,
        source="infra",
        run_id=3,
        status="partial",
        seconds=1.234,
        command="apply",
        revision="0123456789abcdef0123",
    )
    assert "apply  0123456789ab  partial  1.23s" in text
    text, _ = shown(EventType.SOURCE_ERROR, source="infra", message="fetch failed", retry_in=30)
    assert "message: fetch failed  retry in 30s" in text
    text, _ = shown(
        EventType.APPROVAL_PENDING, source="infra", approval_id="ap-1", nodes=["a", "b"]
    )
    assert "approval ap-1  nodes a,b" in text
    text, _ = shown(EventType.AGENT_TOKEN, session="s", text="thinking")
    assert text.endswith("thinking")


def test_event_text_is_never_markup() -> None:
    text = watchview.line(
        EventBus().publish(EventType.NODE_FAILED, node="[bold red]n[/]", reason="[link]x").to_dict()
    )
    assert "[bold red]n[/]" in text.plain and "[link]x" in text.plain
