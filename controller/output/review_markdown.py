"""A review as markdown: the pull request comment.

What the pull request introduces or changes comes first; drift already pending on the
base (there whatever the pull request says) and the base's changes the head drops follow,
folded. A comment that would not fit the forge's limit is made shorter in steps: first
without unified diffs, then with fewer resources listed, saying so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from controller.diagnostics import Diagnostic
from controller.output import terminal
from controller.output.plan_markdown import cell, item_lines, node_table
from controller.output.plan_text import policy_line
from controller.output.summary import summary_line
from controller.plan.items import PlanItem
from controller.plan.review import Marking, Review, key
from controller.source import revision as revisions

TITLE = "FazAI plan for this pull request"
MAX_DIAGNOSTICS = 50


def render(review: Review, max_chars: int | None = None) -> str:
    """The comment, within ``max_chars`` when given."""
    full = _render(review, diffs=True, limit=None)
    if max_chars is None or len(full) <= max_chars:
        return full
    compact = _render(review, diffs=False, limit=None)
    if len(compact) <= max_chars:
        return compact
    limit = sum(1 for _ in _all_items(review))
    while limit > 0:
        limit //= 2
        shorter = _render(review, diffs=False, limit=limit)
        if len(shorter) <= max_chars:
            return shorter
    return _render(review, diffs=False, limit=0)[:max_chars]


def status_line(review: Review) -> str:
    head = review.head
    if head.has_errors:
        return "❌ trouble"
    if not head.has_changes and not review.dropped:
        return "✅ in sync"
    counts = review.counts()
    if review.base is not None and not counts["introduced"] and not counts["changed"]:
        return "📝 changes, none of them from this pull request"
    return "📝 changes"


def summary(review: Review) -> str:
    """One line on what the pull request itself does, for the comment and the status."""
    if review.base is None:
        return "not compared with the base"
    counts = review.counts()
    parts = [
        f"{counts['introduced']} introduced",
        f"{counts['changed']} changed",
        f"{counts['pending']} already pending on the base",
    ]
    if counts["dropped"]:
        parts.append(f"{counts['dropped']} no longer done")
    return ", ".join(parts)


def _render(review: Review, *, diffs: bool, limit: int | None) -> str:
    head = review.head
    lines = [f"### {TITLE}: {status_line(review)}", ""]
    lines.append(_sources(review))
    lines += ["", f"**{summary_line(head)}**", ""]
    lines += [f"**This pull request: {summary(review)}.**", ""]
    gate = policy_line(head)
    if gate:
        lines += [f"**{'⛔' if head.denied else '✋'} {gate}**", ""]
    if review.base_error:
        lines += [f"> ⚠️ The base could not be planned ({cell(review.base_error)}); the "
                  "changes below are not compared with it.", ""]  # fmt: skip
    lines += node_table(head)
    lines.append("")
    for warning in head.warnings:
        lines.append(f"> ⚠️ {cell(str(warning))}")
    budget = [limit]
    groups = _groups(review)
    for title, items, note, folded in groups:
        if not items:
            continue
        lines += ["", f"#### {title} ({len(items)})", ""]
        if folded:
            lines += ["<details><summary>show</summary>", ""]
        lines += _by_node(items, note, diffs, budget)
        if folded:
            lines += ["</details>"]
    if limit is not None and budget[0] is not None and budget[0] < 0:
        lines += ["", f"> ✂️ Shortened to fit the forge's comment limit: {limit} of "
                  f"{sum(1 for _ in _all_items(review))} resources listed; the CI job's log "
                  "has the whole plan."]  # fmt: skip
    elif not diffs:
        lines += ["", "> ✂️ Unified diffs left out to fit the forge's comment limit; the CI "
                  "job's log has them."]  # fmt: skip
    return terminal.clean("\n".join(lines) + "\n")


def _sources(review: Review) -> str:
    head = review.head
    at = f" at `{revisions.short(head.revision)}`" if head.revision else ""
    text = f"Head: `{cell(head.source)}`{at}, against the live nodes"
    if review.base_source:
        base_at = f" at `{revisions.short(review.base_revision)}`" if review.base_revision else ""
        text += f"; base: `{cell(review.base_source)}`{base_at}"
    return text


Group = tuple[str, list[PlanItem], Callable[[PlanItem], str], bool]


def _groups(review: Review) -> list[Group]:
    changed = [i for i in _changes(review) if review.marking(i) is not Marking.PENDING]
    pending = [i for i in _changes(review) if review.marking(i) is Marking.PENDING]

    def note(item: PlanItem) -> str:
        marking = review.marking(item)
        if marking is None:
            return ""
        text = f" · **{marking.value}**"
        old = review.before.get(key(item))
        if marking is Marking.CHANGED and old is not None:
            fields = ", ".join(f"`{c.field}`" for c in old.changes) or "no field"
            text += f" (the base would {old.action.value} {fields})"
        return text

    if review.base is None:
        return [("Changes", changed + pending, note, False)]
    return [
        ("Introduced or changed by this pull request", changed, note, False),
        (
            "Already pending on the base: drift the nodes have whatever this pull request says",
            pending,
            lambda item: "",
            True,
        ),
        (
            "No longer done: the base would make these changes, this pull request does not",
            list(review.dropped),
            lambda item: "",
            True,
        ),
    ]


def _changes(review: Review) -> Iterable[PlanItem]:
    quiet = ("noop", "unmanaged")
    for node in review.head.nodes:
        for item in node.items:
            if item.action.value not in quiet:
                yield item


def _all_items(review: Review) -> Iterable[PlanItem]:
    yield from _changes(review)
    yield from review.dropped


def _by_node(
    items: Sequence[PlanItem],
    note: Callable[[PlanItem], str],
    diffs: bool,
    budget: list[int | None],
) -> list[str]:
    lines: list[str] = []
    for node in sorted({i.node for i in items}):
        shown: list[str] = []
        for item in (i for i in items if i.node == node):
            if budget[0] is not None:
                budget[0] -= 1
                if budget[0] < 0:
                    continue
            shown += item_lines(item, note(item), diffs=diffs)
        if shown:
            lines += [f"**{node}**", "", *shown, ""]
    if not lines:
        lines = ["(left out to fit)", ""]
    return lines


def render_invalid(diagnostics: Sequence[Diagnostic], source: str) -> str:
    """The comment for a head whose documents are invalid: every problem, as ``fazai
    validate`` prints them (the first 50)."""
    errors = [d for d in diagnostics if d.is_error]
    lines = [f"### {TITLE}: ❌ invalid documents", ""]
    lines += [f"Head: `{cell(source)}`: {len(errors)} error(s); nothing was planned.", ""]
    fence = "````"
    shown = list(diagnostics)[:MAX_DIAGNOSTICS]
    lines += [fence, *(str(d).replace(fence, "'") for d in shown), fence]
    if len(diagnostics) > MAX_DIAGNOSTICS:
        lines += ["", f"> … and {len(diagnostics) - MAX_DIAGNOSTICS} more; run `fazai validate`."]
    return terminal.clean("\n".join(lines) + "\n")
