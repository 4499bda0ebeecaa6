"""A review for people at a terminal: the head's plan with each change's marking, then
the base's changes the head drops, then the two summary lines."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from controller.output import plan_text
from controller.output.review_markdown import summary
from controller.output.summary import SYMBOLS
from controller.plan.items import PlanItem
from controller.plan.review import Marking, Review
from controller.source import revision as revisions

STYLES = {Marking.INTRODUCED: "bold cyan", Marking.CHANGED: "bold magenta", Marking.PENDING: "dim"}


def render(review: Review, console: Console, *, show_noop: bool = False) -> None:
    def note(item: PlanItem) -> str:
        marking = review.marking(item)
        return f"  [{marking.value}]" if marking is not None else ""

    base = review.base_source or "the base"
    at = f" at {revisions.short(review.base_revision)}" if review.base_revision else ""
    console.print(Text(f"review: head against the live nodes; base {base}{at}", style="dim"))
    if review.base_error:
        console.print(
            Text(f"base not planned: {review.base_error}; changes are not compared", "yellow")
        )
    plan_text.render(review.head, console, show_noop=show_noop, note=note)
    if review.dropped:
        console.print(Text("no longer done (the base would, this head does not):", style="bold"))
        for item in review.dropped:
            action = item.action.value
            console.print(
                Text.assemble(
                    f"  {SYMBOLS[action]} ",
                    (f"{item.node} {item.kind}/{item.name}", plan_text.STYLES[action]),
                    (f"  {action}", "dim"),
                )
            )
    console.print(Text(f"This head: {summary(review)}.", style="bold"))
