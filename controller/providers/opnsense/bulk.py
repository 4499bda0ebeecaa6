"""Many objects of one kind in one request, where upstream has a bulk endpoint.

* ``firewall/alias/import`` (every release): aliases matched by name, created or
  updated; the firewall validates the whole model and saves only when all of it is
  valid. Validation keys are ``<entry key>.<field>``; FazAI keys each entry by its alias
  name, so a refusal maps back to its document.
* ``firewall/filter/uploadRules`` (26.1 and later): rules as CSV with a header row,
  matched on ``@uuid`` (an unknown uuid is created under that uuid, as ``setRule`` does).
  NOT all or nothing: when a row fails, upstream drops the failing rows and saves the
  others. The transaction treats any refusal as a failed write and rolls back to its
  snapshot, which restores the saved rows too.

A batch is only used where it writes exactly what the per-object calls would: the same
fields, the same uuids and, for aliases, names that match the snapshot (an import would
overwrite an alias someone else made under a name FazAI means to create).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.errors import ApiError

ALIAS_IMPORT = "firewall/alias/import"
RULE_UPLOAD = "firewall/filter/uploadRules"
RULE_UPLOAD_SINCE = (26, 1)  # FilterController::uploadRulesAction (core 9092d60b)
# One object goes through its own endpoint: a bulk request would only add work.
BULK_MIN = 2
# What upstream's fgetcsv (escape "\\") or a CSV line cannot carry unchanged.
_CSV_UNSAFE = ("\\", "\r", "\n", "\0")


@dataclass(frozen=True)
class Refusal:
    """One validation message of a bulk answer: ``index`` is the position of the object
    in the batch, None for an object already on the firewall that the batch did not
    send (upstream validates the whole model)."""

    index: int | None
    field: str  # the model's field name (content, destination_net, ...)
    message: str


# -- aliases -----------------------------------------------------------------------------


def alias_import_body(entries: Sequence[tuple[str, Mapping[str, str]]]) -> dict[str, Any]:
    """``{"data": {"aliases": {"alias": {NAME: fields}}}}`` for (alias name, fields)."""
    return {"data": {"aliases": {"alias": {name: dict(fields) for name, fields in entries}}}}


def alias_import_result(
    node: str, answer: Any, names: Sequence[str], creates: int
) -> list[Refusal]:
    """The refusals in an import's answer; ApiError when it is neither a clean success
    for exactly these aliases nor a validation refusal."""
    if not isinstance(answer, Mapping):
        raise ApiError(
            node, f"POST /api/{ALIAS_IMPORT}: the answer is not an object", path=ALIAS_IMPORT
        )
    validations = answer.get("validations")
    if isinstance(validations, Mapping) and validations:
        position = {name: i for i, name in enumerate(names)}
        refusals = []
        for key, message in validations.items():
            entry, _, field = str(key).rpartition(".")
            texts = message if isinstance(message, list) else [message]
            refusals += [Refusal(position.get(entry), field, str(t)) for t in texts]
        return refusals
    status = str(answer.get("status", ""))
    made = (_count(answer.get("new")), _count(answer.get("existing")))
    if status != "ok" or made != (creates, len(names) - creates):
        raise ApiError(
            node,
            f"POST /api/{ALIAS_IMPORT}: the firewall answered status {status!r} with "
            f"{made[0]} new and {made[1]} existing aliases, for {creates} to create and "
            f"{len(names) - creates} to update",
            path=ALIAS_IMPORT,
        )
    return []


# -- filter rules ------------------------------------------------------------------------


def rules_csv(rows: Sequence[tuple[str, Mapping[str, str]]]) -> str | None:
    """The uploadRules payload for (uuid, fields) rows that all carry the same fields, or
    None when a value cannot travel through upstream's CSV reader unchanged."""
    if not rows:
        return None
    names = list(rows[0][1])
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(["@uuid", *names])
    for uuid, fields in rows:
        if list(fields) != names:
            return None
        values = [str(fields[n]) for n in names]
        if any(c in v for v in values for c in _CSV_UNSAFE):
            return None
        writer.writerow([uuid, *values])
    return buffer.getvalue()


def rule_upload_result(node: str, answer: Any, uuids: Sequence[str], creates: int) -> list[Refusal]:
    """The refusals in an upload's answer; ApiError when it is neither a clean success
    for exactly these rows nor a validation refusal."""
    if not isinstance(answer, Mapping):
        raise ApiError(
            node, f"POST /api/{RULE_UPLOAD}: the answer is not an object", path=RULE_UPLOAD
        )
    validations = answer.get("validations")
    if isinstance(validations, list) and validations:
        refusals = []
        for entry in validations:
            if not isinstance(entry, Mapping):
                continue
            seq = entry.get("sequence")
            index = seq if isinstance(seq, int) and 0 <= seq < len(uuids) else None
            refusals.append(
                Refusal(index, str(entry.get("field") or ""), str(entry.get("message", "")))
            )
        if refusals:
            return refusals
    answered = answer.get("uuids")
    placed = dict(answered) if isinstance(answered, Mapping) else {}
    made = (_count(answer.get("inserted")), _count(answer.get("updated")))
    expected = {uuid: i for i, uuid in enumerate(uuids)}
    if placed != expected or made != (creates, len(uuids) - creates):
        status = answer.get("status")
        raise ApiError(
            node,
            f"POST /api/{RULE_UPLOAD}: the firewall answered "
            + (f"status {status!r}" if status else f"{made[0]} inserted, {made[1]} updated")
            + f" for {creates} rules to create and {len(uuids) - creates} to update",
            path=RULE_UPLOAD,
        )
    return []


def _count(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1
