"""Push webhook verification and parsing, on the forges' documented sample payloads."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from controller.errors import PushIgnored, WebhookRefused
from controller.forges.webhooks import ReplayGuard, parse_push, repository_key
from controller.secrets import Secret
from controller.testing.forges import webhook_headers

DATA = Path(__file__).parents[2] / "data" / "webhooks"
SECRET = "s3cret-hook-value"


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


def test_github_documented_test_vector() -> None:
    # From GitHub's "Validating webhook deliveries": this secret and payload must give
    # exactly this signature.
    body = b"Hello, World!"
    expected = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert webhook_headers("github", body, "It's a Secret to Everybody")["X-Hub-Signature-256"] == (
        "sha256=" + expected
    )
    headers = {"X-Hub-Signature-256": "sha256=" + expected, "X-GitHub-Event": "ping"}
    with pytest.raises(PushIgnored):  # authentic (signature accepted), but not a push
        parse_push("github", headers, body, Secret("It's a Secret to Everybody"))


def test_github_push() -> None:
    body = sample("github-push.json")
    headers = webhook_headers(
        "github", body, SECRET, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958"
    )
    event = parse_push("github", headers, body, Secret(SECRET))
    assert event.branch == "master"
    assert event.revision == "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
    assert event.delivery_id == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert event.location_urls == (
        "https://github.com/Codertocat/Hello-World.git",
        "git@github.com:Codertocat/Hello-World.git",
        "https://github.com/Codertocat/Hello-World",
        "git://github.com/Codertocat/Hello-World.git",
    )


def test_gitlab_push() -> None:
    body = sample("gitlab-push.json")
    event = parse_push("gitlab", webhook_headers("gitlab", body, SECRET), body, Secret(SECRET))
    assert (event.branch, event.revision) == ("master", "da1560886d4f094c3e6c9ef40349f7d38b5d27d7")
    assert event.location_urls == (
        "http://example.com/mike/diaspora.git",
        "git@example.com:mike/diaspora.git",
        "http://example.com/mike/diaspora",
    )


@pytest.mark.parametrize("forge", ["gitea", "forgejo"])
def test_gitea_and_forgejo_push(forge: str) -> None:
    body = sample("gitea-push.json")
    event = parse_push(forge, webhook_headers(forge, body, SECRET), body, Secret(SECRET))
    assert event.forge == "gitea"
    assert (event.branch, event.revision) == ("develop", "bffeb74224043ba2feb48d137756c8a9331c449a")
    assert "ssh://gitea@localhost:2222/gitea/webhooks.git" in event.location_urls
    assert "http://localhost:3000/gitea/webhooks.git" in event.location_urls


def test_gitea_accepts_githubs_header_too() -> None:
    body = sample("gitea-push.json")
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-Gitea-Event": "push", "X-Hub-Signature-256": f"sha256={digest}"}
    assert parse_push("gitea", headers, body, Secret(SECRET)).branch == "develop"


@pytest.mark.parametrize(
    ("forge", "name"),
    [("github", "github-push.json"), ("gitlab", "gitlab-push.json"), ("gitea", "gitea-push.json")],
)
def test_forged_signature_is_refused(forge: str, name: str) -> None:
    body = sample(name)
    headers = webhook_headers(forge, body, "not-the-secret")
    with pytest.raises(WebhookRefused) as caught:
        parse_push(forge, headers, body, Secret(SECRET))
    assert caught.value.status_code == 403
    assert SECRET not in str(caught.value) and "not-the-secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("forge", "name"),
    [("github", "github-push.json"), ("gitlab", "gitlab-push.json"), ("gitea", "gitea-push.json")],
)
def test_tampered_body_is_refused(forge: str, name: str) -> None:
    body = sample(name)
    headers = webhook_headers(forge, body, SECRET)
    tampered = body.replace(b"refs/heads/", b"refs/heads/evil-")
    if forge == "gitlab":
        # GitLab signs nothing: its token proves the sender, not the body.
        assert parse_push(forge, headers, tampered, Secret(SECRET)).branch.startswith("evil-")
        return
    with pytest.raises(WebhookRefused) as caught:
        parse_push(forge, headers, tampered, Secret(SECRET))
    assert caught.value.status_code == 403


@pytest.mark.parametrize(
    ("forge", "name"),
    [("github", "github-push.json"), ("gitlab", "gitlab-push.json"), ("gitea", "gitea-push.json")],
)
def test_missing_signature_is_refused_when_a_secret_is_set(forge: str, name: str) -> None:
    body = sample(name)
    unsigned = webhook_headers(forge, body, None)
    with pytest.raises(WebhookRefused) as caught:
        parse_push(forge, unsigned, body, Secret(SECRET))
    assert caught.value.status_code == 401
    # Without a secret configured, the same delivery is taken (loopback use only).
    assert parse_push(forge, unsigned, body, None).revision


def test_replayed_delivery_is_refused() -> None:
    body = sample("github-push.json")
    headers = webhook_headers("github", body, SECRET, delivery="d-1")
    guard = ReplayGuard()
    clock = lambda: 1557933657.0 + 60  # a minute after the push  # noqa: E731
    parse_push("github", headers, body, Secret(SECRET), guard=guard, now=clock)
    with pytest.raises(WebhookRefused) as caught:
        parse_push("github", headers, body, Secret(SECRET), guard=guard, now=clock)
    assert caught.value.status_code == 409
    assert "d-1" in caught.value.reason
    # The same signed payload under a new delivery id is a replay too (issue 9: the
    # guard keyed on the unsigned header alone and took it).
    other = webhook_headers("github", body, SECRET, delivery="d-2")
    with pytest.raises(WebhookRefused) as caught:
        parse_push("github", other, body, Secret(SECRET), guard=guard, now=clock)
    assert caught.value.status_code == 409 and "signed payload" in caught.value.reason


@pytest.mark.parametrize("forge", ["gitlab", "gitea"])
def test_an_untimed_payload_is_remembered_for_an_hour_only(forge: str) -> None:
    """GitLab and Gitea payloads carry no push time: a captured delivery replayed under a
    new id within the hour is refused, but the same push again a day later (deploy,
    force-push rollback, deploy again: the same before and after) is taken. Before, it
    was refused for 30 days."""
    body = sample(f"{forge}-push.json")
    now = [1000.0]
    guard = ReplayGuard(clock=lambda: now[0])
    first = webhook_headers(forge, body, SECRET, delivery="first")
    assert parse_push(forge, first, body, Secret(SECRET), guard=guard).branch
    now[0] += 30 * 60
    replay = webhook_headers(forge, body, SECRET, delivery="second")
    with pytest.raises(WebhookRefused) as caught:
        parse_push(forge, replay, body, Secret(SECRET), guard=guard)
    assert caught.value.status_code == 409
    now[0] += 24 * 3600
    again = webhook_headers(forge, body, SECRET, delivery="third")
    assert parse_push(forge, again, body, Secret(SECRET), guard=guard).branch


def test_a_gitlab_body_re_encoded_is_still_the_same_push() -> None:
    """GitLab signs nothing, so a replay need not be byte for byte: its key is the push's
    parsed fields, not the body's digest (before, added whitespace made it new)."""
    body = sample("gitlab-push.json")
    guard = ReplayGuard()
    parse_push("gitlab", webhook_headers("gitlab", body, SECRET), body, Secret(SECRET), guard=guard)
    reencoded = json.dumps(json.loads(body), indent=3).encode()
    with pytest.raises(WebhookRefused) as caught:
        parse_push(
            "gitlab",
            webhook_headers("gitlab", reencoded, SECRET, delivery="other"),
            reencoded,
            Secret(SECRET),
            guard=guard,
        )
    assert caught.value.status_code == 409 and "before, after" in caught.value.reason


