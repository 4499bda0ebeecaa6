"""Drift over time, read from the state store's run log.

Every run that planned (``plan``, ``apply``, ``drift``) keeps its plan JSON; the number of
its changes that are drift is the point the chart draws. The counting is done by SQLite's
JSON functions, so a month of runs every ten minutes (thousands of plans) is summed
without loading a single plan into Python.

Read-only, through the store's own connection and lock (``Database.read``): these queries
never write and depend only on the ``runs`` table's ``id, started, source, revision,
command, trigger, plan`` columns, so the store's schema can grow around them.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

from controller.reports.model import DRIFT_ACTIONS, SeriesPoint
from controller.store import StateStore
from controller.store.database import iso, parse_time

PLANNING_COMMANDS = ("plan", "apply", "drift")
MAX_POINTS = 20_000  # a month at one run a minute is 43200: keep the newest this many

_ACTIONS = ", ".join(f"'{a}'" for a in DRIFT_ACTIONS)

_RUNS = f"""
    SELECT id, started, source, revision, command, trigger FROM runs
    WHERE started >= ? AND plan IS NOT NULL AND command IN ({", ".join("?" * 3)})
    ORDER BY id DESC LIMIT ?
"""

# Per run and node: drifted and error counts, from the plan's ``changes`` list.
_CHANGES = f"""
    SELECT r.id, json_extract(c.value, '$.node') AS node,
           sum(json_extract(c.value, '$.action') IN ({_ACTIONS})),
           sum(json_extract(c.value, '$.action') = 'error')
    FROM runs r, json_each(r.plan, '$.changes') c
    WHERE r.id >= ? AND r.started >= ? AND r.plan IS NOT NULL
    GROUP BY r.id, node
"""

# Nodes that could not be read at all.
_NODE_ERRORS = """
    SELECT r.id, count(*) FROM runs r, json_each(r.plan, '$.nodes') n
    WHERE r.id >= ? AND r.started >= ? AND r.plan IS NOT NULL
          AND json_extract(n.value, '$.status') = 'error'
    GROUP BY r.id
"""

_PLATFORMS = """
    SELECT json_extract(n.value, '$.node'), json_extract(n.value, '$.platform')
    FROM (SELECT id, plan FROM runs WHERE plan IS NOT NULL ORDER BY id DESC LIMIT ?) r,
         json_each(r.plan, '$.nodes') n
    ORDER BY r.id DESC
"""


def drift_series(
    store: StateStore,
    since: datetime,
    *,
    sources: Collection[str] | None = None,
    limit: int = MAX_POINTS,
) -> tuple[SeriesPoint, ...]:
    """One point per planning run started at or after ``since``, oldest first; only runs
    of ``sources`` when given."""
    after = iso(since)
    with store._db.read("reading drift history") as cur:
        runs = cur.execute(_RUNS, (after, *PLANNING_COMMANDS, limit)).fetchall()
        if not runs:
            return ()
        first = min(row[0] for row in runs)
        per_node: dict[int, list[tuple[str, int, int]]] = {}
        for run_id, node, drifted, errors in cur.execute(_CHANGES, (first, after)):
            per_node.setdefault(run_id, []).append((str(node), int(drifted or 0), int(errors or 0)))
        node_errors = dict(cur.execute(_NODE_ERRORS, (first, after)).fetchall())
    points = []
    for run_id, started, source, revision, command, trigger in reversed(runs):
        if sources is not None and source not in sources:
            continue
        counts = per_node.get(run_id, [])
        points.append(
            SeriesPoint(
                run_id=run_id,
                time=parse_time(started).astimezone(UTC),
                source=source,
                revision=revision,
                command=command,
                trigger=trigger,
                drifted=sum(d for _, d, _ in counts),
                errors=sum(e for _, _, e in counts) + int(node_errors.get(run_id, 0)),
                nodes=tuple(sorted((n, d) for n, d, _ in counts if d)),
            )
        )
    return tuple(points)


def node_platforms(store: StateStore, runs: int = 200) -> dict[str, str]:
    """Each node's platform as the newest of the last ``runs`` plans says."""
    out: dict[str, str] = {}
    with store._db.read("reading node platforms") as cur:
        for node, platform in cur.execute(_PLATFORMS, (runs,)):
            if isinstance(node, str) and isinstance(platform, str):
                out.setdefault(node, platform)
    return out
