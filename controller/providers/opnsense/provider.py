"""The OPNsense provider: one firmware call plus one model read per object type."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from controller import secrets
from controller.model.document import Document
from controller.plan.diff import Observed
from controller.providers.base import Change, Observation, Part, Unmanaged
from controller.providers.opnsense import (
    adoption,
    essence,
    goals,
    importing,
    live,
    naming,
    references,
)
from controller.providers.opnsense.apply import OpnsenseTransaction
from controller.providers.opnsense.client import ApiTarget, OpnsenseClient
from controller.providers.opnsense.identity import alias_record
from controller.providers.opnsense.ownership import OWNERSHIP
from controller.source.tree import SourceTree
from controller.store.records import OwnedObject

_HTTP_PORTS = {"http": 80, "https": 443}
BUILTIN_TYPES = {"external", "internal"}  # bogons, sshlockout, interface nets: the system's


def api_target(node: Document) -> ApiTarget:
    spec = node.spec
    tls = spec.get("tls", {})
    verify: bool | str = bool(tls.get("verify", True))
    if verify and "caBundle" in tls:
        verify = os.path.expanduser(tls["caBundle"])
    return ApiTarget(
        node=node.name,
        url=spec["url"],
        key=secrets.resolve(spec["apiKeyRef"], node.name, "apiKeyRef"),
        secret=secrets.resolve(spec["apiSecretRef"], node.name, "apiSecretRef"),
        verify=verify,
        timeout=float(spec.get("requestTimeout", 30)),
    )


class OpnsenseProvider:
    platform = "opnsense"
    ownership = OWNERSHIP

    def machine_key(self, spec: Mapping[str, Any]) -> str | None:
        """``SCHEME://HOST:PORT/PATH`` of the API: the scheme's port spelled out."""
        url = spec.get("url")
        if not isinstance(url, str) or not url:
            return None
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        try:
            port = parts.port or _HTTP_PORTS.get(scheme, 0)
        except ValueError:
            port = 0
        host = (parts.hostname or "").lower()
        return f"{scheme}://{host}:{port}{parts.path.rstrip('/')}"

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.transport = transport  # a seam for tests; production uses real HTTP

    async def observe(
        self, node: Document, resources: Sequence[Document], tree: SourceTree
    ) -> Observation:
        async with OpnsenseClient(api_target(node), self.transport) as client:
            firewall = await live.read(client, kinds_for(resources), goals.paths(resources))
        return compare(node.name, resources, firewall)

    async def observe_many(self, node: Document, parts: Sequence[Part]) -> list[Observation]:
        """One bulk read of the object types any part uses; each part is then compared
        with the firewall restricted to its own types (as its own read would see it)."""
        wanted = [kinds_for(resources) for resources, _ in parts]
        checked = [goals.paths(resources) for resources, _ in parts]
        async with OpnsenseClient(api_target(node), self.transport) as client:
            firewall = await live.read(client, set().union(*wanted), set().union(*checked))
        out = []
        for (resources, _), kinds, paths in zip(parts, wanted, checked, strict=True):
            own = live.LiveFirewall(
                firewall.version,
                firewall.version_text,
                {k: v for k, v in firewall.items.items() if k in kinds},
                {p: v for p, v in firewall.checks.items() if p in paths},
            )
            out.append(compare(node.name, resources, own))
        return out

    async def unmanaged(
        self, node: Document, resources: Sequence[Document], tree: SourceTree
    ) -> tuple[Unmanaged, ...]:
        """Every object of every firewall kind that none of ``resources`` describes."""
        async with OpnsenseClient(api_target(node), self.transport) as client:
            firewall = await live.read(client, set(live.MODELS))
        objects = [d for d in resources if not goals.is_goal(d)]  # goals claim no object
        return compare(node.name, objects, firewall).unmanaged

    def import_spec(self, item: Unmanaged) -> tuple[str, dict[str, Any]]:
        """(a name hint, the spec) of a document describing ``item`` as it is."""
        return importing.spec(item)

    def owner(self, node: str, item: Unmanaged, owned: Sequence[OwnedObject]) -> OwnedObject | None:
        return OWNERSHIP.owner(node, item, owned)

    @contextlib.asynccontextmanager
    async def transaction(
        self,
        node: Document,
        changes: Sequence[Change],
        resources: Sequence[Document] = (),
        tree: SourceTree | None = None,
        *,
        controller_address: str | None = None,
        controller_interfaces: Sequence[str] | None = None,
    ) -> AsyncIterator[OpnsenseTransaction]:
        """``node``'s apply of ``changes``, with an API client open for its whole life
        (``resources`` and ``tree`` are accepted for the engine's one calling convention;
        the firewall's writes need only the documents in ``changes``):
        ``async with provider.transaction(node, changes) as txn: await txn.snapshot() ...``
        (with no changes, to roll back a stored snapshot after a crash)."""
        async with OpnsenseClient(api_target(node), self.transport) as client:
            yield OpnsenseTransaction(
                node,
                changes,
                client,
                controller_address=controller_address,
                controller_interfaces=controller_interfaces,
            )


