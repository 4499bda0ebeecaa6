"""Operations as data: recorded node state + desired objects -> the exact commands.

Each file under tests/data/linux_operations holds ``cases`` (forward: ``targets`` and the
snapshot's ``facts`` -> ``steps`` or an ``error``) and/or ``rollback`` cases (snapshot
``objects`` and the node's ``current`` state -> ``steps`` and ``problems``). Steps show
the script and, decoded, what travels on its standard input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.providers.linux.apply import _instance_key
from controller.providers.linux.operations import (
    OperationError,
    Target,
    forward_steps,
    rollback_steps,
)

DATA = Path(__file__).parents[3] / "data" / "linux_operations"
FILES = sorted(DATA.glob("*.yaml"))


def _load(section: str) -> list[Any]:
    cases = []
    for path in FILES:
        for case in yaml.safe_load(path.read_text()).get(section, []):
            cases.append(pytest.param(case, id=f"{path.stem}: {case['name']}"))
    return cases


def target(item: dict[str, Any]) -> Target:
    spec = item["spec"]
    data = spec["content"].encode() if "content" in spec else None
    return Target(
        item["kind"],
        item["name"],
        _instance_key(item["kind"], spec),
        item["action"],
        spec,
        data,
        bool(spec.get("sensitive")),
    )


@pytest.mark.parametrize("case", _load("cases"))
def test_forward(case: dict[str, Any]) -> None:
    targets = [target(t) for t in case["targets"]]
    if "error" in case:
        with pytest.raises(OperationError) as failure:
            forward_steps(targets, case["facts"], case.get("sysctl"), tag="tdata")
        assert str(failure.value) == case["error"]
        return
    steps = forward_steps(targets, case["facts"], case.get("sysctl"), tag="tdata")
    assert [s.as_data() for s in steps] == case.get("steps", [])


@pytest.mark.parametrize("case", _load("rollback"))
def test_rollback(case: dict[str, Any]) -> None:
    plan = rollback_steps(case["objects"], case["current"])
    assert [s.as_data() for s in plan.steps] == case.get("steps", [])
    assert plan.problems == case.get("problems", [])


def test_every_data_file_has_cases() -> None:
    assert len(FILES) >= 5
    for path in FILES:
        loaded = yaml.safe_load(path.read_text())
        assert loaded.get("cases") or loaded.get("rollback"), path
