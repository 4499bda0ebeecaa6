"""``fazai drift``: plan now, record the run, report the drift with its history.

The run is recorded in the state store as a ``drift`` run (trigger ``cli``) with its plan,
so a ``fazai drift`` from the system's cron builds the same history the controller's
schedules chart. A state store that cannot be opened costs the history, not the report.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from controller.errors import StoreError
from controller.output import terminal
from controller.plan import plan_json
from controller.plan.items import Plan
from controller.reports import build, files, history, render
from controller.reports.model import DriftReport, SeriesPoint
from controller.reports.values import stamp
from controller.store import Command, NodeStatus, RunStatus, StateStore, Trigger
from controller.words import count

TITLE = "fazai drift"
FORMATS = ("markdown", "json", "html")


def record(store: StateStore, plan: Plan) -> int:
    """Record ``plan`` as a finished drift run; returns its id."""
    document = plan_json.to_dict(plan)
    run_id = store.start_run(Trigger.CLI, Command.DRIFT, plan.source, plan.revision, document)
    for node in plan.nodes:
        if node.error is not None:
            status, message = NodeStatus.FAILED, node.error
        elif node.failed:
            status, message = NodeStatus.FAILED, "some resources could not be compared"
        elif node.changed:
            status, message = NodeStatus.SKIPPED, f"{count(len(node.changed), 'change')} found"
        else:
            status, message = NodeStatus.CONVERGED, "in sync"
        store.record_node(run_id, node.node, status, message, node.seconds)
    failed = sum(1 for n in plan.nodes if n.failed)
    overall = (
        RunStatus.SUCCEEDED
        if not failed
        else RunStatus.FAILED
        if failed == len(plan.nodes)
        else RunStatus.PARTIAL
    )
    store.finish_run(run_id, overall)
    return run_id


def report(
    plan: Plan,
    *,
    output: str,
    report_dir: Path | None,
    state_file: Path | None,
    days: int,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    now: datetime | None = None,
) -> int:
    """Record, build, print in ``output`` and write to ``report_dir``; the exit code."""
    generated = now or datetime.now(UTC)
    series: tuple[SeriesPoint, ...] = ()
    try:
        with StateStore(state_file) as store:
            print(f"state: {store.path}", file=err)
            record(store, plan)
            series = history.drift_series(store, generated - timedelta(days=days))
    except StoreError as exc:
        print(terminal.clean(f"warning: no history: {exc}"), file=err)
    result = build.from_plan(
        plan,
        title=TITLE,
        generated=generated,
        window_days=days,
        series=series,
    )
    if report_dir is not None:
        written = write(result, report_dir)
        names = ", ".join(str(p) for p in written)
        print(f"report written to {names} (each also as latest.*)", file=err)
    out.write(render.RENDERERS[output](result))
    out.flush()
    return plan.exit_code


def write(result: DriftReport, folder: Path) -> list[Path]:
    """``<folder>/<timestamp>.{md,json,html}`` and ``latest.*``; the stamped files' paths
    (markdown, JSON, HTML)."""
    written = files.write_report(
        folder, "", stamp(result.generated), render.render(result, FORMATS)
    )
    return [folder / p for p in written.files if not p.name.startswith("latest.")]
