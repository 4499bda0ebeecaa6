"""POST /hooks/{forge}: signed push deliveries start a reconcile; forged or replayed ones
do not. Payloads and headers have the shape each forge's documentation gives."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid

import pytest

from controller.server.settings import SecretRef, ServerSettings, WebhookSetting
from tests.unit.server.serverkit import FakeHandle, asgi_client

SECRET = "webhook-secret-0123456789"
REPO = "https://git.example/acme/infra.git"
SHA = "9f2c" * 10


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> ServerSettings:
    monkeypatch.setenv("FAZAI_TEST_HOOK_SECRET", SECRET)
    ref = SecretRef(env="FAZAI_TEST_HOOK_SECRET")
    return ServerSettings(
        webhooks=tuple(WebhookSetting(f, ref) for f in ("github", "gitlab", "gitea"))
    )


def github(
    body: bytes, event: str = "push", delivery: str | None = None, key: str = SECRET
) -> dict[str, str]:
    signature = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": f"sha256={signature}",
    }


def github_push(ref: str = "refs/heads/main") -> bytes:
    return json.dumps(
        {
            "ref": ref,
            "before": "0" * 40,
            "after": SHA,
            "repository": {
                "full_name": "acme/infra",
                "clone_url": REPO,
                "ssh_url": "git@git.example:acme/infra.git",
                "html_url": "https://git.example/acme/infra",
            },
        }
    ).encode()


async def test_a_signed_github_push_queues_the_reconcile(
    handle: FakeHandle, settings: ServerSettings
) -> None:
    handle.followed.add(("git@git.example:acme/infra.git", "main"))
    body = github_push()
    async with asgi_client(handle, settings) as client:
        answer = await client.post("/hooks/github", content=body, headers=github(body))
    assert answer.status_code == 202
    assert answer.json() == {
        "accepted": True,
        "location": "git@git.example:acme/infra.git",
        "branch": "main",
    }
    # Tried the payload's URLs in turn until one matched a source.
    assert handle.pushes == [(REPO, "main", SHA), ("git@git.example:acme/infra.git", "main", SHA)]


async def test_forged_and_unsigned_deliveries_are_401(
    handle: FakeHandle, settings: ServerSettings
) -> None:
    handle.followed.add((REPO, "main"))
    body = github_push()
    async with asgi_client(handle, settings) as client:
        forged = await client.post(
            "/hooks/github", content=body, headers=github(body, key="guessed-secret")
        )
        headers = github(body)
        tampered = await client.post(
            "/hooks/github", content=body.replace(b"main", b"prod"), headers=headers
        )
        del headers["X-Hub-Signature-256"]
        unsigned = await client.post("/hooks/github", content=body, headers=headers)
    for answer in (forged, tampered, unsigned):
        assert answer.status_code == 401 and "error" in answer.json()
        assert SECRET not in answer.text
    assert handle.pushes == []


async def test_a_replayed_delivery_is_409(handle: FakeHandle, settings: ServerSettings) -> None:
    handle.followed.add((REPO, "main"))
    body = github_push()
    headers = github(body)
    async with asgi_client(handle, settings) as client:
        first = await client.post("/hooks/github", content=body, headers=headers)
        again = await client.post("/hooks/github", content=body, headers=headers)
        # The captured body under a fresh delivery id: the same signed content, refused.
        renamed = await client.post("/hooks/github", content=body, headers=github(body))
        # A forged request reusing a future delivery's id does not burn that id.
        next_id = str(uuid.uuid4())
        later = body.replace(SHA.encode(), b"a" * 40)
        forged = await client.post(
            "/hooks/github", content=later, headers=github(later, delivery=next_id, key="nope")
        )
        genuine = await client.post(
            "/hooks/github", content=later, headers=github(later, delivery=next_id)
        )
    assert first.status_code == 202 and again.status_code == 409
    assert renamed.status_code == 409 and "signed payload" in renamed.json()["error"]
    assert forged.status_code == 401 and genuine.status_code == 202
    assert len(handle.pushes) == 2


async def test_authentic_deliveries_with_nothing_to_do_are_200_ignored(
    handle: FakeHandle, settings: ServerSettings
) -> None:
    ping = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    tag = github_push("refs/tags/v1.0")
    unfollowed = github_push("refs/heads/feature")
    async with asgi_client(handle, settings) as client:
        answers = [
            await client.post("/hooks/github", content=ping, headers=github(ping, event="ping")),
            await client.post("/hooks/github", content=tag, headers=github(tag)),
            await client.post("/hooks/github", content=unfollowed, headers=github(unfollowed)),
        ]
    for answer in answers:
        assert answer.status_code == 200 and set(answer.json()) == {"ignored"}
    assert "no source follows branch feature" in answers[2].json()["ignored"]
    assert [p[1] for p in handle.pushes] == ["feature"] * 3  # every URL of it was asked


async def test_gitlab_push_with_its_token(handle: FakeHandle, settings: ServerSettings) -> None:
    url = "https://gitlab.example/acme/infra.git"
    handle.followed.add((url, "main"))
    body = json.dumps(
        {
            "object_kind": "push",
            "ref": "refs/heads/main",
            "after": SHA,
            "project": {
                "git_http_url": url,
                "git_ssh_url": "git@gitlab.example:acme/infra.git",
            },
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Gitlab-Event": "Push Hook",
        "X-Gitlab-Event-UUID": str(uuid.uuid4()),
    }
    async with asgi_client(handle, settings) as client:
        accepted = await client.post(
            "/hooks/gitlab", content=body, headers={**headers, "X-Gitlab-Token": SECRET}
        )
        wrong = await client.post(
            "/hooks/gitlab",
            content=body,
            headers={**headers, "X-Gitlab-Event-UUID": "other", "X-Gitlab-Token": "guess"},
        )
    assert accepted.status_code == 202 and wrong.status_code == 401
    assert handle.pushes == [(url, "main", SHA)]


async def test_gitea_push_with_its_signature(handle: FakeHandle, settings: ServerSettings) -> None:
    url = "https://gitea.example/acme/infra.git"
    handle.followed.add((url, "main"))
    body = json.dumps(
        {"ref": "refs/heads/main", "after": SHA, "repository": {"clone_url": url}}
    ).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Gitea-Event": "push",
        "X-Gitea-Delivery": str(uuid.uuid4()),
        "X-Gitea-Signature": signature,
    }
    async with asgi_client(handle, settings) as client:
        answer = await client.post("/hooks/gitea", content=body, headers=headers)
    assert answer.status_code == 202
    assert handle.pushes == [(url, "main", SHA)]


async def test_only_configured_forges_are_served(
    handle: FakeHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAZAI_TEST_HOOK_SECRET", SECRET)
    settings = ServerSettings(
        webhooks=(WebhookSetting("github", SecretRef(env="FAZAI_TEST_HOOK_SECRET")),)
    )
    body = github_push()
    async with asgi_client(handle, settings) as client:
        gitlab = await client.post(
            "/hooks/gitlab", content=body, headers={"X-Gitlab-Token": SECRET}
        )
    assert gitlab.status_code == 404 and handle.pushes == []


async def test_webhooks_need_no_bearer_token(
    handle: FakeHandle, settings: ServerSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.unit.server.serverkit import TOKEN_SETTINGS, with_tokens

    with_tokens(monkeypatch)
    handle.followed.add((REPO, "main"))
    body = github_push()
    settings = ServerSettings(tokens=TOKEN_SETTINGS, webhooks=settings.webhooks)
    async with asgi_client(handle, settings) as client:
        answer = await client.post("/hooks/github", content=body, headers=github(body))
        api = await client.post("/api/v1/reconcile")
    assert answer.status_code == 202 and api.status_code == 401