def test_forged_delivery_does_not_poison_the_guard() -> None:
    body = sample("gitlab-push.json")
    guard = ReplayGuard()
    forged = webhook_headers("gitlab", body, "wrong", delivery="uuid-1")
    with pytest.raises(WebhookRefused):
        parse_push("gitlab", forged, body, Secret(SECRET), guard=guard)
    genuine = webhook_headers("gitlab", body, SECRET, delivery="uuid-1")
    assert parse_push("gitlab", genuine, body, Secret(SECRET), guard=guard).branch == "master"


def test_stale_github_delivery_is_refused() -> None:
    body = sample("github-push.json")  # pushed_at 1557933657, in May 2019
    headers = webhook_headers("github", body, SECRET)
    with pytest.raises(WebhookRefused) as caught:
        parse_push("github", headers, body, Secret(SECRET), guard=ReplayGuard(), now=time.time)
    assert caught.value.status_code == 409 and "stale" in caught.value.reason


def test_missing_delivery_id_falls_back_to_the_body() -> None:
    body = sample("gitea-push.json")
    headers = webhook_headers("gitea", body, SECRET)
    del headers["X-Gitea-Delivery"]
    guard = ReplayGuard()
    event = parse_push("gitea", headers, body, Secret(SECRET), guard=guard)
    assert event.delivery_id.startswith("sha256:")
    with pytest.raises(WebhookRefused):
        parse_push("gitea", headers, body, Secret(SECRET), guard=guard)


