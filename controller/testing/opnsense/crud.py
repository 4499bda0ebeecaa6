"""Item operations with upstream's answers: ``ApiMutableModelControllerBase`` and friends.

The HTTP layer and the test hooks (drift "by hand") both go through here, so an edit made
as a web-UI user is validated and recorded exactly like one made over the API.
"""

from __future__ import annotations

import html
import re
import uuid as uuidlib
from collections.abc import Mapping
from typing import Any

from controller.testing.opnsense.fields import Context, check_field, normalize
from controller.testing.opnsense.messages import fmt, msg
from controller.testing.opnsense.models import STATIC_ALIASES, Collection, model_checks
from controller.testing.opnsense.state import EmulatorState

# Type::isUUID / ApiMutableModelControllerBase::isValidUUID: lower-case uuid4 only.
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

NET_FIELDS = ("source_net", "source_port", "destination_net", "destination_port")


class UserError(Exception):
    """Upstream's UserException: HTTP 500 with errorMessage and errorTitle."""

    def __init__(self, message: str, title: str) -> None:
        super().__init__(message)
        self.message = message
        self.title = title


class InputTypeError(Exception):
    """A list or object given for a scalar field: a PHP error upstream, so a plain 500."""


Validations = dict[str, str | list[str]]


def alias_map(state: EmulatorState) -> dict[str, dict[str, str]]:
    """Every alias by name, the static ones (bogons, ...) included."""
    found: dict[str, dict[str, str]] = {
        name: {"name": name, "type": "external", "enabled": "1", **extra}
        for name, extra in STATIC_ALIASES.items()
    }
    for item in state.items["alias"].values():
        found.setdefault(item.get("name", ""), item)
    return found


def context(
    state: EmulatorState, coll: Collection, item: Mapping[str, str], uuid: str | None = None
) -> Context:
    """The checks' view of the box; ``item`` replaces the stored item ``uuid`` if any."""
    siblings: list[Mapping[str, str]] = [
        i for u, i in state.items[coll.kind].items() if u != uuid and i is not item
    ]
    siblings.append(item)
    if coll.kind == "alias":
        # Static aliases sit in the same array upstream, so their names are taken.
        siblings += [{"name": n} for n in STATIC_ALIASES]
    return Context(
        version=state.version,
        item=item,
        siblings=siblings,
        aliases=alias_map(state),
        interfaces=state.interfaces,
        gateways=state.gateways,
    )


def set_nodes(coll: Collection, item: dict[str, str], data: Mapping[str, Any]) -> None:
    """BaseField::setNodes(): known keys only; null skipped; lists for scalars refused."""
    for f in coll.fields:
        if f.name not in data or data[f.name] is None:
            continue
        value = data[f.name]
        if isinstance(value, (list, dict)):
            raise InputTypeError(f"Invalid input type for {f.name}: expected a single value")
        if value is True:
            text = "1"
        elif value is False:
            text = ""
        elif isinstance(value, float) and value.is_integer():
            text = str(int(value))
        else:
            text = str(value)
        item[f.name] = normalize(f, text)


def validate(
    state: EmulatorState, coll: Collection, item: dict[str, str], uuid: str | None = None
) -> Validations:
    ctx = context(state, coll, item, uuid)
    found: Validations = {}

    def add(field: str, text: str) -> None:
        key = f"{coll.wrapper}.{field}"
        have = found.get(key)
        if have is None:
            found[key] = text
        elif isinstance(have, str):
            if have != text:
                found[key] = [have, text]
        elif text not in have:
            have.append(text)

    for f in coll.fields:
        for text in check_field(f, ctx):
            add(f.name, text)
    for field, text in model_checks(coll.kind, ctx):
        add(field, text)
    return found


def new_item(state: EmulatorState, coll: Collection) -> dict[str, str]:
    """ArrayField::add(): defaults, with FilterSequenceField numbering from 25.7."""
    item = coll.defaults()
    if coll.kind == "rule" and state.version.sequence_auto:
        highest = max(
            [1]
            + [
                int(r["sequence"])
                for r in state.items["rule"].values()
                if r.get("sequence", "").isdigit()
            ]
        )
        item["sequence"] = str(highest + 100)
    return item


def add_item(
    state: EmulatorState, coll: Collection, data: Mapping[str, Any], *, who: str, where: str
) -> dict[str, Any]:
    with state.lock:
        item = new_item(state, coll)
        set_nodes(coll, item, data)
        found = validate(state, coll, item)
        if found:
            return {"result": "failed", "validations": found}
        new_uuid = str(uuidlib.uuid4())
        state.items[coll.kind][new_uuid] = item
        state.save(f"{where} made changes", who)
        return {"result": "saved", "uuid": new_uuid}


