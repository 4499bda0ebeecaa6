"""Validation rules of the OPNsense kinds that their schemas cannot express."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from controller.diagnostics import Diagnostic, Severity, format_path
from controller.model.crosscheck import CheckContext
from controller.model.document import Document
from controller.model.state import target_nodes
from controller.providers.opnsense import naming
from controller.providers.opnsense.references import NOT_NESTING

LINUX_ONLY = (
    "address",
    "port",
    "user",
    "auth",
    "knownHostsFile",
    "hostKeyChecking",
    "commandTimeout",
    "maxFileBytes",
)


_NEEDED = {
    "url": "the web interface's address, like https://fw.example.net",
    "apiKeyRef": "where to read the API key: {env: NAME} or {file: PATH}",
    "apiSecretRef": "where to read the API secret: {env: NAME} or {file: PATH}",
}


def check_node(doc: Document, context: CheckContext) -> Iterator[Diagnostic]:
    for field, what in _NEEDED.items():
        if field not in doc.spec:
            yield Diagnostic(
                doc.location(("spec",)),
                f"an opnsense Node needs {field!r}, {what}",
                doc.subject,
                "spec",
            )
    if "url" in doc.spec:
        url_problem = _url_problem(doc.spec["url"])
        if url_problem:
            yield _at(doc, ("url",), url_problem)
    for field in ("apiKeyRef", "apiSecretRef"):
        # Exactly one of env/file. The schema could say it (min/maxProperties 1), but only
        # in jsonschema's words ("{} should be non-empty"); here it says what to write.
        ref = doc.spec.get(field)
        if ref is not None and len(ref) != 1:
            message = (
                f"{field} names both 'env' and 'file'; keep one"
                if ref
                else f"{field} is empty; give {{env: NAME}} or {{file: PATH}}"
            )
            yield _at(doc, (field,), message)
    for field in LINUX_ONLY:
        if field in doc.spec:
            yield Diagnostic(
                doc.location(("spec", field)),
                f"{field!r} applies to linux nodes, not opnsense ones",
                doc.subject,
                f"spec.{field}",
            )


def _url_problem(url: str) -> str | None:
    """Why ``url`` cannot be the base URL of a firewall's web interface.

    Checked here rather than by a schema pattern: a pattern can only say "not valid",
    and a URL holding credentials must be refused without echoing it.
    """
    example = "like https://fw.example.net"
    authority = url.split("://", 1)[-1].partition("/")[0]
    if "@" in authority:
        # Before any message that repeats the url: this one holds what may be the API key
        # and secret.
        return (
            "credentials in the url are refused; give them by reference with apiKeyRef and "
            "apiSecretRef"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return f"{url!r} is not a valid URL; write the web interface's address, {example}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL; write the web interface's address, {example}"
    if any(c.isspace() for c in url):
        return f"{url!r} contains white space"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return f"{url!r} has a query or fragment; give the base URL, {example}"
    return None


def _present(doc: Document) -> bool:
    return str(doc.spec.get("state", "present")) == "present"


def _needs(doc: Document, fields: tuple[str, ...], what: str) -> Iterator[Diagnostic]:
    """Fields a present object needs (an absent one is identified without them)."""
    for field in fields:
        if field not in doc.spec:
            yield Diagnostic(
                doc.location(("spec",)),
                f"a present {doc.kind} needs {field!r}{what}",
                doc.subject,
                "spec",
            )


def check_alias(doc: Document, context: CheckContext) -> Iterator[Diagnostic]:
    spec = doc.spec
    explicit = doc.raw is None or ("spec", "name") in doc.raw.positions
    for problem in naming.alias_name_problems(spec["name"]):
        if explicit:
            yield _at(doc, ("name",), problem)
            continue
        # The name came from metadata.name, where hyphens are the norm and invalid here:
        # point at metadata.name and say what to write instead.
        suggestion = re.sub(r"[^A-Za-z0-9_]", "_", doc.name)
        hint = "" if naming.alias_name_problems(suggestion) else f", e.g. spec.name: {suggestion}"
        yield Diagnostic(
            doc.location(("metadata", "name")),
            f"the alias name defaults to metadata.name, and {problem}; set spec.name{hint}",
            doc.subject,
            "spec.name",
        )
    if not _present(doc):
        return  # deleted by name: what else it says is not used
    yield from _needs(doc, ("type",), " (host, network, port, url, ...)")
    if "type" not in spec:
        return
    yield from _duplicates(doc, "content")
    deleted = _aliases_for(doc, context).absent
    for index, entry in enumerate(spec.get("content", [])):
        entry_problem = naming.alias_entry_problem(spec["type"], str(entry))
        if entry_problem:
            yield Diagnostic(
                doc.location(("spec", "content", index)),
                f"{entry_problem} (type {spec['type']})",
                doc.subject,
                f"spec.content[{index}]",
            )
        elif str(entry) in deleted and spec["type"] not in NOT_NESTING:
            yield _uses_deleted(doc, ("content", index), str(entry), deleted[str(entry)])
    # Two aliases of one name on one node: the generic conflict check reports them, as
    # FirewallAlias's instance key is its name; a second message here would repeat it.


def _duplicates(doc: Document, field: str) -> Iterator[Diagnostic]:
    """Entries given twice in a list field (443 and "443" are the same entry).

    The firewall keeps one of each, so a document with a duplicate would never read back
    equal: every plan would show the same change again.
    """
    values = doc.spec.get(field)
    if not isinstance(values, list):
        return
    first: dict[str, int] = {}
    for index, value in enumerate(values):
        text = str(value)
        if text in first:
            yield Diagnostic(
                doc.location(("spec", field, index)),
                f"{text!r} is listed twice (also at {field}[{first[text]}]); keep one",
                doc.subject,
                f"spec.{field}[{index}]",
            )
        else:
            first[text] = index


def check_rule(doc: Document, context: CheckContext) -> Iterator[Diagnostic]:
    spec = doc.spec
    if not _present(doc):
        return  # deleted by its identity (node, kind, metadata.name)
    yield from _needs(doc, ("interface",), ", the interface(s) it applies to, like lan")
    yield from _duplicates(doc, "interface")
    known = _aliases_for(doc, context)
    aliases, deleted = known.present, known.absent
    for side in ("source", "destination"):
        end = spec.get(side, {})
        net = str(end.get("net", "any"))
        net_problem = _net_problem(net, spec["ipprotocol"])
        if net_problem:
            yield _at(doc, (side, "net"), net_problem)
        elif naming.classify_net(net) == "alias" and not naming.is_alias_name(net):
            # Neither an address nor a possible alias: a typo ("10.0.0.300") must not pass
            # as a warning about an alias that is not in the desired state.
            yield _at(doc, (side, "net"), _bad_net(net))
        elif naming.classify_net(net) == "alias" and net in deleted:
            yield _uses_deleted(doc, (side, "net"), net, deleted[net])
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
        elif not (
            naming.is_port(port) or naming.port_range(port, "-") or naming.is_rule_port_name(port)
        ):
            if not naming.is_alias_name(port):
                yield _at(doc, (side, "port"), _bad_port(port))
            elif port in deleted:
                yield _uses_deleted(doc, (side, "port"), port, deleted[port])
            elif port not in aliases:
                yield _unknown_alias(doc, (side, "port"), port)


def _bad_port(port: str) -> str:
    if naming.port_range(port, ":"):
        # An alias's syntax: rules write ranges the other way.
        low, _, high = port.partition(":")
        return f"{port!r}: port ranges in a rule are written with '-', like {low}-{high}"
    return f"{port!r} is not a port (1-65535), a range like 8000-8080, a service or an alias"


def _bad_net(net: str) -> str:
    if "," in net:
        return f"{net!r}: one value per side; put several addresses in an alias"
    return (
        f"{net!r} is not any, an address, a network (CIDR), an interface network "
        "(lan, lanip, opt1, ...) or an alias name"
    )


def _net_problem(net: str, ipprotocol: str) -> str | None:
    """An address whose family the rule's ipprotocol cannot match."""
    network = naming.address(net) if naming.classify_net(net) == "address" else None
    if network is None:
        return None
    what = f"an IPv{network.version} {'network' if '/' in net else 'address'}"
    family = naming.family_of(ipprotocol)
    if family is None:
        return f"{net!r} is {what}, but ipprotocol inet46 matches both families; use inet or inet6"
    if network.version != family:
        return f"{net!r} is {what}, but ipprotocol is {ipprotocol}"
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