def present(doc: Document) -> bool:
    return str(doc.spec.get("state", "present")) == "present"


def kinds_for(resources: Sequence[Document]) -> set[str]:
    """The object types a read for ``resources`` needs (all of them when no document is
    of a firewall type: the unmanaged listing wants them)."""
    kinds = {d.kind for d in resources if d.kind in live.MODELS} or set(live.MODELS)
    if any(d.kind == "FirewallAlias" and not present(d) for d in resources):
        kinds.add("FirewallRule")  # a deleted alias must be used by no remaining rule
    return kinds


def compare(node: str, resources: Sequence[Document], firewall: live.LiveFirewall) -> Observation:
    """Each document's desired and live essence (desired None: ``state: absent``), and
    the objects no document claims. A Goal binds no object: its checks' verdicts are
    its essence (see goals.py)."""
    objects = [d for d in resources if not goals.is_goal(d)]
    aliases_by_name = {
        str(item.get("name")): (uuid, item) for uuid, item in firewall.of("FirewallAlias").items()
    }
    desired_aliases = {d.spec["name"] for d in objects if d.kind == "FirewallAlias" and present(d)}
    known_aliases = desired_aliases | set(aliases_by_name)
    claimed: dict[tuple[str, str], list[Document]] = {}
    observed: dict[Document, Observed] = {}
    keys: dict[Document, references.Key] = {}
    for doc in objects:
        wanted = present(doc)
        adopted: str | None = None
        bind_error: str | None = None
        if doc.kind == "FirewallAlias":
            uuid, item = aliases_by_name.get(doc.spec["name"], ("", None))
            owned = doc.spec.get("uuid")  # a prune's: the alias FazAI created, and no other
            if owned and uuid != owned:
                uuid, item = str(owned), None
            named = adoption.explicit(doc.spec)
            if named and wanted and uuid != named:
                bind_error = (
                    f"spec.adopt.uuid {named}: the firewall has no alias "
                    f"{doc.spec['name']!r} with that uuid"
                    + (f" (its alias of that name is {uuid})" if uuid else "")
                )
            elif named and wanted:
                adopted = alias_record(str(doc.spec["name"]), uuid)
            live_essence = essence.live_alias(item) if item is not None else None
            desired = essence.desired_alias(doc.spec) if wanted else None
            key = references.alias_key(uuid, doc.spec["name"])
        else:
            binding = adoption.bind(node, doc, firewall.of(doc.kind))
            uuid, item = binding.uuid, binding.item
            adopted = binding.uuid if binding.adopted else None
            bind_error = binding.error
            to_live = essence.live_rule if doc.kind == "FirewallRule" else essence.live_host
            live_essence = to_live(item) if item is not None else None
            to_desired = (
                essence.desired_rule if doc.kind == "FirewallRule" else essence.desired_host
            )
            desired = to_desired(doc.spec) if wanted else None
            key = (doc.kind, uuid)
        if uuid:
            claimed.setdefault((doc.kind, uuid), []).append(doc)
        keys[doc] = key
        problem = bind_error
        if wanted and problem is None:
            problem = next(iter(_version_problems(doc, firewall)), None) or next(
                iter(_missing_aliases(doc, known_aliases)), None
            )
        elif (
            problem is None and item is not None and doc.kind == "FirewallAlias" and _builtin(item)
        ):
            problem = f"{doc.spec['name']!r} is one of the firewall's own aliases; never deleted"
        observed[doc] = Observed(desired, live_essence, problem, adopt=adopted)
    _refuse_shared_objects(observed, claimed)
    _refuse_aliases_in_use(observed, keys, firewall)
    for doc in resources:
        if goals.is_goal(doc):
            observed[doc] = goals.observe(doc, firewall.checks)
    return Observation(observed, tuple(_unmanaged(firewall, set(claimed))))


