"""Who may approve, on the real Approvals registry over real HTTP: a re-offer by another
trigger keeps the approval and adds its actors; node scopes are judged by the labels of
the plan and those the node had when last in sync; a nameless approval and a two-person
plan without tokens are refused."""

from __future__ import annotations

import secrets as stdlib_secrets
from collections.abc import Mapping

import httpx
import pytest

from controller.model.document import Document
from controller.model.state import DesiredState
from controller.plan.diff import Action, Change
from controller.plan.items import NodePlan, Plan, PlanItem
from controller.reconcile.actors import Actors, is_actor
from controller.reconcile.controller import Controller
from controller.reconcile.handle import ApprovalRefused, PendingApproval
from controller.server.settings import (
    Role,
    SecretRef,
    ServerSettings,
    TokenScope,
    TokenSetting,
)
from controller.source.tree import SourceTree
from controller.store import StateStore
from tests.unit.server import test_server_approval_quorum as quorum
from tests.unit.server.serverkit import bearer, serving
from tests.unit.server.test_server_approval_quorum import SETTINGS, applies

controller = quorum.controller  # the fixtures: a running controller, the tokens' values
values = quorum.values

ALICE = "Alice Doe <alice@example.com>"


def offer(
    controller: Controller,
    required: int = 1,
    actor: str | Actors = "",
    error: str = "unreachable (test)",
    site: str = "lisbon",
    revision: str = "c0ffee",
) -> PendingApproval:
    """A plan for one node whose read failed: applying it records a run (the node
    failed, nothing is written). ``error`` tells plans apart."""
    # Port 1 on loopback refuses at once: the fresh read before applying fails fast.
    spec = {"platform": "linux", "address": "127.0.0.1", "port": 1, "user": "root"}
    node = Document("Node", "web-1", spec, {"site": site})
    state = DesiredState(SourceTree("git::/srv/infra@main", revision, {}, {}), {"web-1": node}, [])
    item = PlanItem(
        "web-1", "Sysctl", "net.ipv4.ip_forward", Action.UPDATE, (Change("value", "0", error),)
    )
    plan = Plan("infra", revision, (NodePlan("web-1", "linux", items=(item,), error=error),))
    return controller.approvals_registry.offer(
        "infra", state, plan, None, required=required, reasons=("two people",), actor=actor
    )


async def test_a_retrigger_by_someone_else_keeps_the_approval_and_adds_its_actor(
    controller: Controller, store: StateStore, values: dict[str, str]
) -> None:
    first = offer(controller, 2, actor=Actors(author=ALICE))
    async with (
        serving(controller, SETTINGS) as url,  # type: ignore[arg-type]
        httpx.AsyncClient(base_url=url) as client,
    ):

        async def approve(approval: str, name: str) -> httpx.Response:
            path = f"/api/v1/approvals/{approval}/approve"
            return await client.post(path, headers=bearer(values[name]), json={})

        assert (await approve(first.id, "alice")).status_code == 403  # her own commit
        assert (await approve(first.id, "carol")).status_code == 202
        # The same plan, offered again by a pass bob asked for through the API.
        second = offer(controller, 2, actor=Actors(("bob",), ALICE))
        assert second.id == first.id
        assert second.approved_by == ("carol",)  # carol's approval still counts
        assert set(second.actors) == {"bob", ALICE}
        refused = await approve(second.id, "alice")
        assert refused.status_code == 403, refused.text
        assert (await approve(second.id, "bob")).status_code == 403
        assert applies(store) == 0
        done = await approve(second.id, "dave")
        assert done.status_code == 200, done.text
    assert applies(store) == 1


async def test_an_approver_who_triggers_the_plan_again_no_longer_counts(
    controller: Controller, store: StateStore, values: dict[str, str]
) -> None:
    first = offer(controller, 2, actor=Actors(author=ALICE))
    async with (
        serving(controller, SETTINGS) as url,  # type: ignore[arg-type]
        httpx.AsyncClient(base_url=url) as client,
    ):
        path = f"/api/v1/approvals/{first.id}/approve"
        assert (await client.post(path, headers=bearer(values["bob"]), json={})).status_code == 202
        again = offer(controller, 2, actor=Actors(("bob",), ALICE))
        assert (again.id, again.approved_by) == (first.id, ())
        assert (await client.post(path, headers=bearer(values["bob"]), json={})).status_code == 403
    assert applies(store) == 0


async def test_approvals_given_to_one_plan_do_not_count_for_the_next(
    controller: Controller, store: StateStore, values: dict[str, str]
) -> None:
    a = offer(controller, 2, error="A")
    async with (
        serving(controller, SETTINGS) as url,  # type: ignore[arg-type]
        httpx.AsyncClient(base_url=url) as client,
    ):
        r = await client.post(
            f"/api/v1/approvals/{a.id}/approve", headers=bearer(values["bob"]), json={}
        )
        assert r.json()["approvedBy"] == ["bob"]
        b = offer(controller, 2, error="B")
        assert b.id != a.id and b.approved_by == ()
        assert offer(controller, 2, error="B").id == b.id
        r = await client.post(
            f"/api/v1/approvals/{a.id}/approve", headers=bearer(values["carol"]), json={}
        )
        assert r.status_code == 404  # replaced
        r = await client.post(
            f"/api/v1/approvals/{b.id}/approve", headers=bearer(values["carol"]), json={}
        )
        assert (r.status_code, r.json()["approvedBy"]) == (202, ["carol"])
    assert applies(store) == 0


