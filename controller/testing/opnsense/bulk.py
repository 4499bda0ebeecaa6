"""Upstream's bulk writes: ``firewall/alias/import``, and ``firewall/filter/uploadRules`` from 26.1.

Both follow their controllers at each release tag, down to what they leave behind:

* ``AliasController::importAction`` matches each entry by alias name (updates it, else
  adds one with a fresh uuid), validates the whole model and saves only when nothing
  failed: all or nothing. Validation keys are the entry's key in ``data`` and the field.
* ``FilterController::uploadRulesAction`` -> ``ApiMutableModelControllerBase::importCsv``
  -> ``ArrayField::importRecordSet``: CSV with a header row, matched on ``@uuid`` (an
  unknown one is created under that uuid). When any row fails validation the model is
  reset, the failing rows are dropped and the rest imported again and SAVED: a refused
  upload can leave the valid rows written. The answer is the first pass's.
"""

from __future__ import annotations

import copy
import uuid as uuidlib
from collections.abc import Iterator, Mapping
from typing import Any

from controller.testing.opnsense import crud
from controller.testing.opnsense.fields import Context, check_field, normalize
from controller.testing.opnsense.messages import fmt, msg
from controller.testing.opnsense.models import STATIC_ALIASES, Collection, model_checks
from controller.testing.opnsense.state import EmulatorState


def _whole_model_messages(state: EmulatorState, coll: Collection) -> Iterator[tuple[str, str, str]]:
    """BaseModel::performValidation() over every item of ``coll``: (uuid, field, message),
    in item order, each field's messages in turn."""
    items = state.items[coll.kind]
    siblings: list[Mapping[str, str]] = list(items.values())
    if coll.kind == "alias":
        siblings += [{"name": n} for n in STATIC_ALIASES]
    shared = Context(
        version=state.version,
        item={},
        siblings=siblings,
        aliases=crud.alias_map(state),
        interfaces=state.interfaces,
        gateways=state.gateways,
    )
    for uuid, item in items.items():
        ctx = Context(
            shared.version, item, shared.siblings, shared.aliases, shared.interfaces,
            shared.gateways,
        )  # fmt: skip
        for f in coll.fields:
            for text in check_field(f, ctx):
                yield uuid, f.name, text
        for field, text in model_checks(coll.kind, ctx):
            yield uuid, field, text


def _set_prop(coll: Collection, item: dict[str, str], prop: str, value: Any) -> None:
    """``$node->$prop = $value``: an unknown property is an InvalidArgumentException (a
    plain 500); a list or object for a scalar field a PHP error (500 too)."""
    if coll.field(prop) is None:
        raise crud.InputTypeError(f"{prop} not an attribute of {coll.wrapper}")
    crud.set_nodes(coll, item, {prop: value})


# -- aliases -----------------------------------------------------------------------------


def import_aliases(
    state: EmulatorState, coll: Collection, data: Any, *, who: str, where: str
) -> dict[str, Any]:
    result: dict[str, Any] = {"existing": 0, "new": 0, "status": "failed"}
    entries = data.get("aliases", {}).get("alias") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("aliases"), dict) or not entries:
        return result
    if not isinstance(entries, dict):
        return result
    with state.lock:
        before = copy.deepcopy(state.items[coll.kind])
        mapping: dict[str, str] = {}  # uuid on the firewall -> the entry's key in data
        try:
            for key, content in entries.items():
                kind = content.get("type") if isinstance(content, dict) else ""
                if not isinstance(content, dict) or not content.get("name") or kind == "internal":
                    continue
                found = next(
                    (
                        u
                        for u, a in state.items[coll.kind].items()
                        if a.get("name") == content["name"]
                    ),
                    None,
                )
                if found is None:
                    found = str(uuidlib.uuid4())
                    state.items[coll.kind][found] = crud.new_item(state, coll)
                    result["new"] += 1
                else:
                    state.items[coll.kind][found] = dict(state.items[coll.kind][found])
                    result["existing"] += 1
                for prop, value in content.items():
                    _set_prop(coll, state.items[coll.kind][found], str(prop), value)
                mapping[found] = str(key)
        except Exception:
            state.items[coll.kind] = before  # the request died: nothing was saved
            raise
        validations: dict[str, str] = {}
        for uuid, field, text in _whole_model_messages(state, coll):
            # An existing alias that fails has no key in the mapping: PHP reads null there.
            validations[f"{mapping.get(uuid, '')}.{field}"] = text
        if validations:
            state.items[coll.kind] = before  # Config unlock: the model is never saved
            result["validations"] = validations
            return result
        result["status"] = "ok"
        state.save(f"{where} made changes", who)
        return result


# -- filter rules (CSV) ------------------------------------------------------------------


