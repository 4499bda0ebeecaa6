"""``state: absent`` on the OPNsense kinds and Sysctl, as ``fazai validate`` reads it.

An absent document names an object to delete: it needs only what identifies the object,
and nothing that stays on the firewall may use an alias that one deletes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from controller.diagnostics import Diagnostic, Severity
from controller.errors import InvalidInputError
from controller.model import kinds, loader
from controller.source.open import open_source

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


def doc(kind: str, doc_name: str, /, node: str = "fw", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": doc_name},
        "spec": {"target": {"node": node}, **spec},
    }


def load(tmp_path: Path, *docs: dict[str, Any]) -> tuple[list[str], list[Diagnostic]]:
    """(the error lines, every diagnostic) of loading FW, WEB and ``docs``."""
    (tmp_path / "docs.yaml").write_text(yaml.safe_dump_all([FW, WEB, *docs], sort_keys=False))
    try:
        state = loader.load(open_source(str(tmp_path)))
    except InvalidInputError as exc:
        found = list(exc.diagnostics)
        return [str(d) for d in found if d.severity is Severity.ERROR], found
    return [], list(state.warnings)


def at(tmp_path: Path, text: str, after: str = "") -> str:
    """``LINE:COL`` of the first line holding ``text`` (after the first holding ``after``),
    the column of its key."""
    lines = (tmp_path / "docs.yaml").read_text().splitlines()
    start = next(i for i, t in enumerate(lines) if after in t) if after else 0
    number, line = next((i, t) for i, t in enumerate(lines[start:], start + 1) if text in t)
    return f"{number}:{len(line) - len(line.lstrip()) + 1}"


def test_absent_firewall_objects_need_only_their_identity(tmp_path: Path) -> None:
    errors, found = load(
        tmp_path,
        doc("FirewallAlias", "old-hosts", name="old_hosts", state="absent"),
        doc("FirewallRule", "block-old", state="absent"),
        doc("HostOverride", "mail", state="absent"),
        doc("Sysctl", "fwd", node="web-1", key="net.ipv4.ip_forward", state="absent"),
    )
    assert errors == [] and found == []


def test_absent_documents_may_keep_their_other_fields(tmp_path: Path) -> None:
    # Flipping state on a full document is the natural edit: what else it says is ignored.
    errors, _ = load(
        tmp_path,
        doc("FirewallAlias", "old-hosts", name="old_hosts", type="host",
            content=["192.0.2.7"], state="absent"),
        doc("FirewallRule", "block-old", action="block", interface="wan",
            source={"net": "old_hosts"}, state="absent"),
        doc("HostOverride", "mail", hostname="mail", domain="example.net",
            server="10.0.10.20", state="absent"),
    )  # fmt: skip
    assert errors == []


def test_present_objects_still_need_what_they_write(tmp_path: Path) -> None:
    errors, _ = load(
        tmp_path,
        doc("FirewallAlias", "hosts", name="hosts", content=["10.0.0.1"]),
        doc("FirewallRule", "allow"),
        doc("HostOverride", "www", rr="A", server="10.0.0.1"),
        doc("Sysctl", "fwd", node="web-1", key="net.ipv4.ip_forward"),
    )
    assert sorted(e.split(": ", 1)[1] for e in errors) == [
        "FirewallAlias/hosts: spec: a present FirewallAlias needs 'type' (host, network, "
        "port, url, ...)",
        "FirewallRule/allow: spec: a present FirewallRule needs 'interface', the interface(s) "
        "it applies to, like lan",
        "HostOverride/www: spec: a present HostOverride needs 'domain'",
        "HostOverride/www: spec: a present HostOverride needs 'hostname'",
        "Sysctl/fwd: spec: a present Sysctl needs 'value'",
    ]


def test_an_absent_sysctl_takes_no_value(tmp_path: Path) -> None:
    errors, _ = load(
        tmp_path, doc("Sysctl", "fwd", node="web-1", key="net.ipv4.ip_forward", value=1,
                      state="absent"),
    )  # fmt: skip
    assert errors == [
        f"docs.yaml:{at(tmp_path, 'value: 1')}: Sysctl/fwd: spec.value: an absent Sysctl "
        "takes no 'value': absent removes the key from /etc/sysctl.d/99-fazai.conf and "
        "leaves its running value as it is"
    ]


def test_a_rule_using_an_alias_the_state_deletes_is_an_error_at_its_field(
    tmp_path: Path,
) -> None:
    errors, _ = load(
        tmp_path,
        doc("FirewallAlias", "old-hosts", name="old_hosts", state="absent"),
        doc("FirewallAlias", "old-ports", name="old_ports", type="port", content=["8080"],
            state="absent"),
        doc("FirewallRule", "block-old", action="block", interface="wan", protocol="TCP",
            source={"net": "old_hosts"}, destination={"port": "old_ports"}),
    )  # fmt: skip
    hosts_state = at(tmp_path, "state: absent")
    ports_state = at(tmp_path, "state: absent", after="old_ports")
    net = at(tmp_path, "net: old_hosts")
    port = at(tmp_path, "port: old_ports")
    assert errors == [
        f"docs.yaml:{net}: FirewallRule/block-old: spec.source.net: alias 'old_hosts' is "
        f"deleted by FirewallAlias/old-hosts (state: absent, at docs.yaml:{hosts_state}); "
        "the firewall refuses to delete an alias still in use: drop this use, or keep the "
        "alias",
        f"docs.yaml:{port}: FirewallRule/block-old: spec.destination.port: alias "
        f"'old_ports' is deleted by FirewallAlias/old-ports (state: absent, at "
        f"docs.yaml:{ports_state}); the firewall refuses to delete an alias still in "
        "use: drop this use, or keep the alias",
    ]


def test_an_alias_nesting_a_deleted_alias_is_an_error(tmp_path: Path) -> None:
    errors, _ = load(
        tmp_path,
        doc("FirewallAlias", "inner", name="inner", state="absent"),
        doc("FirewallAlias", "outer", name="outer", type="host",
            content=["10.0.0.1", "inner"]),
    )  # fmt: skip
    assert len(errors) == 1
    assert "FirewallAlias/outer: spec.content[1]: alias 'inner' is deleted by " in errors[0]


def test_an_absent_rule_may_use_an_absent_alias(tmp_path: Path) -> None:
    # Both go: the rule first, then the alias.
    errors, found = load(
        tmp_path,
        doc("FirewallAlias", "old-hosts", name="old_hosts", state="absent"),
        doc("FirewallRule", "block-old", interface="wan", source={"net": "old_hosts"},
            state="absent"),
    )  # fmt: skip
    assert errors == [] and found == []


def test_an_alias_absent_on_another_node_does_not_count(tmp_path: Path) -> None:
    other = {**FW, "metadata": {"name": "fw-2"}}
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    errors, found = load(
        tmp_path,
        doc("FirewallAlias", "old-hosts", node="fw-2", name="old_hosts", state="absent"),
        doc("FirewallAlias", "old-hosts-here", name="old_hosts", type="host",
            content=["192.0.2.7"]),
        doc("FirewallRule", "block-old", interface="wan", source={"net": "old_hosts"}),
    )  # fmt: skip
    assert errors == [] and found == []


def test_every_kind_that_deletes_has_a_state_with_present_as_default() -> None:
    for name in ("FirewallAlias", "FirewallRule", "HostOverride", "Sysctl"):
        kind = kinds.get(name)
        assert kind is not None
        state = kind.spec_schema["properties"]["state"]
        assert state["enum"] == ["present", "absent"] and state["default"] == "present"
    service = kinds.get("Service")
    assert service is not None and "state" not in service.spec_schema["properties"]