@pytest.fixture
def lisbon(monkeypatch: pytest.MonkeyPatch) -> tuple[str, ServerSettings]:
    value = stdlib_secrets.token_hex(16)
    monkeypatch.setenv("FAZAI_ACT_LISBON", value)
    scope = TokenScope(nodes=(("site", "lisbon"),))
    token = TokenSetting("lisbon-oncall", Role.APPROVER, SecretRef(env="FAZAI_ACT_LISBON"), scope)
    return value, ServerSettings(tokens=(token,))


def settle(controller: Controller, labels: Mapping[str, str] | None) -> None:
    """What a pass that left web-1 in sync with these labels records."""
    if labels is None:
        controller.shared.settled.pop(("infra", "web-1"), None)
    else:
        controller.shared.settled[("infra", "web-1")] = dict(labels)


async def test_a_commit_cannot_relabel_a_node_into_a_lower_trust_approvers_scope(
    controller: Controller, store: StateStore, lisbon: tuple[str, ServerSettings]
) -> None:
    value, settings = lisbon
    async with (
        serving(controller, settings) as url,  # type: ignore[arg-type]
        httpx.AsyncClient(base_url=url) as client,
    ):

        async def approve(approval: PendingApproval) -> httpx.Response:
            path = f"/api/v1/approvals/{approval.id}/approve"
            return await client.post(path, headers=bearer(value), json={})

        settle(controller, {"site": "porto"})
        relabelled = offer(controller, site="lisbon", revision="r2")  # moved by the commit
        refused = await approve(relabelled)
        assert refused.status_code == 403
        assert "when last in sync" in refused.json()["error"]
        listed = (await client.get("/api/v1/approvals", headers=bearer(value))).json()
        assert listed["approvals"] == []

        settle(controller, {"site": "lisbon"})
        moved_out = offer(controller, site="porto", revision="r3")
        assert (await approve(moved_out)).status_code == 403

        settle(controller, None)  # never seen in sync (a restart): no selector matches
        unknown = offer(controller, site="lisbon", revision="r4")
        assert (await approve(unknown)).status_code == 403
        assert applies(store) == 0

        settle(controller, {"site": "lisbon"})
        stays = offer(controller, site="lisbon", revision="r5")
        assert (await approve(stays)).status_code == 200
    assert applies(store) == 1


async def test_without_tokens_a_two_person_plan_is_a_409_that_says_why(
    controller: Controller, store: StateStore
) -> None:
    a = offer(controller, 2)
    async with (
        serving(controller, ServerSettings()) as url,  # type: ignore[arg-type]
        httpx.AsyncClient(base_url=url) as client,
    ):
        r = await client.post(f"/api/v1/approvals/{a.id}/approve", json={})
        assert r.status_code == 409
        assert "no tokens configured" in r.json()["error"]
        assert controller.approvals()[0].approved_by == ()
        one = offer(controller, 1, error="one person")
        done = await client.post(f"/api/v1/approvals/{one.id}/approve", json={})
        assert done.status_code == 200, done.text
    assert applies(store) == 1


async def test_an_approval_without_a_name_is_refused_and_counts_nothing(
    controller: Controller, store: StateStore
) -> None:
    a = offer(controller, 2, actor="bob")
    with pytest.raises(ApprovalRefused, match="approver's name"):
        await controller.approve(a.id, "")
    assert controller.approvals()[0].approved_by == ()
    assert await controller.approve(a.id, "carol") is None
    with pytest.raises(ApprovalRefused):
        await controller.approve(a.id, "bob")
    assert applies(store) == 0


@pytest.mark.parametrize(
    ("actors", "name", "identities", "expected"),
    [
        ((ALICE,), "ops-alice", (), False),  # the name rule cannot tell
        ((ALICE,), "ops-alice", ("ALICE@example.com",), True),
        ((ALICE,), "ops-alice", ("alice doe",), True),
        ((ALICE,), "ops-alice", ("bob@example.com",), False),
        ((ALICE,), "alice", (), True),  # the local part: erring towards refusing
        (("bob",), "Bob", (), True),
        (("bob",), "carol", ("bob",), True),
        (("Carol <c@x.example>", "bob"), "dave", ("c@x.example",), True),
        ((), "alice", ("alice@example.com",), False),
    ],
)
def test_an_approver_is_an_actor_by_its_identities_or_its_name(
    actors: tuple[str, ...], name: str, identities: tuple[str, ...], expected: bool
) -> None:
    assert is_actor(actors, name, identities) is expected


def test_the_signer_of_a_commit_is_one_of_its_actors() -> None:
    signed = Actors(
        ("bob",), ALICE, ALICE, "SSH signature by ops@example.invalid", "ops@example.invalid"
    )
    assert signed.names == ("bob", ALICE, "ops@example.invalid")
    assert is_actor(signed.names, "carol", ("OPS@example.invalid",))
    assert str(signed) == f"{ALICE} [SSH signature by ops@example.invalid] (requested by bob)"
