from __future__ import annotations

from datetime import UTC, datetime

from controller.store import Command, OwnedObject, StateStore, Trigger


def test_owning_listing_and_disowning(store: StateStore) -> None:
    run_id = store.start_run(Trigger.CLI, Command.APPLY, "src", None)
    store.own("fw-1", "FirewallAlias", "web_servers", "6f1c-uuid", run_id)
    store.own("fw-1", "FirewallAlias", "admins", "0a2b-uuid", run_id)
    store.own("web-1", "File", "motd", "/etc/motd", run_id)

    owned = store.owned("fw-1")

    assert [(o.name, o.platform_id) for o in owned] == [
        ("admins", "0a2b-uuid"),
        ("web_servers", "6f1c-uuid"),
    ]
    assert owned[0].run_id == run_id
    assert owned[0].created == datetime(2025, 1, 1, 0, 0, 3, tzinfo=UTC)
    assert store.is_owned("fw-1", "FirewallAlias", "admins")
    # Ownership is per node and per kind.
    assert not store.is_owned("fw-2", "FirewallAlias", "admins")
    assert not store.is_owned("fw-1", "HostOverride", "admins")

    assert store.disown("fw-1", "FirewallAlias", "admins") is True
    assert store.disown("fw-1", "FirewallAlias", "admins") is False
    assert not store.is_owned("fw-1", "FirewallAlias", "admins")
    assert [o.name for o in store.owned("fw-1")] == ["web_servers"]
    assert store.owned("nowhere") == []


def test_owning_again_records_the_new_object(store: StateStore) -> None:
    first = store.start_run(Trigger.CLI, Command.APPLY, "src", None)
    second = store.start_run(Trigger.CLI, Command.APPLY, "src", None)
    store.own("fw-1", "FirewallAlias", "a", "uuid-1", first)

    store.own("fw-1", "FirewallAlias", "a", "uuid-2", second)

    (only,) = store.owned("fw-1")
    assert (only.platform_id, only.run_id) == ("uuid-2", second)
    assert isinstance(only, OwnedObject)
