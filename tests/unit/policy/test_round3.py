"""Round-3 review fixes: rules that reach ``item`` through brackets or an alias, comma
interface lists, cost limits, system accounts, scoped allows, kind typos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.plan.diff import Action, Change
from controller.plan.items import PlanItem
from controller.plan.verdicts import Effect
from tests.unit.policy.test_stage import effects, judge, policy, state, user_delete


def rule(expression: str, effect: str = "deny", **extra: Any) -> dict[str, Any]:
    return {"name": "r", "expression": expression, "effect": effect, "message": "m", **extra}


@pytest.mark.parametrize(
    "expression",
    [
        '"uid" in item["fields"] && item["fields"]["uid"]["live"] < 1000',
        '[item].exists(i, "uid" in i.fields && i.fields.uid.live < 1000)',
        '[item].exists(i, has(i.fields.uid) && i.fields.uid.live < 1000)',
        '"uid" in item.fields && item.fields.uid.live < 1000',
    ],
)
def test_a_deny_reaching_item_through_brackets_or_an_alias_fires(
    tmp_path: Path, expression: str
) -> None:
    loaded = state(tmp_path, policy("mine", rule(expression), match={"kinds": ["User"]}))
    item = PlanItem("web-1", "User", "svc", Action.UPDATE, (Change("uid", 5, 1500),))
    got = judge(loaded, item)["User/svc"]
    assert ("mine", "r", Effect.DENY) in effects(got)
