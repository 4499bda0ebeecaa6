"""The ``notifications`` section: targets, defaults, refusals that never echo a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.notify.settings import (
    EmailTarget,
    NoticeKind,
    SecretRef,
    SlackTarget,
    WebhookTarget,
    from_config,
)
from controller.reports.errors import SettingsError

HOOK = "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX"


def test_three_targets_with_defaults_and_overrides(tmp_path: Path) -> None:
    parsed = from_config(
        [
            {"type": "webhook", "urlRef": {"env": "HOOK_URL"}},
            {
                "type": "slack",
                "name": "ops-channel",
                "urlRef": {"file": "secrets/slack"},
                "events": ["drift", "resolved"],
                "timeout": "3s",
                "retry": {"attempts": 2, "backoff": "500ms", "maxBackoff": "10s"},
                "rateLimit": {"messages": 5, "per": "10s"},
            },
            {
                "type": "email",
                "smtp": {
                    "host": "smtp.example.net",
                    "port": 587,
                    "starttls": True,
                    "userRef": {"env": "SMTP_USER"},
                    "passwordRef": {"file": "/etc/fazai/smtp.pass"},
                    "caBundle": "ca.pem",
                },
                "from": "fazai@example.net",
                "to": ["ops@example.net", "net@example.net"],
            },
        ],
        base=tmp_path,
    )
    webhook, slack, email = parsed.targets
    assert isinstance(webhook, WebhookTarget) and webhook.name == "webhook-1"
    assert webhook.url == SecretRef(env="HOOK_URL")
    assert webhook.events == frozenset(NoticeKind) and webhook.timeout == 10.0
    assert (webhook.retry.attempts, webhook.rate_limit.messages) == (5, 20)
    assert isinstance(slack, SlackTarget) and slack.name == "ops-channel"
    assert slack.url == SecretRef(file=str(tmp_path / "secrets" / "slack"))
    assert slack.events == {NoticeKind.DRIFT, NoticeKind.RESOLVED}
    assert (slack.timeout, slack.retry.backoff, slack.retry.max_backoff) == (3.0, 0.5, 10.0)
    assert (slack.rate_limit.messages, slack.rate_limit.per) == (5, 10.0)
    assert [slack.retry.delay(n) for n in (1, 2, 3, 6)] == [0.5, 1.0, 2.0, 10.0]
    assert isinstance(email, EmailTarget) and email.name == "email-3"
    assert (email.smtp.port, email.smtp.starttls, email.smtp.ssl) == (587, True, False)
    assert email.smtp.ca_bundle == tmp_path / "ca.pem"
    assert email.recipients == ("ops@example.net", "net@example.net")
    assert email.subject_prefix == "[FazAI]"


def test_ssl_defaults_to_port_465() -> None:
    (email,) = from_config(
        [{"type": "email", "smtp": {"host": "h", "ssl": True}, "from": "a@b", "to": ["c@d"]}]
    ).targets
    assert isinstance(email, EmailTarget) and email.smtp.port == 465


def test_an_inline_url_is_refused_without_repeating_it() -> None:
    with pytest.raises(SettingsError) as caught:
        from_config([{"type": "slack", "urlRef": HOOK}, {"type": "webhook", "url": HOOK}])
    text = str(caught.value)
    assert "XXXXSECRETXXXX" not in text and "hooks.slack.com" not in text
    assert dict(caught.value.problems)[(0, "urlRef")] == "expected mapping, got string"
    assert "unknown field 'url'" in dict(caught.value.problems)[(1, "url")]


@pytest.mark.parametrize(
    ("entry", "path", "words"),
    [
        ({"type": "pager"}, (0, "type"), "one of"),
        ({"type": "webhook", "urlRef": {"env": "A", "file": "b"}}, (0, "urlRef"),
         "exactly one of env, file"),
        ({"type": "webhook", "urlRef": {}}, (0, "urlRef"), "exactly one of env, file"),
        ({"type": "webhook", "urlRef": {"env": "X"}, "events": ["everything"]},
         (0, "events", 0), "one of"),
        ({"type": "webhook", "urlRef": {"env": "X"}, "timeout": 0}, (0, "timeout"), "more than 0"),
        ({"type": "email", "smtp": {"host": "h", "ssl": True, "starttls": True},
          "from": "a@b", "to": ["c@d"]}, (0, "smtp"), "not both"),
        ({"type": "email", "smtp": {"host": "h", "userRef": {"env": "U"}},
          "from": "a@b", "to": ["c@d"]}, (0, "smtp"), "both userRef and passwordRef"),
        ({"type": "email", "smtp": {"host": "h"}, "from": "a@b", "to": []}, (0, "to"), "at least"),
    ],
)  # fmt: skip
def test_refusals_name_the_field(
    entry: dict[str, object], path: tuple[object, ...], words: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        from_config([entry])
    assert caught.value.path == path
    assert words in caught.value.message
    assert caught.value.section == "notifications"


def test_two_targets_may_not_share_a_name() -> None:
    with pytest.raises(SettingsError) as caught:
        from_config(
            [
                {"type": "webhook", "name": "a", "urlRef": {"env": "X"}},
                {"type": "slack", "name": "a", "urlRef": {"env": "Y"}},
            ]
        )
    assert caught.value.path == (1, "name")
