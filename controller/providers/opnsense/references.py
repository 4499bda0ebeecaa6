"""Who still uses an alias once an apply is done: the rules and aliases that remain.

OPNsense refuses to delete an alias that anything still names (``Alias::whereUsed``).
FazAI checks this itself before sending anything, at plan time against the documents and
again in the transaction's snapshot against a fresh read, so that a delete that cannot
succeed is refused up front with its users named, instead of failing half-way through a
transaction and rolling back.

An object remaining after the apply is seen as it will be: a document that writes it
replaces what the firewall holds, a delete removes it, every other object (made by hand,
owned but not pruned, in sync) counts as the firewall holds it now. Names are matched as
whole tokens of the fields that can hold an alias, as the firewall's own lookup does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from controller.model.document import Document
from controller.providers.opnsense import essence

if TYPE_CHECKING:  # validate imports this module: keep the API client out of it
    from controller.providers.opnsense import live

# Alias content of these types is URLs or country codes, never alias names (upstream's
# whereUsed skips them too).
NOT_NESTING = frozenset({"geoip", "urltable"})
RULE_FIELDS = ("source_net", "destination_net", "source_port", "destination_port")

# (kind, uuid) of an object on the firewall, or (kind, "name:" + alias name) for an alias
# a document creates (its uuid is the firewall's choice).
Key = tuple[str, str]


@dataclass(frozen=True)
class Holder:
    """An object that will exist after the apply, and the names it uses."""

    key: Key
    label: str
    uses: frozenset[str]


def alias_key(uuid: str | None, name: str) -> Key:
    return ("FirewallAlias", uuid if uuid else f"name:{name}")


def rule_uses(spec: Mapping[str, Any]) -> frozenset[str]:
    """Every token a rule document writes into a field that can name an alias."""
    found: set[str] = set()
    for side in ("source", "destination"):
        end = spec.get(side, {})
        for field in ("net", "port"):
            if field in end:
                found.update(_tokens(str(end[field]), ","))
    return frozenset(found)


def alias_uses(spec: Mapping[str, Any]) -> frozenset[str]:
    if spec.get("type") in NOT_NESTING:
        return frozenset()
    return frozenset(str(c) for c in spec.get("content", []))


def live_rule_uses(item: Mapping[str, Any]) -> frozenset[str]:
    found: set[str] = set()
    for field in RULE_FIELDS:
        found.update(_tokens(str(item.get(field) or ""), ","))
    return frozenset(found)


def live_alias_uses(item: Mapping[str, Any]) -> frozenset[str]:
    if essence.one(item.get("type")) in NOT_NESTING:
        return frozenset()
    return frozenset(k for k in essence.selected(item.get("content")) if k)


def _tokens(text: str, separator: str) -> list[str]:
    return [t.strip() for t in text.split(separator) if t.strip()]


def document_label(doc: Document) -> str:
    return f"{doc.subject} ({doc.location(('metadata', 'name'))})"


def holders_after(
    firewall: live.LiveFirewall, planned: Mapping[Key, Document | None]
) -> list[Holder]:
    """Every rule and alias that will exist once ``planned`` is applied. ``planned`` maps
    the objects an apply writes to their document, or to None for those it deletes."""
    out: list[Holder] = []
    seen: set[Key] = set()
    for kind, to_uses in (("FirewallRule", live_rule_uses), ("FirewallAlias", live_alias_uses)):
        for uuid, item in sorted(firewall.of(kind).items()):
            key = (kind, uuid)
            seen.add(key)
            if key in planned:
                doc = planned[key]
                if doc is not None:
                    out.append(Holder(key, document_label(doc), _document_uses(doc)))
                continue
            out.append(Holder(key, _live_label(kind, uuid, item), to_uses(item)))
    for key, doc in sorted(planned.items(), key=lambda pair: pair[0]):
        if key not in seen and doc is not None and key[0] in ("FirewallRule", "FirewallAlias"):
            out.append(Holder(key, document_label(doc), _document_uses(doc)))
    return out


def users_of(name: str, key: Key, holders: Iterable[Holder]) -> list[str]:
    """The labels of the holders that use alias ``name`` (other than the alias itself)."""
    return [h.label for h in holders if name in h.uses and h.key != key]


def in_use_message(name: str, users: Iterable[str]) -> str:
    return (
        f"cannot delete alias {name!r}: still used by {', '.join(users)}; remove those uses "
        "first (or delete them in the same apply)"
    )


def _document_uses(doc: Document) -> frozenset[str]:
    return rule_uses(doc.spec) if doc.kind == "FirewallRule" else alias_uses(doc.spec)


def _live_label(kind: str, uuid: str, item: Mapping[str, Any]) -> str:
    if kind == "FirewallAlias":
        return f"alias {str(item.get('name'))!r} on the firewall"
    description = str(item.get("description") or "")
    return f"rule {uuid}" + (f" ({description!r})" if description else "") + " on the firewall"
