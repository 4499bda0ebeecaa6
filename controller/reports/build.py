"""Building a :class:`DriftReport` from the controller's drift or from one plan.

Both come to typed plan items: the drift table holds them (secrets masked), and a plan
read back from the store is typed again by ``plan_json.from_dict`` at the edge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from controller.plan.items import Plan, PlanItem
from controller.plan.masked import masked_all
from controller.reconcile.handle import NodeDrift, SourceStatus
from controller.reports.model import (
    DRIFT_ACTIONS,
    DriftedResource,
    DriftReport,
    FieldChange,
    NodeSummary,
    SeriesPoint,
    SourceRef,
)

_REPORTED = (*DRIFT_ACTIONS, "error")  # noop and unmanaged are not drift


def field_changes(item: PlanItem) -> tuple[FieldChange, ...]:
    return tuple(FieldChange(c.field, c.live, c.desired, c.diff or None) for c in item.changes)


def drifted_resources(
    node: str, source: str | None, items: Iterable[PlanItem]
) -> tuple[DriftedResource, ...]:
    """The items of ``node`` that are drift (or could not be compared), sorted."""
    out = [
        DriftedResource(
            node=item.node or node,
            source=source,
            kind=item.kind,
            name=item.name,
            action=item.action.value,
            changes=field_changes(item),
            error=item.error or None,
        )
        for item in items
        if item.action.value in _REPORTED
    ]
    return tuple(sorted(out, key=lambda r: (r.node, r.kind, r.name)))


def summarize(
    node: str,
    resources: Sequence[DriftedResource],
    *,
    source: str | None,
    platform: str | None,
    mode: str | None,
    checked: datetime | None,
    revision: str | None,
    error: str | None,
) -> NodeSummary:
    count = {action: sum(1 for r in resources if r.action == action) for action in _REPORTED}
    return NodeSummary(
        node=node,
        source=source,
        platform=platform,
        mode=mode,
        checked=checked,
        revision=revision,
        create=count["create"],
        update=count["update"],
        delete=count["delete"],
        errors=count["error"],
        error=error,
    )


def source_ref(status: SourceStatus) -> SourceRef:
    return SourceRef(
        name=status.name,
        location=status.location,
        branch=status.branch,
        revision=status.revision,
        last_sync=status.last_sync,
        error=status.error,
    )


def from_drift(
    drift: Sequence[NodeDrift],
    sources: Sequence[SourceStatus],
    *,
    title: str,
    generated: datetime,
    window_days: int,
    series: Sequence[SeriesPoint] = (),
    platforms: Mapping[str, str] | None = None,
) -> DriftReport:
    """The report of the running controller: its last read of every node."""
    platforms = platforms or {}
    nodes = []
    resources: list[DriftedResource] = []
    for entry in sorted(drift, key=lambda d: (d.node, d.source)):
        # Masked again here: the report is written to files and maybe a git branch, so
        # it does not trust its caller to have done it.
        found = drifted_resources(entry.node, entry.source, masked_all(entry.items))
        resources.extend(found)
        nodes.append(
            summarize(
                entry.node,
                found,
                source=entry.source,
                platform=platforms.get(entry.node),
                mode=entry.mode.value,
                checked=entry.checked,
                revision=entry.revision,
                error=entry.error,
            )
        )
    return DriftReport(
        title=title,
        generated=generated,
        window_days=window_days,
        sources=tuple(source_ref(s) for s in sorted(sources, key=lambda s: s.name)),
        nodes=tuple(nodes),
        resources=tuple(sorted(resources, key=lambda r: (r.node, r.kind, r.name))),
        series=tuple(series),
    )


def from_plan(
    plan: Plan,
    *,
    title: str,
    generated: datetime,
    window_days: int,
    series: Sequence[SeriesPoint] = (),
    source: SourceRef | None = None,
) -> DriftReport:
    """The report of one plan (``fazai drift``; a plan read back from the store is typed
    again by ``plan_json.from_dict`` first)."""
    read = plan
    name = source.name if source else read.source
    revision = read.revision
    nodes = []
    resources: list[DriftedResource] = []
    for entry in read.nodes:
        found = drifted_resources(entry.node, name, masked_all(entry.items))
        resources.extend(found)
        nodes.append(
            summarize(
                entry.node,
                found,
                source=name,
                platform=entry.platform,
                mode=None,
                checked=generated,
                revision=revision,
                error=entry.error,
            )
        )
    ref = source or SourceRef(name=name, location=name, branch=None, revision=revision)
    return DriftReport(
        title=title,
        generated=generated,
        window_days=window_days,
        sources=(ref,),
        nodes=tuple(sorted(nodes, key=lambda n: n.node)),
        resources=tuple(sorted(resources, key=lambda r: (r.node, r.kind, r.name))),
        series=tuple(series),
    )
