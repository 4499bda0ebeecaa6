"""The shapes each target receives: the documented JSON, Slack blocks, an email."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import jsonschema

from controller.notify import formats
from controller.notify.notice import NodeOutcome, Notice
from controller.notify.settings import NoticeKind
from controller.reports.build import drifted_resources
from tests.unit.reports.handlekit import recorded_items

WHEN = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)


def drift_notice(**changes: object) -> Notice:
    found = recorded_items("plan_1_drift", "edge-fw")
    base = Notice(
        kind=NoticeKind.DRIFT,
        title="Drift on edge-fw: 2 to create",
        text="edge-fw differs",
        time=WHEN,
        event_id=42,
        source="infra",
        node="edge-fw",
        revision="0123456789abcdef",
        mode="detect",
        resources=drifted_resources("edge-fw", "infra", found),
    )
    return Notice(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def test_every_kind_of_notice_matches_the_webhook_schema() -> None:
    validator = jsonschema.Draft202012Validator(
        formats.webhook_schema(), format_checker=jsonschema.FormatChecker()
    )
    samples = [
        drift_notice(),
        drift_notice(kind=NoticeKind.RESOLVED, resources=()),
        drift_notice(
            kind=NoticeKind.APPLIED,
            run_id=3,
            status="partial",
            nodes=(NodeOutcome("edge-fw", "converged"), NodeOutcome("db", "failed", "x")),
        ),
        drift_notice(kind=NoticeKind.ROLLED_BACK, reason="verify failed", resources=()),
        drift_notice(kind=NoticeKind.SIGNATURE_REFUSED, node=None, mode=None, resources=()),
    ]
    for notice in samples:
        payload = json.loads(json.dumps(formats.to_json(notice)))
        assert [e.message for e in validator.iter_errors(payload)] == []
    payload = formats.to_json(samples[0])
    assert payload["type"] == "drift" and payload["eventId"] == 42
    alias = payload["resources"][0]
    assert (alias["kind"], alias["name"], alias["action"]) == (
        "FirewallAlias",
        "web-servers",
        "create",
    )
    assert {"field": "name", "live": None, "desired": "web_servers"} in alias["changes"]


def test_slack_message_escapes_what_could_mention_or_link() -> None:
    notice = drift_notice(title="Drift on <!channel> & <https://evil|click>", reason="a <@U1>")
    message = formats.to_slack(notice)
    text = json.dumps(message)
    assert "<!channel>" not in text and "<https://evil" not in text and "<@U1>" not in text
    assert message["text"] == ":warning: Drift on &lt;!channel&gt; &amp; &lt;https://evil|click&gt;"
    title = message["blocks"][0]
    assert title["type"] == "section" and title["text"]["type"] == "mrkdwn"
    assert title["text"]["text"].startswith("*Drift on &lt;!channel&gt;")
    fields = message["blocks"][1]["fields"]
    assert {"type": "mrkdwn", "text": "*Commit*\n`0123456789ab`"} in fields
    body = "\n".join(
        b["text"]["text"] for b in message["blocks"] if b["type"] == "section" and "text" in b
    )
    # The recorded alias description holds <script>: it arrives escaped, in a code span.
    assert '`Web tier &lt;script&gt;alert("x")&lt;/script&gt;`' in body
    assert "*create* `FirewallAlias/web-servers` on `edge-fw`" in body


def test_slack_message_stays_within_slacks_limits() -> None:
    many = drift_notice().resources * 30
    message = formats.to_slack(drift_notice(title="x" * 500, resources=many))
    assert len(message["blocks"]) <= 50
    assert len(message["blocks"][0]["text"]["text"]) <= 152  # *title*
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in message["blocks"])
    assert message["blocks"][-1]["elements"][0]["text"] == f"and {len(many) - 20} more"


def test_email_has_one_subject_line_and_the_why_in_its_body() -> None:
    notice = drift_notice(title="Drift on edge-fw\r\nBcc: victim@example.net", text="why:\n  x")
    message = formats.to_email(notice, "fazai@example.net", ("ops@example.net",), "[lab]")
    assert message["Subject"] == "[lab] Drift on edge-fw Bcc: victim@example.net"
    assert message["Bcc"] is None
    assert message["To"] == "ops@example.net" and message["X-FazAI-Notice"] == "drift"
    body = message.get_content()
    assert "Node: edge-fw" in body and "Commit: 0123456789abcdef" in body and "why:\n  x" in body