def _uses_deleted(
    doc: Document, path: tuple[str | int, ...], name: str, alias: Document
) -> Diagnostic:
    return Diagnostic(
        doc.location(("spec", *path)),
        f"alias {name!r} is deleted by {alias.subject} (state: absent, at "
        f"{alias.location(('spec', 'state'))}); the firewall refuses to delete an alias "
        "still in use: drop this use, or keep the alias",
        doc.subject,
        format_path(("spec", *path)),
    )


@dataclass
class _Aliases:
    present: set[str] = dataclasses.field(default_factory=set)
    absent: dict[str, Document] = dataclasses.field(default_factory=dict)  # name -> its document


def _aliases_for(doc: Document, context: CheckContext) -> _Aliases:
    """The aliases desired (present) and deleted (absent) on the nodes ``doc`` targets;
    the per-node map is computed once per load. Read-only: it may be the shared map."""
    by_node: dict[str, _Aliases] | None = context.memo.get("aliases-by-node")
    if by_node is None:
        by_node = {}
        for alias in context.of_kind("FirewallAlias"):
            for node in target_nodes(alias, context.nodes):
                entry = by_node.setdefault(node, _Aliases())
                if _present(alias):
                    entry.present.add(alias.spec["name"])
                else:
                    entry.absent.setdefault(alias.spec["name"], alias)
        context.memo["aliases-by-node"] = by_node
    nodes = target_nodes(doc, context.nodes)
    if len(nodes) == 1:
        # The common case, and the only one for aliases in large states: no copy.
        return by_node.get(nodes[0]) or _Aliases()
    out = _Aliases()
    for node in nodes:
        found = by_node.get(node, _Aliases())
        out.present.update(found.present)
        for name, alias in found.absent.items():
            out.absent.setdefault(name, alias)
    return out


