"""The production forge clients against the local forge, over real HTTP on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller.errors import (
    ForgeAuthError,
    ForgeError,
    ForgeNotFoundError,
    ForgeUnavailableError,
)
from controller.forges import comment
from controller.forges.base import CommitState, ForgeClient
from controller.forges.clients import open_client
from controller.forges.http import ForgeTarget
from controller.secrets import Secret
from controller.testing.forges import ForgeServer

FORGES = ["github", "gitlab", "gitea"]
SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"
AUTH = {"github": "Bearer", "gitlab": "PRIVATE-TOKEN", "gitea": "token"}


@pytest.fixture(params=FORGES)
def forge(request: pytest.FixtureRequest) -> Iterator[ForgeServer]:
    with ForgeServer(request.param, repo="acme/infra", pulls=[7, 8]) as server:
        yield server


def client(server: ForgeServer, token: str | None = None, repo: str = "acme/infra") -> ForgeClient:
    target = ForgeTarget(server.forge, server.api_url, Secret(token or server.token), timeout=5)
    return open_client(target, repo)


async def test_first_push_creates_the_comment_later_pushes_update_it(forge: ForgeServer) -> None:
    forge.add_comment(7, "LGTM, but please check the firewall rule")
    async with client(forge) as api:
        first = await api.upsert_comment(7, "### FazAI plan: 1 to create")
        second = await api.upsert_comment(7, "### FazAI plan: 2 to create")
    assert first.created and not second.created
    assert second.comment.id == first.comment.id
    ours = [c for c in forge.comments(7) if comment.is_ours(c["body"], comment.MARKER)]
    assert len(ours) == 1
    assert ours[0]["body"] == f"{comment.MARKER}\n### FazAI plan: 2 to create"
    assert len(forge.comments(7)) == 2  # the human's comment is untouched
    methods = [r.method for r in forge.requests]
    assert methods == ["GET", "POST", "GET", {"gitlab": "PUT"}.get(forge.forge, "PATCH")]
    assert {r.auth for r in forge.requests} == {AUTH[forge.forge]}


async def test_same_plan_again_changes_nothing(forge: ForgeServer) -> None:
    async with client(forge) as api:
        await api.upsert_comment(8, "in sync")
        again = await api.upsert_comment(8, "in sync")
    assert not again.created
    assert [r.method for r in forge.requests] == ["GET", "POST", "GET"]


async def test_comment_keys_keep_two_plans_apart(forge: ForgeServer) -> None:
    async with client(forge) as api:
        await api.upsert_comment(7, "infra plan", comment.marker("infra"))
        await api.upsert_comment(7, "edge plan", comment.marker("edge"))
        await api.upsert_comment(7, "infra plan v2", comment.marker("infra"))
    bodies = sorted(c["body"] for c in forge.comments(7))
    assert bodies == [
        "<!-- fazai:plan:edge -->\nedge plan",
        "<!-- fazai:plan:infra -->\ninfra plan v2",
    ]


async def test_our_comment_on_a_later_page_is_found(forge: ForgeServer) -> None:
    for i in range(130):
        forge.add_comment(7, f"comment {i}")
    async with client(forge) as api:
        first = await api.upsert_comment(7, "plan one")
    for i in range(130, 260):
        forge.add_comment(7, f"comment {i}")
    async with client(forge) as api:
        second = await api.upsert_comment(7, "plan two")
    assert not second.created and second.comment.id == first.comment.id
    assert sum(comment.is_ours(c["body"], comment.MARKER) for c in forge.comments(7)) == 1
    lists = [r for r in forge.requests if r.method == "GET"]
    if forge.forge == "gitea":
        # Gitea and Forgejo answer this endpoint whole: one request each time.
        assert len(lists) == 2
    else:
        # 130 before ours: ours is the 131st, on page 2 of 100; the second search stops there.
        assert [r.query.get("page") for r in lists] == ["1", "2", "1", "2"]
        assert all(r.query.get("per_page") == "100" for r in lists)


async def test_a_marker_not_on_the_first_line_is_not_ours(forge: ForgeServer) -> None:
    forge.add_comment(7, f"> quoting the bot:\n> {comment.MARKER}\n> plan")
    async with client(forge) as api:
        result = await api.upsert_comment(7, "plan")
    assert result.created
    assert len(forge.comments(7)) == 2


async def test_status_on_the_head_sha(forge: ForgeServer) -> None:
    async with client(forge) as api:
        await api.set_status(SHA, CommitState.PENDING, "planning against the live nodes")
        await api.set_status(
            SHA,
            CommitState.SUCCESS,
            "2 to create, 1 to update " + "x" * 200,
            target_url="https://ci.example/run/1",
        )
    statuses = forge.statuses(SHA)
    state_key = "status" if forge.forge in ("gitlab", "gitea") else "state"
    name_key = "name" if forge.forge == "gitlab" else "context"
    latest = statuses[-1]
    assert latest[state_key] == "success"
    assert latest[name_key] == "fazai/plan"
    assert latest["target_url"] == "https://ci.example/run/1"
    assert len(latest["description"]) == 140 and latest["description"].endswith("…")
    posts = [r for r in forge.requests if r.method == "POST"]
    assert all(r.path.endswith(f"/statuses/{SHA}") for r in posts)
    assert posts[0].body["state"] == "pending"


async def test_failure_and_error_states(forge: ForgeServer) -> None:
    async with client(forge) as api:
        await api.set_status(SHA, CommitState.FAILURE, "invalid documents")
        await api.set_status(SHA[:12], CommitState.ERROR, "edge-fw unreachable")
    sent = [r.body["state"] for r in forge.requests]
    expected = {"gitlab": ["failed", "failed"]}.get(forge.forge, ["failure", "error"])
    assert sent == expected


async def test_pending_twice_is_not_an_error(forge: ForgeServer) -> None:
    # GitLab refuses pending -> pending with a 400; the client takes it as already done.
    async with client(forge) as api:
        await api.set_status(SHA, CommitState.PENDING, "planning")
        await api.set_status(SHA, CommitState.PENDING, "planning")
        await api.set_status(SHA, CommitState.SUCCESS, "in sync")
    assert [r.status for r in forge.requests][:1] == [201]
    if forge.forge == "gitlab":
        assert [r.status for r in forge.requests] == [201, 400, 201]


async def test_unauthorized_names_the_forge_never_the_token(forge: ForgeServer) -> None:
    wrong = "wrong-" + forge.token[::-1]
    async with client(forge, token=wrong) as api:
        with pytest.raises(ForgeAuthError) as caught:
            await api.upsert_comment(7, "plan")
    message = str(caught.value)
    assert message.startswith(f"{forge.forge}: the token was refused (401")
    assert wrong not in message and forge.token not in message
    assert wrong not in repr(caught.value.__dict__)
    assert caught.value.status == 401
    assert not caught.value.retryable
    assert len(forge.requests) == 1  # a refused token is not tried again


async def test_unknown_pull_request_is_not_found(forge: ForgeServer) -> None:
    async with client(forge) as api:
        with pytest.raises(ForgeNotFoundError) as caught:
            await api.upsert_comment(99, "plan")
    assert caught.value.status == 404
    assert "/99/" in caught.value.path or "99" in str(caught.value)


async def test_server_errors_on_reads_are_retried(forge: ForgeServer) -> None:
    forge.fail(502, method="GET", times=2)
    async with client(forge) as api:
        result = await api.upsert_comment(7, "plan")
    assert result.created
    assert [r.status for r in forge.requests] == [502, 502, 200, 201]


async def test_a_failed_create_is_not_repeated_blindly(forge: ForgeServer) -> None:
    # The POST fails with a 503: the upsert lists again (the comment did not land) and
    # creates it once.
    forge.fail(503, method="POST", times=1)
    async with client(forge) as api:
        result = await api.upsert_comment(7, "plan")
    assert result.created
    assert [(r.method, r.status) for r in forge.requests] == [
        ("GET", 200),
        ("POST", 503),
        ("GET", 200),
        ("POST", 201),
    ]
    assert len(forge.comments(7)) == 1


async def test_lasting_outage_is_retryable_error(forge: ForgeServer) -> None:
    forge.fail(503, times=100)
    async with client(forge) as api:
        with pytest.raises(ForgeUnavailableError) as caught:
            await api.set_status(SHA, CommitState.SUCCESS, "ok")
    assert caught.value.retryable and caught.value.status == 503
    assert len(forge.requests) == 3


async def test_unreachable_forge() -> None:
    with ForgeServer("github") as server:
        url, token = server.api_url, server.token
    target = ForgeTarget("github", url, Secret(token), timeout=2)
    async with open_client(target, "acme/infra") as api:
        with pytest.raises(ForgeUnavailableError) as caught:
            await api.set_status(SHA, CommitState.SUCCESS, "ok")
    assert "cannot reach http://127.0.0.1:" in str(caught.value)
    assert token not in str(caught.value)


async def test_too_long_comment_is_refused_before_sending() -> None:
    with ForgeServer("github", pulls=[7]) as server:
        async with client(server) as api:
            with pytest.raises(ForgeError, match="at most 65536"):
                await api.upsert_comment(7, "x" * 70_000)
        assert server.requests == []


async def test_gitlab_project_path_is_url_encoded_and_numbers_work() -> None:
    with ForgeServer("gitlab", repo="acme/net/infra", pulls=[3]) as server:
        async with client(server, repo="acme/net/infra") as api:
            await api.upsert_comment(3, "plan")
        async with client(server, repo="4711") as api:
            updated = await api.upsert_comment(3, "plan v2")
    assert not updated.created
    assert server.requests[0].path == "/api/v4/projects/acme%2Fnet%2Finfra/merge_requests/3/notes"
    assert server.requests[-1].path.startswith("/api/v4/projects/4711/merge_requests/3/notes/")
    assert server.requests[0].query["sort"] == "asc"


async def test_gitlab_system_notes_are_skipped() -> None:
    with ForgeServer("gitlab", pulls=[3]) as server:
        server.add_comment(3, f"{comment.MARKER}\nforged by a system note", system=True)
        async with client(server) as api:
            result = await api.upsert_comment(3, "plan")
    assert result.created


def test_repository_forms_are_checked() -> None:
    target = ForgeTarget("github", "http://127.0.0.1:1", Secret("t"))
    with pytest.raises(ValueError, match="OWNER/NAME"):
        open_client(target, "just-a-name")
    with pytest.raises(ValueError, match="unknown forge"):
        open_client(ForgeTarget("bitbucket", "http://x", Secret("t")), "a/b")
    gitlab = ForgeTarget("gitlab", "http://127.0.0.1:1", Secret("t"))
    with pytest.raises(ValueError, match="GROUP/PROJECT"):
        open_client(gitlab, "../etc")


async def test_bad_sha_is_refused_before_sending() -> None:
    with ForgeServer("gitea") as server:
        async with client(server) as api:
            with pytest.raises(ValueError, match="not a commit SHA"):
                await api.set_status("main", CommitState.SUCCESS, "ok")
        assert server.requests == []
