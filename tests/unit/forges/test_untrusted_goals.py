"""Which of a pull request's Goals a review does not run: any the base does not run as
they are, on the same nodes. Renames, other checks and a wider reach (a label the head
gives a node, so that a selector now matches it) are all held."""

from __future__ import annotations

from pathlib import Path

import controller.policy  # noqa: F401  (registers the Policy kind, as the CLI does)
from controller import providers
from controller.forges.review import untrusted_goals
from controller.model import loader
from controller.model.state import DesiredState
from controller.source.open import open_source

providers.load_all()


def node(name: str, role: str) -> str:
    return (
        f"apiVersion: fazai.dev/v1alpha1\nkind: Node\nmetadata: {{name: {name}, labels: "
        f"{{role: {role}}}}}\nspec: {{platform: linux, address: 10.0.0.1}}\n---\n"
    )


def goal(name: str, role: str, path: str = "/etc") -> str:
    return (
        f"apiVersion: fazai.dev/v1alpha1\nkind: Goal\nmetadata: {{name: {name}}}\nspec:\n"
        f"  target: {{matchLabels: {{role: {role}}}}}\n  description: an outcome\n"
        f"  checks:\n    - name: there\n      command: [test, -e, {path}]\n"
        "      expect: {exitCode: 0}\n---\n"
    )


def state(root: Path, text: str) -> DesiredState:
    root.mkdir()
    (root / "all.yaml").write_text(text)
    return loader.load(open_source(str(root)))


def held(tmp_path: Path, base: str, head: str) -> list[str]:
    found = untrusted_goals(state(tmp_path / "base", base), state(tmp_path / "head", head))
    return sorted(d.name for d in found)


def test_unchanged_goals_on_the_same_nodes_run(tmp_path: Path) -> None:
    text = node("a", "web") + node("b", "db") + goal("web-ok", "web")
    assert held(tmp_path, text, text) == []


def test_added_renamed_and_changed_goals_are_held(tmp_path: Path) -> None:
    nodes = node("a", "web") + node("b", "db")
    base = nodes + goal("web-ok", "web") + goal("db-ok", "db")
    head = nodes + goal("web-ok", "web", "/etc/shadow") + goal("db-ok2", "db") + goal("new", "db")
    assert held(tmp_path, base, head) == ["db-ok2", "new", "web-ok"]


def test_a_label_that_widens_a_selector_holds_the_goal(tmp_path: Path) -> None:
    base = node("a", "db") + node("b", "web") + goal("db-ok", "db")
    head = node("a", "db") + node("b", "db") + goal("db-ok", "db")
    assert held(tmp_path, base, head) == ["db-ok"]


def test_a_head_without_a_base_holds_every_goal(tmp_path: Path) -> None:
    head = state(tmp_path / "head", node("a", "web") + goal("web-ok", "web"))
    assert [d.name for d in untrusted_goals(None, head)] == ["web-ok"]
