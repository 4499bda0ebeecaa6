"""search* answers: UIModelGrid::fetch() and searchRecordsetBase(), per release.

Rows are flattened items. Until 25.1 a row holds each requested field's display value
(option labels, ...); from 25.7 it holds the raw values plus a "%field" display value where
the two differ. The phrase is split on whitespace and every token must occur,
case-insensitively, in one of the searched fields (the display value when there is one).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from controller.testing.opnsense.crud import context
from controller.testing.opnsense.fields import describe
from controller.testing.opnsense.models import STATIC_ALIASES, Collection
from controller.testing.opnsense.state import EmulatorState

Row = dict[str, Any]


def natural_key(value: Any) -> list[Any]:
    """SORT_NATURAL | SORT_FLAG_CASE."""
    text = "" if value is None else str(value)
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", text)]


def _int(params: Mapping[str, Any], name: str, default: int) -> int:
    try:
        return int(str(params.get(name, default)))
    except ValueError:
        return default


def sort_spec(params: Mapping[str, Any]) -> tuple[str, bool] | None:
    sort = params.get("sort")
    if isinstance(sort, dict) and sort:
        key = next(iter(sort))
        return str(key), str(sort[key]) == "desc"
    return None


def tokens(params: Mapping[str, Any]) -> list[str]:
    return [t for t in re.split(r"\s+", str(params.get("searchPhrase", "") or "")) if t]


def items_of(state: EmulatorState, coll: Collection) -> list[tuple[str, dict[str, str]]]:
    found = list(state.items[coll.kind].items())
    if coll.kind == "alias":
        # ArrayField static children (Firewall/static_aliases) are listed with the rest.
        defaults = coll.defaults()
        for name, extra in STATIC_ALIASES.items():
            found.append((name, {**defaults, "name": name, "type": "external", **extra}))
    return found


def make_row(
    state: EmulatorState, coll: Collection, uuid: str, item: Mapping[str, str], fields: list[str]
) -> Row:
    ctx = context(state, coll, item)
    row: Row = {"uuid": uuid}
    for f in coll.fields:
        if f.name not in fields:
            continue
        value = item.get(f.name, "")
        label = describe(f, value, ctx)
        if state.version.row_style == "described":
            row[f.name] = label
        else:
            row[f.name] = value
            if label != value:
                row[f"%{f.name}"] = label
    return row


def search_base(
    state: EmulatorState,
    coll: Collection,
    params: Mapping[str, Any],
    fields: list[str] | None,
    default_sort: str | None,
    keep: Callable[[Mapping[str, str]], bool] | None = None,
) -> dict[str, Any]:
    """ApiMutableModelControllerBase::searchBase() over UIModelGrid."""
    names = fields if fields is not None else [f.name for f in coll.fields]
    records = [(u, i) for u, i in items_of(state, coll) if keep is None or keep(i)]
    spec = sort_spec(params) or ((default_sort, False) if default_sort else None)
    if spec is not None:
        key, desc = spec
        records.sort(key=lambda r: natural_key(r[1].get(key, "")), reverse=desc)
    wanted = tokens(params)
    searched = names + (["uuid"] if any(_is_uuid(t) for t in wanted) else [])
    rows = []
    for uuid, item in records:
        row = make_row(state, coll, uuid, item, names)
        if all(_found(row, searched, t) for t in wanted):
            rows.append(row)
    return page(rows, _int(params, "rowCount", -1), _int(params, "current", 1))


def _is_uuid(token: str) -> bool:
    return (
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", token)
        is not None
    )


def _found(row: Row, fields: list[str], token: str) -> bool:
    for name in fields:
        value = row.get(f"%{name}", row.get(name, ""))
        if isinstance(value, str) and token.lower() in value.lower():
            return True
    return False


def page(rows: list[Row], per_page: int, current: int) -> dict[str, Any]:
    if per_page == -1:
        shown = rows
    else:
        start = max(per_page * (current - 1), 0)
        shown = rows[start : start + max(per_page, 0)]
    return {"total": len(rows), "rowCount": len(shown), "current": current, "rows": shown}


def search_recordset(
    rows: list[Row], params: Mapping[str, Any], default_sort: str | None
) -> dict[str, Any]:
    """ApiControllerBase::searchRecordsetBase(): sort, phrase over every column, page."""
    per_page = _int(params, "rowCount", 9999)
    per_page = len(rows) if per_page == -1 else per_page
    current = _int(params, "current", 1)
    spec = sort_spec(params) or ((default_sort, False) if default_sort else None)
    if spec is not None:
        key, desc = spec
        rows = sorted(rows, key=lambda r: natural_key(r.get(key)), reverse=desc)
    wanted = tokens(params)

    def flat(value: Any) -> str:
        if isinstance(value, list):
            return " ".join(flat(v) for v in value)
        if isinstance(value, dict):
            return " ".join(flat(v) for v in value.values())
        return "" if value is None else str(value)

    kept = [
        r
        for r in rows
        if all(any(t.lower() in flat(v).lower() for v in r.values()) for t in wanted)
    ]
    start = max((current - 1) * per_page, 0)
    shown = kept[start : start + per_page]
    return {"total": len(kept), "rowCount": len(shown), "current": current, "rows": shown}