def _refuse_shared_objects(
    observed: dict[Document, Observed], claimed: Mapping[tuple[str, str], list[Document]]
) -> None:
    """Every document that resolves to an object another document resolves to is in
    error: the two would overwrite each other, or one would delete the other's (a prune
    of a renamed document whose new name finds the object by its key). Validate refuses
    what the documents alone show; this is what only the live firewall shows."""
    for (kind, uuid), docs in claimed.items():
        if len(docs) < 2:
            continue
        for doc in docs:
            others = ", ".join(d.subject for d in docs if d is not doc)
            if present(doc) and any(not present(d) for d in docs):
                message = (
                    f"the {kind} {uuid} this document binds would be deleted by {others} "
                    "(no document describes that name any more); if this document is that "
                    f"one renamed, add spec.adopt.uuid: {uuid} to hand the object over"
                )
            elif present(doc):
                message = f"binds the same {kind} {uuid} as {others}; keep one document"
            else:
                message = f"would delete the {kind} {uuid} that {others} binds; not deleted"
            if observed[doc].error is None:
                observed[doc] = dataclasses.replace(observed[doc], error=message)


def _refuse_aliases_in_use(
    observed: dict[Document, Observed],
    keys: Mapping[Document, references.Key],
    firewall: live.LiveFirewall,
) -> None:
    """An alias to delete that a remaining rule or alias still uses is an error of its
    document: the firewall would refuse the delete half-way through the apply."""
    deleting = [
        doc
        for doc, seen in observed.items()
        if doc.kind == "FirewallAlias"
        and seen.desired is None
        and seen.live is not None
        and seen.error is None
    ]
    if not deleting:
        return
    planned = {keys[d]: (d if present(d) else None) for d in observed}
    holders = references.holders_after(firewall, planned)
    for doc in deleting:
        name = str(doc.spec["name"])
        users = references.users_of(name, keys[doc], holders)
        if users:
            message = references.in_use_message(name, users)
            observed[doc] = dataclasses.replace(observed[doc], error=message)


def _builtin(item: Mapping[str, Any]) -> bool:
    return essence.one(item.get("type")) in BUILTIN_TYPES


def _version_problems(doc: Document, firewall: live.LiveFirewall) -> Iterable[str]:
    spec = doc.spec
    runs = f"this firewall runs {firewall.version_text}"
    needs: list[tuple[bool, tuple[int, int], str]] = []
    if doc.kind == "FirewallRule":
        needs = [
            (spec["direction"] == "any", (26, 1), "direction 'any'"),
            (int(spec.get("sequence", 1)) > 99999, (25, 7), "a sequence above 99999"),
            (spec["ipprotocol"] == "inet46", (25, 1), "ipprotocol inet46"),
            (str(spec["protocol"]).upper() == "TCP/UDP", (25, 1), "protocol TCP/UDP"),
        ]
    elif doc.kind == "HostOverride":
        needs = [(spec["rr"] == "TXT", (26, 1), "a TXT record")]
    for used, release, what in needs:
        if used and firewall.version < release:
            yield f"{what} needs OPNsense {release[0]}.{release[1]} or later; {runs}"


def _missing_aliases(doc: Document, known: set[str]) -> Iterable[str]:
    if doc.kind != "FirewallRule":
        return
    for side in ("source", "destination"):
        end = doc.spec.get(side, {})
        net = str(end.get("net", "any"))
        names = [net] if naming.classify_net(net) == "alias" else []
        port = str(end.get("port", ""))
        if port and not (port[0].isdigit() or naming.is_rule_port_name(port)):
            names.append(port)
        for name in names:
            if name not in known:
                yield (
                    f"{side} refers to alias {name!r}, which is neither in the desired state "
                    "nor on the firewall"
                )


def _unmanaged(firewall: live.LiveFirewall, claimed: set[tuple[str, str]]) -> Iterable[Unmanaged]:
    labels: Mapping[str, Callable[[Mapping[str, Any]], str]] = {
        "FirewallAlias": lambda i: str(i.get("name")),
        "FirewallRule": lambda i: str(i.get("description") or ""),
        "HostOverride": lambda i: f"{i.get('hostname')}.{i.get('domain')}",
    }
    readers: Mapping[str, Callable[[Mapping[str, Any]], essence.Essence]] = {
        "FirewallAlias": essence.live_alias,
        "FirewallRule": essence.live_rule,
        "HostOverride": essence.live_host,
    }
    for kind in sorted(firewall.items):
        for uuid, item in sorted(firewall.of(kind).items()):
            if (kind, uuid) in claimed:
                continue
            if kind == "FirewallAlias" and _builtin(item):
                continue
            label = labels[kind](item)
            yield Unmanaged(
                kind,
                f"{label} ({uuid})" if kind != "FirewallAlias" else label,
                readers[kind](item),
                uuid,
            )


PROVIDER = OpnsenseProvider()
