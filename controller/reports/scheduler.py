"""Scheduled drift reports: at each cron time, a fresh drift check, then the report written
to the reports folder and, optionally, committed to a git branch.

Freshness: a schedule with ``refresh`` (the default) asks the loop for a reconcile of
every source (``handle.trigger(reason="schedule")``) and waits, up to ``settleTimeout``,
for a run of each source that *started after* the request to finish (``run.started`` /
``run.finished`` events); then it reports from ``handle.drift()``. A source that is
backing off is not waited for. Whatever has not settled by the deadline is reported as
last read, and each node shows when that was. In ``auto`` mode the triggered reconcile
heals what it finds, as the periodic drift check does; the wait ends when the plan run
finishes, so the report shows the drift that check found (the apply that follows is in
the next report's history). ``refresh: false`` reports the last drift check as it is,
without triggering.

Nothing here blocks the event loop: rendering is fast, file writes and git run in a thread.
A failing report (folder not writable, git refusing) is logged and the schedule carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import git

from controller.errors import FazaiError
from controller.events import EventType
from controller.reconcile.handle import ControllerHandle
from controller.reports import branch, build, cron, files, history, render
from controller.reports.clock import Clock, SystemClock
from controller.reports.model import DriftReport
from controller.reports.settings import ReportSettings, Schedule
from controller.reports.values import short, stamp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What one firing of a schedule produced."""

    schedule: str
    report: DriftReport
    written: files.Written
    commit: str | None = None  # the reports-branch commit, when one was made
    settled: bool = True  # False: a fresh check did not finish before the deadline


class ReportScheduler:
    def __init__(
        self,
        settings: ReportSettings,
        handle: ControllerHandle,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.handle = handle
        self.clock: Clock = clock or SystemClock()
        self.outcomes: list[Outcome] = []  # the latest few, newest last (status, tests)

    def next_time(self, schedule: Schedule, after: datetime) -> datetime:
        return cron.next_after(schedule.cron, after, schedule.zone).astimezone(UTC)

    async def run(self, stop: asyncio.Event) -> None:
        """Fire every schedule at its times until ``stop`` is set. A time missed while a
        report was being made is skipped, not made up."""
        if not self.settings.schedules:
            return
        now = self.clock.now()
        due = {s.name: self.next_time(s, now) for s in self.settings.schedules}
        by_name = {s.name: s for s in self.settings.schedules}
        for name, moment in sorted(due.items()):
            log.info("report schedule %s: next at %s", name, moment.isoformat())
        while not stop.is_set():
            name = min(due, key=lambda n: (due[n], n))
            if not await self.clock.sleep_until(due[name], stop):
                return
            schedule = by_name[name]
            await self._fire_logged(schedule)
            due[name] = self.next_time(schedule, max(due[name], self.clock.now()))

    async def _fire_logged(self, schedule: Schedule) -> None:
        try:
            await self.fire(schedule)
        except FazaiError as exc:
            log.error("report %s failed: %s", schedule.name, exc)
        except Exception:
            # A bug must not stop the other schedules (or later firings of this one).
            log.exception("report %s failed", schedule.name)

    async def fire(self, schedule: Schedule) -> Outcome:
        """Make one report of ``schedule`` now: check, build, write, commit."""
        settled = True
        if schedule.refresh:
            settled = await self.refresh()
        report = await self.build(schedule)
        renderings = render.render(report, schedule.formats)
        written = await asyncio.to_thread(
            files.write_report,
            self.settings.dir,
            schedule.name,
            stamp(report.generated),
            renderings,
        )
        removed = await asyncio.to_thread(
            files.prune, self.settings.dir, schedule.name, schedule.keep
        )
        if removed:
            log.info("report %s: removed %d old file(s)", schedule.name, len(removed))
        commit = await self._commit(schedule, report, written) if self.settings.branch else None
        log.info(
            "report %s: %s, %d drifted resource(s); wrote %s",
            schedule.name,
            report.status,
            report.drifted,
            ", ".join(str(p) for p in written.files if "latest" not in p.name),
        )
        outcome = Outcome(schedule.name, report, written, commit, settled)
        self.outcomes = [*self.outcomes[-9:], outcome]
        return outcome

    async def build(self, schedule: Schedule) -> DriftReport:
        # The loop's view first, before any await: it is what the check just found.
        drift, sources = self.handle.drift(), self.handle.sources()
        generated = self.clock.now()
        since = generated - timedelta(days=schedule.days)
        store = self.handle.store
        series = await asyncio.to_thread(history.drift_series, store, since)
        platforms = await asyncio.to_thread(history.node_platforms, store)
        return build.from_drift(
            drift,
            sources,
            title=schedule.name,
            generated=generated,
            window_days=schedule.days,
            series=series,
            platforms=platforms,
        )

    async def refresh(self) -> bool:
        """Trigger a drift check of every source and wait for it to finish (or the
        deadline); True when every awaited source finished a run started after the
        request."""
        now = datetime.now(UTC)
        pending = {
            s.name
            for s in self.handle.sources()
            if s.retry_at is None or s.retry_at <= now  # a source backing off will not run
        }
        if not pending:
            return True
        started: dict[object, str | None] = {}
        async with self.handle.events.subscribe() as queue:
            try:
                await self.handle.trigger(None, reason="schedule")
            except Exception as exc:  # the loop stopping, say: report what it last saw
                log.warning("report: cannot trigger a drift check (%s); reporting the last", exc)
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.settle_timeout):
                    while pending:
                        event = await queue.get()
                        run_id = event.data.get("run_id")
                        if event.type is EventType.RUN_STARTED:
                            started[run_id] = event.data.get("source")
                        elif event.type is EventType.RUN_FINISHED and run_id in started:
                            pending.discard(str(event.data.get("source") or started[run_id]))
        if pending:
            log.warning(
                "report: no fresh drift check of %s within %.0fs; reporting their last one",
                ", ".join(sorted(pending)),
                self.settings.settle_timeout,
            )
        return not pending

    async def _commit(
        self, schedule: Schedule, report: DriftReport, written: files.Written
    ) -> str | None:
        assert self.settings.branch is not None
        repository = self.settings.repository or self._local_source()
        if repository is None:
            log.error(
                "report %s: reports.branch is set but no repository: set reports.repository "
                "(no source is a local git repository)",
                schedule.name,
            )
            return None
        paths = {p.as_posix(): written.root / p for p in written.files}
        revisions = ", ".join(f"{s.name}@{short(s.revision)}" for s in report.sources)
        message = (
            f"FazAI drift report {schedule.name}: {report.status}, {report.drifted} drifted\n\n"
            f"Generated {report.generated.isoformat()} from {revisions or 'no source'}.\n"
        )
        done = await asyncio.to_thread(
            branch.commit_files,
            repository,
            self.settings.branch,
            paths,
            message,
            author=(self.settings.author_name, self.settings.author_email),
            remote=self.settings.remote if self.settings.push else None,
        )
        if done.commit:
            log.info(
                "report %s: committed %s to %s%s",
                schedule.name,
                done.commit[:12],
                self.settings.branch,
                f" and pushed to {self.settings.remote}" if done.pushed else "",
            )
        return done.commit

    def _local_source(self) -> Path | None:
        for source in self.handle.sources():
            path = Path(source.location).expanduser()
            if not path.is_dir():
                continue
            try:
                with git.Repo(path):
                    return path
            except (git.InvalidGitRepositoryError, git.NoSuchPathError):
                continue
        return None
