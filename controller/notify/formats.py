"""A notice in each target's shape: a JSON document, a Slack message, an email.

* JSON webhook: ``schemas/webhook.schema.json`` documents the document POSTed.
* Slack (and Slack-compatible hooks: Mattermost, Rocket.Chat): ``{"text", "blocks"}``;
  ``text`` is the fallback shown in notifications, blocks the message. Slack's mrkdwn
  needs ``&``, ``<`` and ``>`` escaped (otherwise ``<!channel>`` or a link could be
  injected by a resource name); blocks stay within Slack's limits (50 blocks, 3000
  characters a text); the title is clipped to 150 characters.
* Email: a plain-text message; the subject is one line whatever the title holds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import cache
from importlib import resources
from typing import Any

from controller.notify.notice import Notice
from controller.reports.values import short, show

API_VERSION = "fazai.dev/v1alpha1"
SLACK_TEXT = 3000
SLACK_HEADER = 150
SLACK_RESOURCES = 20
_EMOJI = {
    "drift": ":warning:",
    "resolved": ":white_check_mark:",
    "applied": ":gear:",
    "failed": ":x:",
    "rolled_back": ":leftwards_arrow_with_hook:",
    "signature_refused": ":no_entry:",
}


@cache
def webhook_schema() -> Mapping[str, Any]:
    text = resources.files("controller.notify").joinpath("schemas/webhook.schema.json")
    loaded: Mapping[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return loaded


def to_json(notice: Notice) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Notification",
        "type": notice.kind.value,
        "changed": notice.changed,
        "title": notice.title,
        "text": notice.text,
        "time": notice.time.isoformat(),
        "eventId": notice.event_id,
        "source": notice.source,
        "node": notice.node,
        "revision": notice.revision,
        "mode": notice.mode,
        "runId": notice.run_id,
        "status": notice.status,
        "reason": notice.reason,
        "resources": [
            {
                "node": r.node,
                "kind": r.kind,
                "name": r.name,
                "action": r.action,
                "error": r.error,
                "changes": [
                    {"field": c.field, "live": c.live, "desired": c.desired} for c in r.changes
                ],
            }
            for r in notice.resources
        ],
        "nodes": [{"node": n.node, "status": n.status, "message": n.message} for n in notice.nodes],
    }


def mrkdwn(text: str) -> str:
    """Text safe in Slack mrkdwn: no mention, link or markup can come from it."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str, limit: int = 200) -> str:
    flat = show(text, limit).replace("`", "'").replace("\n", "⏎")
    return f"`{mrkdwn(flat)}`"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_slack(notice: Notice) -> dict[str, Any]:
    facts = [
        (label, value)
        for label, value in (
            ("Node", notice.node),
            ("Source", notice.source),
            ("Commit", short(notice.revision) if notice.revision else None),
            ("Mode", notice.mode),
            ("Run", str(notice.run_id) if notice.run_id is not None else None),
        )
        if value
    ]
    # The title as escaped mrkdwn rather than a header block: a header is plain_text, and
    # whether a client honours escapes there is not documented.
    blocks: list[dict[str, Any]] = [_section(f"*{mrkdwn(_clip(notice.title, SLACK_HEADER))}*")]
    if facts:
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{label}*\n{_code(value)}"}
                    for label, value in facts
                ],
            }
        )
    if notice.reason:
        blocks.append(_section(f"*Why:* {mrkdwn(notice.reason)}"))
    for outcome in notice.nodes[:10]:
        message = f": {mrkdwn(outcome.message)}" if outcome.message else ""
        blocks.append(_section(f"{_code(outcome.node)} {mrkdwn(outcome.status)}{message}"))
    for r in notice.resources[:SLACK_RESOURCES]:
        lines = [f"*{mrkdwn(r.action)}* {_code(f'{r.kind}/{r.name}')} on {_code(r.node)}"]
        if r.error:
            lines.append(f"error: {mrkdwn(r.error)}")
        for c in r.changes[:8]:
            lines.append(f"• {_code(c.field)}: {_code(c.live)} → {_code(c.desired)}")
        blocks.append(_section("\n".join(lines)))
    if len(notice.resources) > SLACK_RESOURCES:
        more = len(notice.resources) - SLACK_RESOURCES
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"and {more} more"}]}
        )
    if notice.kind.value == "resolved" and not notice.resources:
        blocks.append(_section(mrkdwn(notice.text)))
    emoji = _EMOJI.get(notice.kind.value, "")
    return {"text": f"{emoji} {mrkdwn(notice.title)}".strip(), "blocks": blocks[:50]}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, SLACK_TEXT)}}


def to_email(
    notice: Notice, sender: str, recipients: tuple[str, ...], prefix: str = "[FazAI]"
) -> EmailMessage:
    message = EmailMessage()
    subject = " ".join(f"{prefix} {notice.title}".split())  # one line, no header injection
    message["Subject"] = subject[:200]
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(notice.time)
    message["Message-ID"] = make_msgid(domain="fazai.invalid")
    message["X-FazAI-Notice"] = notice.kind.value
    facts = [
        f"{label}: {value}"
        for label, value in (
            ("Node", notice.node),
            ("Source", notice.source),
            ("Commit", notice.revision),
            ("Mode", notice.mode),
            ("Run", notice.run_id),
        )
        if value is not None
    ]
    body = [notice.title, "", *facts, "", notice.text, "", f"-- FazAI, {notice.time.isoformat()}"]
    message.set_content("\n".join(body) + "\n")
    return message