def check_host_override(doc: Document, context: CheckContext) -> Iterator[Diagnostic]:
    spec = doc.spec
    if not _present(doc):
        return  # deleted by its identity (node, kind, metadata.name)
    yield from _needs(doc, ("hostname", "domain"), "")
    rr = spec["rr"]
    need = {"A": ("server",), "AAAA": ("server",), "MX": ("mx", "mxprio"), "TXT": ("txtdata",)}[rr]
    article = "an" if rr in ("A", "MX") else "a"  # said "an A", "an MX", "a TXT"
    for field in need:
        if field not in spec:
            yield Diagnostic(
                doc.location(("spec",)),
                f"{article} {rr} record needs {field!r}",
                doc.subject,
                "spec",
            )
    if rr in ("A", "AAAA") and "server" in spec:
        network = naming.address(spec["server"])
        version = 4 if rr == "A" else 6
        if network is None or "/" in spec["server"] or network.version != version:
            message = (
                f"{spec['server']!r} is not an IPv{version} address, as {article} {rr} record needs"
            )
            yield _at(doc, ("server",), message)
    if rr == "MX" and "mx" in spec and not naming.is_domain(spec["mx"]):
        yield _at(doc, ("mx",), f"{spec['mx']!r} is not a host name, as an MX record needs")