def fgetcsv(text: str, separator: str) -> list[list[str | None]]:
    """PHP's fgetcsv() over a whole stream, enclosure ``"`` and escape ``\\``: a blank line
    reads as ``[None]``; inside quotes ``""`` is one quote, and a backslash keeps itself
    and the character after it (so ``\\"`` does not close the field)."""
    rows: list[list[str | None]] = []
    i, n = 0, len(text)
    while i < n:
        end = text.find("\n", i)
        if text[i : end if end >= 0 else n].strip("\r") == "":
            rows.append([None])
            i = n if end < 0 else end + 1
            continue
        row: list[str | None] = []
        cell: list[str] = []
        quoted = False
        while i < n:
            ch = text[i]
            if quoted:
                if ch == "\\" and i + 1 < n:
                    cell.append(text[i : i + 2])
                    i += 2
                    continue
                if ch == '"':
                    if i + 1 < n and text[i + 1] == '"':
                        cell.append('"')
                        i += 2
                        continue
                    quoted = False
                    i += 1
                    continue
                cell.append(ch)
                i += 1
                continue
            if ch == '"' and not "".join(cell).strip():
                quoted, cell = True, []
                i += 1
                continue
            if ch == separator:
                row.append("".join(cell))
                cell = []
                i += 1
                continue
            if ch == "\n":
                i += 1
                break
            if ch == "\r" and (i + 1 >= n or text[i + 1] == "\n"):
                i += 1
                continue
            cell.append(ch)
            i += 1
        row.append("".join(cell))
        rows.append(row)
    return rows


def _records(payload: str, *, skip_blank: bool) -> tuple[list[str | None], list[dict[str, Any]]]:
    sep1 = payload.find(",") if "," in payload else 9999
    sep2 = payload.find(";") if ";" in payload else 9999
    separator = "," if sep1 < sep2 else ";"
    heading: list[str | None] = []
    data: list[dict[str, Any]] = []
    for line in fgetcsv(payload, separator):
        if not heading:
            heading = line
            continue
        if skip_blank and (not line or line[0] is None):
            continue  # 26.7: count($line) >= 1 && !is_null($line[0])
        data.append(
            {str(heading[idx]): content for idx, content in enumerate(line) if idx < len(heading)}
        )
    return heading, data


def _import_pass(
    state: EmulatorState, coll: Collection, data: dict[int, dict[str, Any]]
) -> dict[str, Any]:
    """ArrayField::importRecordSet() with key field ``@uuid``, on ``state.items``."""
    v = state.version
    results: dict[str, Any] = {"validations": [], "inserted": 0, "updated": 0, "uuids": {}}
    items = state.items[coll.kind]
    current = set(items)  # the key index is built before any record is read
    for idx, record in data.items():
        offered = record.get("@uuid") or ""
        if v.rule_upload_checks_uuid and offered and not crud.UUID_RE.match(str(offered)):
            results["validations"].append(
                {
                    "sequence": idx,
                    "field": "@uuid",
                    "message": fmt("csv.invalid_uuid", str(offered)),
                }
            )
            continue
        key = str(offered)
        if key in current:
            item = dict(items[key])
            results["updated"] += 1
            target = key
        else:
            # ArrayField::add($uuid): defaults (the sequence after every rule so far).
            item = crud.new_item(state, coll)
            results["inserted"] += 1
            target = key or str(uuidlib.uuid4())
        items[target] = item
        results["uuids"][target] = idx
        for name, content in record.items():
            field = coll.field(name)
            if field is not None:
                item[name] = normalize(field, "" if content is None else str(content))
    return results


def upload_rules(
    state: EmulatorState, coll: Collection, payload: Any, *, who: str, where: str
) -> dict[str, Any]:
    with state.lock:
        heading, rows = _records(str(payload), skip_blank=state.version.rule_upload_checks_uuid)
        data = dict(enumerate(rows))
        before = copy.deepcopy(state.items[coll.kind])
        response: dict[str, Any] = {}
        for _ in range(2):
            state.items[coll.kind] = copy.deepcopy(before)
            result = _import_pass(state, coll, copy.deepcopy(data))
            seen: set[tuple[str, str]] = set()
            for uuid, field, text in _whole_model_messages(state, coll):
                if (uuid, field) in seen:
                    continue  # $valmsgfields: one message per field
                seen.add((uuid, field))
                result["validations"].append(
                    {"sequence": result["uuids"].get(uuid), "message": text, "field": field}
                )
            response = response or result
            if result["validations"]:
                # modelHandle = null: the next pass starts from the saved configuration.
                for val in result["validations"]:
                    if val["sequence"] is not None:
                        data.pop(val["sequence"], None)
                continue
            if result["inserted"] > 0 or result["updated"] > 0:
                state.save(f"{where} made changes", who)
            break
        else:
            state.items[coll.kind] = before  # both passes failed: nothing saved
        answer = {**response, "fieldnames": heading}
        # PHP's empty array is a JSON list.
        answer["uuids"] = answer["uuids"] or []
        return answer


def unsupported() -> crud.UserError:
    return crud.UserError(msg("import.unsupported"), "")