def test_guard_forgets_after_ttl_and_beyond_capacity() -> None:
    now = [0.0]
    guard = ReplayGuard(capacity=3, ttl=10, clock=lambda: now[0])
    assert [guard.seen(i) for i in "abc"] == [False, False, False]
    assert guard.seen("a")
    assert not guard.seen("d")  # "a" is the oldest entry: it is forgotten
    assert not guard.seen("a")
    now[0] = 11.0
    assert not guard.seen("c") and len(guard) == 1


def test_non_push_event_is_ignored_not_refused() -> None:
    body = json.dumps({"zen": "Design for failure.", "hook_id": 1}).encode()
    headers = webhook_headers("github", body, SECRET, event="ping")
    with pytest.raises(PushIgnored) as caught:
        parse_push("github", headers, body, Secret(SECRET))
    assert caught.value.status_code == 202 and "ping" in caught.value.reason
    assert isinstance(caught.value, WebhookRefused)


def test_tag_pushes_are_ignored() -> None:
    body = sample("gitlab-tag-push.json")
    headers = webhook_headers("gitlab", body, SECRET, event="Tag Push Hook")
    with pytest.raises(PushIgnored, match="Tag Push Hook"):
        parse_push("gitlab", headers, body, Secret(SECRET))
    body = sample("github-tag-deleted.json")
    with pytest.raises(PushIgnored, match="tag refs/tags/simple-tag"):
        parse_push("github", webhook_headers("github", body, SECRET), body, Secret(SECRET))
    payload = json.loads(sample("gitea-push.json"))
    payload["ref"] = "refs/tags/v2"
    body = json.dumps(payload).encode()
    with pytest.raises(PushIgnored, match="tag"):
        parse_push("gitea", webhook_headers("gitea", body, SECRET), body, Secret(SECRET))


@pytest.mark.parametrize(
    ("forge", "name"),
    [("github", "github-push.json"), ("gitlab", "gitlab-push.json"), ("gitea", "gitea-push.json")],
)
def test_branch_deletion_is_ignored(forge: str, name: str) -> None:
    payload = json.loads(sample(name))
    payload["before"], payload["after"] = payload["after"], "0" * 40
    body = json.dumps(payload).encode()
    with pytest.raises(PushIgnored, match="deleted"):
        parse_push(forge, webhook_headers(forge, body, SECRET), body, Secret(SECRET))


def test_form_encoded_delivery() -> None:
    payload = sample("github-push.json").decode()
    body = urlencode({"payload": payload}).encode()
    headers = webhook_headers("github", body, SECRET)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    assert parse_push("github", headers, body, Secret(SECRET)).branch == "master"


def test_garbage_after_a_valid_signature() -> None:
    body = b"{not json"
    with pytest.raises(WebhookRefused) as caught:
        parse_push("github", webhook_headers("github", body, SECRET), body, Secret(SECRET))
    assert caught.value.status_code == 400
    body = b'{"ref": "refs/heads/main", "after": "abc"}'
    with pytest.raises(WebhookRefused, match="no repository URL"):
        parse_push("github", webhook_headers("github", body, SECRET), body, Secret(SECRET))


def test_oversized_body_is_refused_before_verification() -> None:
    body = b" " * (25 * 1024 * 1024 + 1)
    with pytest.raises(WebhookRefused) as caught:
        parse_push("github", {}, body, Secret(SECRET))
    assert caught.value.status_code == 413


def test_headers_are_case_insensitive() -> None:
    body = sample("gitlab-push.json")
    headers = {k.lower(): v for k, v in webhook_headers("gitlab", body, SECRET).items()}
    assert parse_push("gitlab", headers, body, Secret(SECRET)).branch == "master"


def test_repository_keys_match_across_url_forms() -> None:
    forms = [
        "https://git.example/acme/infra.git",
        "https://user:pw@GIT.example/acme/infra/",
        "git@git.example:acme/infra.git",
        "ssh://git@git.example:2222/acme/infra.git",
    ]
    assert {repository_key(u) for u in forms} == {("git.example", "acme/infra")}
    assert repository_key("/srv/git/infra") == ("", "/srv/git/infra")
    assert repository_key("https://git.example/acme/other") != repository_key(forms[0])
