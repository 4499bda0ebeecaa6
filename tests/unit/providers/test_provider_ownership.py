"""Each platform answers for its own records: the kinds its Ownership prunes or releases
are its own kinds, and each prunable kind's record comes back as an absent document's
fields (the engine asks, it does not know the platform)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller import providers
from controller.model import kinds
from controller.providers.base import Importer, SharedReader
from controller.providers.opnsense.identity import object_uuid
from controller.store import OwnedObject

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def owned(node: str, kind: str, name: str, platform_id: str) -> OwnedObject:
    return OwnedObject(node, kind, name, platform_id, None, NOW)


@pytest.mark.parametrize("platform", providers.PLATFORMS)
def test_a_platform_prunes_and_releases_only_its_own_kinds(platform: str) -> None:
    provider = providers.for_platform(platform)
    registered = [kinds.get(name) for name in kinds.names()]
    own = {k.name for k in registered if k is not None and k.platform == platform}
    ownership = provider.ownership
    assert ownership.prunable_kinds and ownership.prunable_kinds <= own
    assert ownership.released_kinds <= own
    assert not ownership.prunable_kinds & ownership.released_kinds
    assert isinstance(provider, SharedReader)


def test_linux_records_are_their_keys() -> None:
    ownership = providers.for_platform("linux").ownership
    absent = {
        kind: ownership.absent(owned("web-1", kind, "x", key))
        for kind, key in [
            ("File", "/etc/motd"),
            ("Package", "nginx"),
            ("User", "deploy"),
            ("NftTable", "inet filter"),
            ("Sysctl", "net.ipv4.ip_forward"),
        ]
    }
    assert {k: dict(a.fields) for k, a in absent.items() if a} == {
        "File": {"path": "/etc/motd"},
        "Package": {"name": "nginx"},
        "User": {"name": "deploy"},
        "NftTable": {"family": "inet", "name": "filter"},
        "Sysctl": {"key": "net.ipv4.ip_forward"},
    }
    sysctl = absent["Sysctl"]
    assert sysctl is not None and sysctl.note is not None and "running value" in sysctl.note
    assert ownership.recorded("web-1", owned("web-1", "File", "x", "/etc/motd")) is None


def test_an_adopted_rule_is_bound_by_its_recorded_uuid_and_a_created_one_is_not() -> None:
    ownership = providers.for_platform("opnsense").ownership
    adopted = "3f1f0a54-8d1c-4a52-9a8e-2f0b8e7c1d11"
    made = object_uuid("fw", "FirewallRule", "ssh")
    assert ownership.recorded("fw", owned("fw", "FirewallRule", "ssh", adopted)) == adopted
    assert ownership.recorded("fw", owned("fw", "FirewallRule", "ssh", made)) is None
    assert ownership.recorded("fw", owned("fw", "FirewallAlias", "web", f"web@{adopted}")) is None
    assert isinstance(providers.for_platform("opnsense"), Importer)
    assert not isinstance(providers.for_platform("linux"), Importer)
