"""Building a :class:`DriftReport` from the controller's drift or from one plan.

Both inputs carry plan JSON items (``controller/plan/plan.schema.json``): ``{node, kind,
name, action, changes: [{field, live, desired, diff?}], error?}``. Items written as
``{path, old, new}`` changes are read too, so a publisher using that shape still reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

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
from controller.store.redact import redact

_REPORTED = (*DRIFT_ACTIONS, "error")  # noop and unmanaged are not drift


def field_changes(item: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    out = []
    for change in item.get("changes") or ():
        if not isinstance(change, Mapping):
            continue
        name = change.get("field", change.get("path", ""))
        diff = change.get("diff")
        out.append(
            FieldChange(
                field=str(name),
                live=change.get("live", change.get("old")),
                desired=change.get("desired", change.get("new")),
                diff=diff if isinstance(diff, str) and diff else None,
            )
        )
    return tuple(out)


def drifted_resources(
    node: str, source: str | None, items: Iterable[Mapping[str, Any]]
) -> tuple[DriftedResource, ...]:
    """The items of ``node`` that are drift (or could not be compared), sorted."""
    out = []
    for item in items:
        action = str(item.get("action") or "")
        if action not in _REPORTED:
            continue
        error = item.get("error")
        out.append(
            DriftedResource(
                node=str(item.get("node") or node),
                source=source,
                kind=str(item.get("kind", "")),
                name=str(item.get("name", "")),
                action=action,
                changes=field_changes(item),
                error=str(error) if error else None,
            )
        )
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
        # Redacted again here: the report is written to files and maybe a git branch,
        # so it does not trust its caller to have done it.
        found = drifted_resources(entry.node, entry.source, redact(list(entry.items)))
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
    plan: Mapping[str, Any],
    *,
    title: str,
    generated: datetime,
    window_days: int,
    series: Sequence[SeriesPoint] = (),
    source: SourceRef | None = None,
) -> DriftReport:
    """The report of one plan as ``plan_json.to_dict`` writes it (``fazai drift``)."""
    name = source.name if source else str(plan.get("source", ""))
    revision = plan.get("revision")
    changes = [c for c in plan.get("changes") or () if isinstance(c, Mapping)]
    nodes = []
    resources: list[DriftedResource] = []
    for entry in plan.get("nodes") or ():
        node = str(entry.get("node", ""))
        found = drifted_resources(node, name, [c for c in changes if c.get("node") == node])
        resources.extend(found)
        nodes.append(
            summarize(
                node,
                found,
                source=name,
                platform=entry.get("platform"),
                mode=None,
                checked=generated,
                revision=revision,
                error=entry.get("error"),
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