def set_item(
    state: EmulatorState,
    coll: Collection,
    uuid: str,
    data: Mapping[str, Any],
    *,
    who: str,
    where: str,
) -> dict[str, Any]:
    """setBase(): an upsert. An unknown uuid4 creates the item under that uuid."""
    with state.lock:
        current = state.items[coll.kind].get(uuid)
        if current is None:
            if not UUID_RE.match(uuid):
                return {"result": "failed"}
            item = new_item(state, coll)
        else:
            item = dict(current)
        old_name = current.get("name") if (current is not None and coll.kind == "alias") else None
        set_nodes(coll, item, data)
        found = validate(state, coll, item, uuid)
        if found:
            return {"result": "failed", "validations": found}
        if old_name and item.get("name") and item["name"] != old_name:
            _rename_alias(state, old_name, item["name"])
        state.items[coll.kind][uuid] = item
        state.save(f"{where} made changes", who)
        return {"result": "saved"}


def _rename_alias(state: EmulatorState, old: str, new: str) -> None:
    """Alias::refactor(): follow a rename in rules and in nested aliases."""
    for rule in state.items["rule"].values():
        for name in NET_FIELDS:
            parts = rule.get(name, "").split(",")
            if old in parts:
                rule[name] = ",".join(new if p == old else p for p in dict.fromkeys(parts))
    for alias in state.items["alias"].values():
        if alias.get("type") == "geoip":
            continue
        parts = alias.get("content", "").split("\n")
        if old in parts:
            alias["content"] = "\n".join(new if p == old else p for p in dict.fromkeys(parts))


def where_used(state: EmulatorState, name: str) -> dict[str, str]:
    """Alias::whereUsed(): config references to an alias name, with their descriptions."""
    found: dict[str, str] = {}
    for idx, rule in enumerate(state.items["rule"].values()):
        for field in NET_FIELDS:
            if name in rule.get(field, "").split(","):
                # The legacy lookup reads <descr>, which MVC rules do not have.
                found[f"OPNsense.Firewall.Filter.rules.rule.{idx}/{field}"] = ""
    for uuid, alias in state.items["alias"].items():
        if alias.get("type") in ("geoip", "urltable"):
            continue
        if name in alias.get("content", "").split("\n"):
            label = alias.get("description") or alias.get("name", "")
            found[f"aliases.alias.{uuid}"] = label
    return found


def check_alias_deletable(state: EmulatorState, uuids: str) -> None:
    """AliasController::delItemAction(): refuse deleting an alias still referenced."""
    for uuid in [u for u in uuids.split(",") if u]:
        alias = state.items["alias"].get(uuid)
        if alias is None:
            continue
        uses = where_used(state, alias.get("name", ""))
        if uses:
            listing = "".join(
                html.escape(f"\n[{key}] {value}", quote=False) for key, value in uses.items()
            )
            raise UserError(
                fmt("alias.in_use", alias.get("name", ""), listing), msg("alias.in_use_title")
            )


def del_item(
    state: EmulatorState, coll: Collection, uuids: str, *, who: str, where: str
) -> dict[str, Any]:
    with state.lock:
        result: dict[str, Any] = {"result": "failed"}
        changed = False
        for uuid in uuids.split(",") if uuids else []:
            if state.items[coll.kind].pop(uuid, None) is not None:
                changed = True
                result["result"] = "deleted"
            else:
                result["result"] = "not found"
        if changed:
            state.save(f"{where} made changes", who)
        return result


def toggle_item(
    state: EmulatorState,
    coll: Collection,
    uuids: str,
    enabled: str | None,
    *,
    who: str,
    where: str,
) -> dict[str, Any]:
    with state.lock:
        result: dict[str, Any] = {"result": "failed"}
        targets = [u for u in uuids.split(",") if u] if uuids else []
        if len(targets) > 1 and enabled is None:
            raise UserError(msg("toggle.multi"), msg("toggle.title"))
        for uuid in targets:
            node = state.items[coll.kind].get(uuid)
            if node is None:
                continue
            result["changed"] = True
            if enabled in ("0", "1"):
                result["result"] = "Enabled" if enabled == "1" else "Disabled"
                result["changed"] = node.get("enabled", "") != enabled
                node["enabled"] = enabled
            elif enabled is not None:
                result["changed"] = False
                break
            elif node.get("enabled") == "1":
                result["result"] = "Disabled"
                node["enabled"] = "0"
            else:
                result["result"] = "Enabled"
                node["enabled"] = "1"
        if result.get("changed"):
            state.save(f"{where} made changes", who)
        return result
