"""Pull requests FazAI opens itself, through the production clients and the local forge."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller.errors import ForgeApiError, ForgeAuthError, ForgeError
from controller.forges.base import ForgeClient
from controller.forges.clients import open_client
from controller.forges.http import ForgeTarget
from controller.secrets import Secret
from controller.testing.forges import ForgeServer

FORGES = ["github", "gitlab", "gitea"]
BRANCHES = {"main", "fazai/resolve/a", "fazai/resolve/b"}


@pytest.fixture(params=FORGES)
def forge(request: pytest.FixtureRequest) -> Iterator[ForgeServer]:
    with ForgeServer(request.param, repo="acme/infra", pulls=[7], branches=lambda: BRANCHES) as s:
        yield s


def client(server: ForgeServer, token: str | None = None) -> ForgeClient:
    target = ForgeTarget(server.forge, server.api_url, Secret(token or server.token), timeout=5)
    return open_client(target, "acme/infra")


def _text(pull: dict[str, object]) -> object:
    return pull.get("description", pull.get("body"))


async def test_a_pull_request_is_opened_found_and_updated(forge: ForgeServer) -> None:
    async with client(forge) as api:
        assert await api.find_pull_request("fazai/resolve/a") is None
        made = await api.create_pull_request("fazai/resolve/a", "main", "Resolve a", "body 1")
        found = await api.find_pull_request("fazai/resolve/a", "main")
        edited = await api.update_pull_request(made.number, "Resolve a (v2)", "body 2")
    assert made.number == 8  # after the pull request the forge already had
    assert (made.head, made.base, made.title, made.body) == (
        "fazai/resolve/a", "main", "Resolve a", "body 1",
    )  # fmt: skip
    assert made.url and str(made.number) in made.url
    assert found == made
    assert (edited.number, edited.title, edited.body) == (8, "Resolve a (v2)", "body 2")
    (pull,) = forge.pull_requests()
    assert (pull["title"], _text(pull)) == ("Resolve a (v2)", "body 2")


async def test_propose_twice_opens_one_pull_request(forge: ForgeServer) -> None:
    async with client(forge) as api:
        first = await api.propose("fazai/resolve/a", "main", "Resolve a", "one")
        same = await api.propose("fazai/resolve/a", "main", "Resolve a", "one")
        changed = await api.propose("fazai/resolve/a", "main", "Resolve a", "two")
        other = await api.propose("fazai/resolve/b", "main", "Resolve b", "b")
    assert first.created and not same.created and not changed.created and other.created
    assert first.pull.number == same.pull.number == changed.pull.number != other.pull.number
    assert [_text(p) for p in forge.pull_requests()] == ["two", "b"]
    posts = [r for r in forge.requests if r.method == "POST"]
    assert len(posts) == 2


async def test_a_closed_pull_request_is_not_reused(forge: ForgeServer) -> None:
    async with client(forge) as api:
        first = await api.propose("fazai/resolve/a", "main", "Resolve a", "one")
        forge.close_pull_request(first.pull.number)
        assert await api.find_pull_request("fazai/resolve/a") is None
        again = await api.propose("fazai/resolve/a", "main", "Resolve a", "one")
    assert again.created and again.pull.number != first.pull.number


async def test_the_forge_refuses_a_second_open_one_for_the_same_branch(forge: ForgeServer) -> None:
    async with client(forge) as api:
        await api.create_pull_request("fazai/resolve/a", "main", "Resolve a", "one")
        with pytest.raises(ForgeApiError) as caught:
            await api.create_pull_request("fazai/resolve/a", "main", "Resolve a", "one")
    assert caught.value.status in (409, 422)
    assert len(forge.pull_requests()) == 1


async def test_a_branch_the_repository_lacks_is_refused(forge: ForgeServer) -> None:
    async with client(forge) as api:
        with pytest.raises(ForgeApiError):
            await api.create_pull_request("fazai/resolve/never-pushed", "main", "x", "y")
    assert forge.pull_requests() == []


async def test_a_refused_token_is_said_without_the_token(forge: ForgeServer) -> None:
    wrong = "wrong-token-0123456789"
    async with client(forge, wrong) as api:
        with pytest.raises(ForgeAuthError) as caught:
            await api.propose("fazai/resolve/a", "main", "Resolve a", "one")
    assert wrong not in str(caught.value)


async def test_a_create_that_failed_on_the_forge_is_looked_up_again(forge: ForgeServer) -> None:
    forge.fail(502, method="POST", path="pull" if forge.forge != "gitlab" else "merge_requests")
    async with client(forge) as api:
        proposed = await api.propose("fazai/resolve/a", "main", "Resolve a", "one")
    assert proposed.created
    assert len(forge.pull_requests()) == 1


async def test_a_body_too_long_for_the_forge_is_refused_before_sending(forge: ForgeServer) -> None:
    async with client(forge) as api:
        with pytest.raises(ForgeError, match="characters"):
            await api.propose("fazai/resolve/a", "main", "t", "x" * (api.max_comment_chars + 1))
    assert forge.requests == []


async def test_many_open_pull_requests_are_paged_through(forge: ForgeServer) -> None:
    names = {f"fazai/resolve/g{i}" for i in range(60)}
    forge.app.branches = lambda: BRANCHES | names
    async with client(forge) as api:
        for name in sorted(names):
            await api.create_pull_request(name, "main", name, "")
        last = sorted(names)[-1]  # opened last: on the second page where it is paged
        found = await api.find_pull_request(last)
    assert found is not None and found.head == last
    pages = [r for r in forge.requests if r.method == "GET" and r.query.get("page") == "2"]
    assert bool(pages) == (forge.forge == "gitea")  # the others filter by branch
