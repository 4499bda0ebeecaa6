"""A review as JSON: the head's plan exactly as ``plan --output json`` writes it, plus a
``review`` block and, on each change, its ``review`` marking. The plan schema
(``plan.schema.json``) documents both as optional, so a reader of plans reads reviews."""

from __future__ import annotations

import json
from typing import Any

from controller.plan import plan_json
from controller.plan.review import Review


def to_dict(review: Review) -> dict[str, Any]:
    out = plan_json.to_dict(review.head)
    for change in out["changes"]:
        found = (change["node"], change["kind"], change["name"])
        marking = review.markings.get(found)
        if marking is not None:
            change["review"] = marking.value
        old = review.before.get(found)
        if old is not None:
            change["base"] = {
                "action": old.action.value,
                "changes": plan_json.item_dict(old)["changes"],
            }
    out["review"] = {
        "base": {
            "source": review.base_source,
            "revision": review.base_revision,
            "error": review.base_error,
        },
        "summary": review.counts(),
        "dropped": [plan_json.item_dict(i) for i in review.dropped],
        "reads": dict(sorted(review.reads.items())),
    }
    return out


def render(review: Review) -> str:
    return json.dumps(to_dict(review), indent=2) + "\n"
