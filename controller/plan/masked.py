"""Plan items with their secrets masked: what may leave the engine for the drift table,
events, reports, notifications and the API.

The same masking the store applies to everything it writes (``store.redact``): a field
value that is a Secret, or that sits under a secret-named key, is masked, wherever in
the value it is. Only field values can hold one: the rest of an item (node, kind, name,
action, error, the adopted id) is names and messages FazAI made, and ``plan_json`` writes
it under keys that are not secret-named, so the JSON of a masked item is what redacting
the item's JSON would give.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from controller.plan.items import PlanItem
from controller.store.redact import redact


def masked(item: PlanItem) -> PlanItem:
    """``item`` with every secret in its field changes masked."""
    changes = tuple(
        dataclasses.replace(change, live=redact(change.live), desired=redact(change.desired))
        for change in item.changes
    )
    return dataclasses.replace(item, changes=changes)


def masked_all(items: Iterable[PlanItem]) -> tuple[PlanItem, ...]:
    return tuple(masked(item) for item in items)
