"""Prune: inventory entries -> absent documents that resolve to the same objects.

The desired states are real loads of YAML; the inventory entries are what apply records
(see engine/apply.py ``_record_ownership``): the instance key where the kind has one
(path, package, user, alias name, sysctl key, "family name"), else metadata.name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.diagnostics import Severity
from controller.engine import prune
from controller.model import kinds, loader
from controller.model.state import DesiredState
from controller.providers.opnsense.identity import object_uuid, parse_alias_record
from controller.source.open import open_source
from controller.store import OwnedObject, StateStore

FW = {
    "apiVersion": "fazai.dev/v1alpha1",
    "kind": "Node",
    "metadata": {"name": "fw"},
    "spec": {
        "platform": "opnsense",
        "url": "https://fw.example.net",
        "apiKeyRef": {"env": "FW_KEY"},
        "apiSecretRef": {"env": "FW_SECRET"},
    },
}
WEB = {
    "apiVersion": "fazai.dev/v1alpha1",
    "kind": "Node",
    "metadata": {"name": "web-1"},
    "spec": {"platform": "linux", "address": "192.0.2.10"},
}
NOW = datetime(2026, 1, 1, tzinfo=UTC)
UUID = "3f1f0a54-8d1c-4a52-9a8e-2f0b8e7c1d11"
OWNED_ALIAS = f"old_hosts@{UUID}"


def doc(kind: str, doc_name: str, /, node: str = "fw", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": doc_name},
        "spec": {"target": {"node": node}, **spec},
    }


def load(tmp_path: Path, *docs: dict[str, Any]) -> DesiredState:
    (tmp_path / "docs.yaml").write_text(yaml.safe_dump_all([FW, WEB, *docs], sort_keys=False))
    return loader.load(open_source(str(tmp_path)))


def owned(node: str, kind: str, name: str, platform_id: str) -> OwnedObject:
    return OwnedObject(node, kind, name, platform_id, 1, NOW)


def absent_specs(pruning: prune.Pruning, before: DesiredState) -> dict[tuple[str, str], Any]:
    extra = pruning.state.resources[len(before.resources) :]
    return {(d.kind, d.name): dict(d.spec) for d in extra}


@pytest.mark.parametrize(
    ("node", "kind", "name", "platform_id", "identity"),
    [
        ("web-1", "File", "motd", "/etc/motd", {"path": "/etc/motd"}),
        ("web-1", "Package", "telnet", "telnetd", {"name": "telnetd"}),
        ("web-1", "User", "deploy", "deploy", {"name": "deploy"}),
        ("web-1", "NftTable", "filter", "inet fazai", {"family": "inet", "name": "fazai"}),
        ("web-1", "Sysctl", "fwd", "net.ipv4.ip_forward", {"key": "net.ipv4.ip_forward"}),
        # An alias as apply records it: its name and the uuid the firewall gave it (the
        # absent document reaches that alias only)...
        ("fw", "FirewallAlias", "old-hosts", OWNED_ALIAS, {"name": "old_hosts", "uuid": UUID}),
        # ...or, recorded by an earlier FazAI, its name alone (any alias of that name).
        ("fw", "FirewallAlias", "older", "older_hosts", {"name": "older_hosts", "uuid": None}),
        # What apply records for rules and host overrides today: metadata.name...
        ("fw", "FirewallRule", "block-old", "block-old", {}),
        ("fw", "HostOverride", "mail", "mail", {}),
        # ...or the uuid FazAI derives from it: both reach the same object.
        ("fw", "FirewallRule", "block-x", object_uuid("fw", "FirewallRule", "block-x"), {}),
        ("fw", "HostOverride", "smtp", object_uuid("fw", "HostOverride", "smtp"), {}),
    ],
)
def test_each_prunable_kind_becomes_an_absent_document_for_the_same_object(
    tmp_path: Path, node: str, kind: str, name: str, platform_id: str, identity: Any
) -> None:
    state = load(tmp_path)
    pruning = prune.plan(state, {node: [owned(node, kind, name, platform_id)]}, [node])
    (spec,) = absent_specs(pruning, state).values()
    assert {k: spec.get(k) for k in identity} == identity
    assert spec["state"] == "absent" and spec["target"] == {"node": node}
    assert pruning.notes == () and pruning.releases == ()
    document = pruning.state.resources[-1]
    assert (document.kind, document.name) == (kind, name)
    registered = kinds.get(kind)
    assert registered is not None
    if registered.instance_key is not None:
        # The absent document claims exactly the object the inventory recorded.
        key = parse_alias_record(platform_id)[0] if kind == "FirewallAlias" else platform_id
        assert registered.instance_key(document.spec) == key
    assert pruning.state.resources_for(node)[-1] is document


def test_described_objects_and_other_nodes_are_left_alone(tmp_path: Path) -> None:
    state = load(tmp_path, doc("FirewallAlias", "web", name="web", type="host",
                               content=["10.0.0.1"]))  # fmt: skip
    inventory = {
        "fw": [owned("fw", "FirewallAlias", "web", "web")],
        "web-1": [owned("web-1", "File", "motd", "/etc/motd")],
    }
    pruning = prune.plan(state, inventory, ["fw"])
    assert pruning.state is state  # nothing to prune on fw; web-1 is not pruned
    assert absent_specs(pruning, state) == {}


def test_a_rule_an_apply_adopted_is_pruned_by_its_uuid(tmp_path: Path) -> None:
    """An entry at another uuid than the derived one is an object a document adopted
    (spec.adopt.uuid, or a host override found by its key): the absent document names
    that uuid in spec.uuid, a field no user document may carry, never spec.adopt (which
    validate refuses with state: absent), so the delete reaches it and nothing else."""
    state = load(tmp_path)
    adopted = "0b9a5f38-0000-4000-8000-000000000000"
    pruning = prune.plan(state, {"fw": [owned("fw", "FirewallRule", "r", adopted)]}, ["fw"])
    (document,) = [d for d in pruning.state.resources_for("fw") if d.kind == "FirewallRule"]
    assert (document.spec["state"], document.spec["uuid"]) == ("absent", adopted)
    assert "adopt" not in document.spec
    assert pruning.notes == ()


def test_a_rule_recorded_as_something_no_document_would_reach_is_not_pruned(
    tmp_path: Path,
) -> None:
    state = load(tmp_path)
    stray = "rule-17"
    pruning = prune.plan(state, {"fw": [owned("fw", "FirewallRule", "r", stray)]}, ["fw"])
    assert absent_specs(pruning, state) == {}
    assert pruning.notes == (
        f"fw: FirewallRule/r is owned as {stray!r}, which a document of that name would "
        "not reach; not pruned",
    )


def test_a_kind_with_no_delete_is_noted(tmp_path: Path) -> None:
    state = load(tmp_path)
    pruning = prune.plan(state, {"fw": [owned("fw", "Gadget", "g", "g")]}, ["fw"])
    assert pruning.notes == ("fw: Gadget/g is owned but cannot be pruned",)
    assert pruning.state is state


def test_a_record_of_another_platforms_kind_is_never_pruned(tmp_path: Path) -> None:
    # The node's own provider says what its records mean: a firewall rule recorded for a
    # Linux node (its platform changed under the same name) names nothing there.
    state = load(tmp_path)
    rule = owned("web-1", "FirewallRule", "r", object_uuid("web-1", "FirewallRule", "r"))
    package = owned("fw", "Package", "nginx", "nginx")
    pruning = prune.plan(state, {"web-1": [rule], "fw": [package]}, ["fw", "web-1"])
    assert pruning.state is state
    assert pruning.notes == (
        "fw: Package/nginx is owned but cannot be pruned",
        "web-1: FirewallRule/r is owned but cannot be pruned",
    )


def test_a_pruned_service_is_released_and_the_plan_says_so(tmp_path: Path) -> None:
    state = load(tmp_path)
    entry = owned("web-1", "Service", "nginx", "nginx")
    pruning = prune.plan(state, {"web-1": [entry]}, ["web-1"])
    assert absent_specs(pruning, state) == {}  # nothing on the node is changed
    assert pruning.releases == (prune.Release("web-1", "Service", "nginx", "nginx"),)
    (warning,) = pruning.state.warnings
    assert warning.severity is Severity.WARNING
    assert str(warning) == (
        "node web-1: warning: Service/nginx: no document describes it any more: released, "
        "left as it is"
    )


def test_a_pruned_sysctl_plan_says_the_running_value_stays(tmp_path: Path) -> None:
    state = load(tmp_path)
    entry = owned("web-1", "Sysctl", "fwd", "net.ipv4.ip_forward")
    pruning = prune.plan(state, {"web-1": [entry]}, ["web-1"])
    (warning,) = pruning.state.warnings
    assert "net.ipv4.ip_forward leaves /etc/sysctl.d/99-fazai.conf" in warning.message
    assert "running value stays as it is" in warning.message


def test_an_object_a_renamed_document_describes_is_handed_over_not_deleted(
    tmp_path: Path,
) -> None:
    state = load(
        tmp_path,
        doc("File", "banner", node="web-1", path="/etc/motd", content="hi\n"),
        doc("FirewallAlias", "web-tier", name="web_servers", type="host", content=["10.0.0.1"]),
    )
    inventory = {
        "web-1": [owned("web-1", "File", "motd", "/etc/motd")],
        "fw": [owned("fw", "FirewallAlias", "web-servers", "web_servers")],
    }
    pruning = prune.plan(state, inventory, ["fw", "web-1"])
    assert absent_specs(pruning, state) == {}
    assert {(r.node, r.kind, r.name, r.platform_id, r.successor) for r in pruning.releases} == {
        ("web-1", "File", "motd", "/etc/motd", "banner"),
        ("fw", "FirewallAlias", "web-servers", "web_servers", "web-tier"),
    }
    assert all("handed over to" in w.message for w in pruning.state.warnings)


def test_a_renamed_rule_or_override_bound_to_its_object_takes_the_record_over(
    tmp_path: Path,
) -> None:
    """Rules and overrides are claimed by the uuid they bind, not by name: a renamed
    document that binds the owned object (spec.adopt.uuid: FazAI's derived uuid of the
    old name, or the uuid an apply adopted) is handed the record; nothing is deleted."""
    made = object_uuid("fw", "HostOverride", "app")
    hand = "0b9a5f38-0000-4000-8000-000000000000"
    state = load(
        tmp_path,
        doc(
            "HostOverride",
            "app-renamed",
            hostname="app",
            domain="example.internal",
            server="10.0.10.50",
            adopt={"uuid": made},
        ),
        doc("FirewallRule", "allow-https", interface="lan", adopt={"uuid": hand}),
    )
    inventory = {
        "fw": [
            owned("fw", "HostOverride", "app", made),
            owned("fw", "FirewallRule", "https", hand),
        ]
    }
    pruning = prune.plan(state, inventory, ["fw"])
    assert absent_specs(pruning, state) == {}
    assert {(r.kind, r.name, r.platform_id, r.successor) for r in pruning.releases} == {
        ("HostOverride", "app", made, "app-renamed"),
        ("FirewallRule", "https", hand, "allow-https"),
    }


def test_two_records_of_one_object_make_one_delete(tmp_path: Path) -> None:
    state = load(tmp_path)
    inventory = {
        "fw": [
            owned("fw", "FirewallAlias", "old-a", "old_hosts"),
            owned("fw", "FirewallAlias", "old-b", "old_hosts"),
        ]
    }
    pruning = prune.plan(state, inventory, ["fw"])
    assert list(absent_specs(pruning, state)) == [("FirewallAlias", "old-a")]
    (duplicate,) = pruning.releases
    assert (duplicate.name, duplicate.successor) == ("old-b", None)
    assert duplicate.outcome == "deleted as FirewallAlias/old-a"


def test_an_explicit_absent_document_is_not_doubled(tmp_path: Path) -> None:
    state = load(tmp_path, doc("FirewallAlias", "bye", name="old_hosts", state="absent"))
    inventory = {"fw": [owned("fw", "FirewallAlias", "old-hosts", "old_hosts")]}
    pruning = prune.plan(state, inventory, ["fw"])
    assert absent_specs(pruning, state) == {}
    # The explicit document deletes it; the old record just goes (no handover to a delete).
    (record,) = pruning.releases
    assert (record.name, record.successor) == ("old-hosts", None)
    assert record.outcome == "deleted as FirewallAlias/bye"


def test_release_touches_only_nodes_that_converged(tmp_path: Path) -> None:
    releases = [
        prune.Release("web-1", "Service", "nginx", "nginx"),
        prune.Release("web-1", "File", "motd", "/etc/motd", "banner", "handed over to File/banner"),
        prune.Release("web-2", "Service", "cron", "cron"),
    ]
    with StateStore(tmp_path / "state.db") as store:
        for node, kind, name, key in [
            ("web-1", "Service", "nginx", "nginx"),
            ("web-1", "File", "motd", "/etc/motd"),
            ("web-2", "Service", "cron", "cron"),
        ]:
            store.own(node, kind, name, key, None)
        done = prune.release(store, releases, ["web-1"], run_id=None)
        assert done == [
            "web-1: Service/nginx released, left as it is",
            "web-1: File/motd handed over to File/banner",
        ]
        assert [(o.kind, o.name, o.platform_id) for o in store.owned("web-1")] == [
            ("File", "banner", "/etc/motd")
        ]
        assert [(o.kind, o.name) for o in store.owned("web-2")] == [("Service", "cron")]


def test_a_handover_keeps_the_record_the_successor_already_has(tmp_path: Path) -> None:
    # The renamed document's alias was written by this very apply (someone had replaced
    # FazAI's alias, so its record named a uuid that is gone): the fresh record wins.
    old = "web@11111111-1111-4111-8111-111111111111"
    fresh = "web@22222222-2222-4222-8222-222222222222"
    releases = [prune.Release("fw", "FirewallAlias", "web-old", old, "web", "handed over")]
    with StateStore(tmp_path / "state.db") as store:
        store.own("fw", "FirewallAlias", "web-old", old, None)
        store.own("fw", "FirewallAlias", "web", fresh, None)
        prune.release(store, releases, ["fw"])
        assert [(o.name, o.platform_id) for o in store.owned("fw")] == [("web", fresh)]


def test_prune_nodes_follow_the_flag_or_the_node_setting(tmp_path: Path) -> None:
    pruning_fw = yaml.safe_load(yaml.safe_dump(FW))
    pruning_fw["spec"]["prune"] = True
    (tmp_path / "docs.yaml").write_text(yaml.safe_dump_all([pruning_fw, WEB]))
    state = loader.load(open_source(str(tmp_path)))
    assert prune.prune_nodes(state, False) == ["fw"]
    assert prune.prune_nodes(state, True) == ["fw", "web-1"]
