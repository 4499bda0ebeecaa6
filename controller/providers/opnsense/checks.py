"""Validation rules of the OPNsense kinds that their schemas cannot express."""

from __future__ import annotations

from collections.abc import Iterator

from controller.model.crosscheck import CheckContext
from controller.model.diagnostics import Diagnostic, Severity
from controller.model.document import Document
from controller.model.state import target_nodes
from controller.providers.opnsense import naming

LINUX_ONLY = (
    "address",
    "port",
    "user",
    "auth",
    "knownHostsFile",
    "hostKeyChecking",
    "commandTimeout",
)


def check_node(doc: Document, context: CheckContext) -> Iterator[Diagnostic]:
    for field in ("url", "apiKeyRef", "apiSecretRef"):
        if field not in doc.spec:
            yield Diagnostic(
                doc.location(("spec",)),
                f"an opnsense Node needs {field!r}",
                doc.subject,
                "spec",
            )
    for field in LINUX_ONLY:
        if field in doc.spec:
            yield Diagnostic(
                doc.location(("spec", field)),
                f"{field!r} applies to linux nodes, not opnsense ones",
                doc.subject,
                f"spec.{field}",
            )


def check_alias(doc: Document, context: CheckContext) -> Iterator[Diagnostic]:
    spec = doc.spec
    explicit = doc.raw is None or ("spec", "name") in doc.raw.positions
    for problem in naming.alias_name_problems(spec["name"]):
        if not explicit:
            # The name came from metadata.name, where hyphens are the norm and invalid here.
            problem = f"metadata.name is not a valid alias name; set spec.name: {problem}"
        where = ("spec", "name") if explicit else ("metadata", "name")
        yield Diagnostic(doc.location(where), problem, doc.subject, "spec.name")
    for index, entry in enumerate(spec.get("content", [])):
        entry_problem = naming.alias_entry_problem(spec["type"], str(entry))
        if entry_problem:
            yield Diagnostic(
                doc.location(("spec", "content", index)),
                f"{entry_problem} (type {spec['type']})",
                doc.subject,
                f"spec.content[{index}]",
            )
    yield from _duplicate_alias_names(doc, context)


def _duplicate_alias_names(doc: Document, context: CheckContext) -> Iterator[Diagnostic]:
    mine = set(target_nodes(doc, context.nodes))
    for other in context.of_kind("FirewallAlias"):
        if other is doc:
            break
        shared = mine & set(target_nodes(other, context.nodes))
        if other.spec["name"] == doc.spec["name"] and shared:
            yield Diagnostic(
                doc.location(("spec", "name")),
                f"alias name {doc.spec['name']!r} is also used by {other.subject} at "
                f"{other.location(('spec', 'name'))} on node {sorted(shared)[0]!r}",
                doc.subject,
                "spec.name",
            )


def check_rule(doc: Document, context: CheckContext) -> Iterator[Diagnostic]:
    spec = doc.spec
    aliases = _alias_names_for(doc, context)
    for side in ("source", "destination"):
        end = spec.get(side, {})
        net = str(end.get("net", "any"))
        net_problem = _net_problem(net, spec["ipprotocol"])
        if net_problem:
            yield _at(doc, (side, "net"), net_problem)
        elif naming.classify_net(net) == "alias" and net not in aliases:
            yield _unknown_alias(doc, (side, "net"), net)
        if "port" not in end:
            continue
        port = str(end["port"])
        if str(spec["protocol"]).upper() not in naming.PORT_PROTOCOLS:
            yield _at(
                doc,
                (side, "port"),
                f"ports can only be used with TCP, UDP or TCP/UDP, not {spec['protocol']!r}",
            )
        elif not (naming.is_port(port) or naming.port_range(port, "-") or naming.is_service(port)):
            if not naming.is_alias_name(port):
                message = f"{port!r} is not a port, a range like 8000-8080, a service or an alias"
                yield _at(doc, (side, "port"), message)
            elif port not in aliases:
                yield _unknown_alias(doc, (side, "port"), port)


def _net_problem(net: str, ipprotocol: str) -> str | None:
    """An address whose family the rule's ipprotocol cannot match."""
    network = naming.address(net) if naming.classify_net(net) == "address" else None
    if network is None:
        return None
    family = naming.family_of(ipprotocol)
    if family is None:
        return (
            f"{net!r} is an IPv{network.version} address, but ipprotocol inet46 matches "
            "both families; use inet or inet6"
        )
    if network.version != family:
        return f"{net!r} is an IPv{network.version} address, but ipprotocol is {ipprotocol}"
    return None


def _at(doc: Document, path: tuple[str, ...], message: str) -> Diagnostic:
    return Diagnostic(doc.location(("spec", *path)), message, doc.subject, "spec." + ".".join(path))


def _unknown_alias(doc: Document, path: tuple[str, str], name: str) -> Diagnostic:
    # The firewall may hold the alias already: only the live read can say. Plan turns
    # this into an error when the firewall does not have it either.
    return Diagnostic(
        doc.location(("spec", *path)),
        f"alias {name!r} is not in the desired state; it must already exist on the firewall",
        doc.subject,
        f"spec.{'.'.join(path)}",
        Severity.WARNING,
    )


def _alias_names_for(doc: Document, context: CheckContext) -> set[str]:
    nodes = set(target_nodes(doc, context.nodes))
    return {
        a.spec["name"]
        for a in context.of_kind("FirewallAlias")
        if nodes & set(target_nodes(a, context.nodes))
    }


def check_host_override(doc: Document, context: CheckContext) -> Iterator[Diagnostic]:
    spec = doc.spec
    rr = spec["rr"]
    need = {"A": ("server",), "AAAA": ("server",), "MX": ("mx", "mxprio"), "TXT": ("txtdata",)}[rr]
    for field in need:
        if field not in spec:
            yield Diagnostic(
                doc.location(("spec",)), f"a {rr} record needs {field!r}", doc.subject, "spec"
            )
    if rr in ("A", "AAAA") and "server" in spec:
        network = naming.address(spec["server"])
        version = 4 if rr == "A" else 6
        if network is None or "/" in spec["server"] or network.version != version:
            message = f"{spec['server']!r} is not an IPv{version} address, as an {rr} record needs"
            yield _at(doc, ("server",), message)
