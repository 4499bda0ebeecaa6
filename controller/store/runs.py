"""The run log: one row per ``plan``/``apply``/``rollback``/``drift`` run, for ``history``."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from controller.errors import StoreError
from controller.store import locks
from controller.store.audit import AuditLog, Entry, run_started
from controller.store.database import Database, from_json, iso, last_id, parse_time, to_json
from controller.store.records import (
    Command,
    NodeResult,
    NodeStatus,
    Run,
    RunStatus,
    RunSummary,
    Trigger,
)

_COLUMNS = "id, started, finished, trigger, command, source, revision, status, actor, source_name"
# The runs that write to nodes: their start and end are in the audit trail.
_AUDITED = (Command.APPLY.value, Command.ROLLBACK.value)


class RunLog(AuditLog):
    _db: Database
    _now: Callable[[], datetime]

    def start_run(
        self,
        trigger: Trigger,
        command: Command,
        source: str,
        revision: str | None,
        plan: Mapping[str, Any] | None = None,
        actor: str = "",
        source_name: str = "",
    ) -> int:
        """Record a new run (in progress); returns its id, larger than every earlier one.
        ``actor``: who started it (see ``audit.os_actor``, ``audit.commit_actor``);
        ``source_name``: the configured source it reconciles (``fazai serve``), if any."""
        plan_json = None if plan is None else to_json(plan, "the plan", self._db.path)
        taken: Path | None = None
        try:
            with self._db.write("recording a run") as cur:
                run_id = self._insert_run(
                    cur, trigger, command, source, revision, plan_json, actor, source_name
                )
                if Command(command).value in _AUDITED:
                    entry = run_started(Command(command).value, source, revision, plan_json)
                    (started,) = cur.execute(
                        "SELECT started FROM runs WHERE id = ?", (run_id,)
                    ).fetchone()
                    self._audit(cur, Entry(entry.action, entry.payload, run_id=run_id), started)
                # The run's lock is taken before its row is visible to other processes:
                # an in_progress run whose lock is free has lost its process.
                taken = locks.run_lock_path(self._db.path, run_id)
                if not locks.try_acquire(taken):
                    taken = None
                    raise StoreError(str(self._db.path), f"run {run_id}'s lock is held")
        except BaseException:
            if taken is not None:
                locks.release(taken, remove=True)
            raise
        return run_id

    def _insert_run(
        self,
        cur: sqlite3.Cursor,
        trigger: Trigger,
        command: Command,
        source: str,
        revision: str | None,
        plan_json: str | None,
        actor: str = "",
        source_name: str = "",
    ) -> int:
        cur.execute(
            "INSERT INTO runs"
            " (started, trigger, command, source, revision, plan, status, actor, source_name)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                iso(self._now()),
                Trigger(trigger).value,
                Command(command).value,
                source,
                revision,
                plan_json,
                RunStatus.IN_PROGRESS.value,
                actor,
                source_name,
            ),
        )
        return last_id(cur)

    def name_run_source(self, run_ids: Sequence[int], source_name: str) -> None:
        """Record which configured source runs reconciled, for runs started by code that
        does not know it (the engine's apply); a run already named keeps its name."""
        if not run_ids:
            return
        marks = ", ".join("?" * len(run_ids))
        with self._db.write("naming the source of runs") as cur:
            cur.execute(
                f"UPDATE runs SET source_name = ? WHERE source_name = '' AND id IN ({marks})",
                (source_name, *run_ids),
            )

    def record_plan(self, run_id: int, plan: Mapping[str, Any]) -> None:
        """Attach (or replace) the plan of a run, for runs that plan after they start."""
        text = to_json(plan, "the plan", self._db.path)
        with self._db.write("recording a plan") as cur:
            cur.execute("UPDATE runs SET plan = ? WHERE id = ?", (text, run_id))
            self._require(cur, run_id)

    def record_node(
        self,
        run_id: int,
        node: str,
        status: NodeStatus,
        message: str = "",
        seconds: float = 0.0,
        audit: Entry | None = None,
    ) -> None:
        """Set one node's result in a run (again as it progresses: the last one counts);
        ``audit``: its record in the audit trail, appended in the same transaction."""
        with self._db.write(f"recording the result of {node}") as cur:
            try:
                cur.execute(
                    "INSERT INTO run_nodes (run_id, node, status, message, seconds)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id, node) DO UPDATE SET"
                    " status = excluded.status, message = excluded.message,"
                    " seconds = excluded.seconds",
                    (run_id, node, NodeStatus(status).value, message, float(seconds)),
                )
            except sqlite3.IntegrityError as exc:
                raise StoreError(str(self._db.path), f"no run {run_id}") from exc
            if audit is not None:
                self._audit(cur, audit)

    def finish_run(self, run_id: int, status: RunStatus) -> None:
        with self._db.write("finishing a run") as cur:
            when = iso(self._now())
            cur.execute(
                "UPDATE runs SET status = ?, finished = ? WHERE id = ?",
                (RunStatus(status).value, when, run_id),
            )
            self._require(cur, run_id)
            self._audit_finish(cur, run_id, RunStatus(status), when)
        locks.release(locks.run_lock_path(self._db.path, run_id), remove=True)

    def _audit_finish(
        self, cur: sqlite3.Cursor, run_id: int, status: RunStatus, when: str | None = None
    ) -> None:
        row = cur.execute("SELECT command FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is not None and row[0] in _AUDITED:
            entry = Entry("run.finished", {"status": status.value}, run_id=run_id)
            self._audit(cur, entry, when)

    def run_abandoned(self, run_id: int) -> bool:
        """Whether run ``run_id`` is recorded in progress with no live process running it
        (its lock is free: the kernel dropped it when its process died)."""
        path = locks.run_lock_path(self._db.path, run_id)
        if locks.held_here(path) or not locks.try_acquire(path):
            return False
        try:
            with self._db.read(f"reading run {run_id}") as cur:
                row = cur.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            # Read after locking: a run that finished meanwhile is not abandoned.
            return row is not None and row[0] == RunStatus.IN_PROGRESS.value
        finally:
            locks.release(path, remove=True)

    def close_abandoned_runs(self) -> list[int]:
        """Record ``interrupted`` every run left in progress by a process that is gone (a
        kill between nodes, a power cut); the ids, oldest first."""
        with self._db.read("reading the runs in progress") as cur:
            ids = [
                int(row[0])
                for row in cur.execute(
                    "SELECT id FROM runs WHERE status = ? ORDER BY id",
                    (RunStatus.IN_PROGRESS.value,),
                )
            ]
        closed = []
        for run_id in ids:
            if self.run_abandoned(run_id):
                with self._db.write(f"recording run {run_id} interrupted") as cur:
                    when = iso(self._now())
                    cur.execute(
                        "UPDATE runs SET status = ?, finished = ? WHERE id = ? AND status = ?",
                        (
                            RunStatus.INTERRUPTED.value,
                            when,
                            run_id,
                            RunStatus.IN_PROGRESS.value,
                        ),
                    )
                    if cur.rowcount:
                        closed.append(run_id)
                        self._audit_finish(cur, run_id, RunStatus.INTERRUPTED, when)
        return closed

    def list_runs(self, limit: int = 20, offset: int = 0) -> list[RunSummary]:
        """Runs newest first, ``limit`` of them after skipping ``offset``; without plans."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        with self._db.read("listing runs") as cur:
            rows = cur.execute(
                f"SELECT {_COLUMNS} FROM runs ORDER BY id DESC LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
            nodes = _node_results(cur, [row[0] for row in rows])
        return [_summary(row, nodes.get(row[0], ())) for row in rows]

    def get_run(self, run_id: int) -> Run | None:
        """The run with its node results and plan; None when there is no such run."""
        with self._db.read(f"reading run {run_id}") as cur:
            row = cur.execute(
                f"SELECT {_COLUMNS}, plan FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            if row is None:
                return None
            nodes = _node_results(cur, [run_id])
        summary = _summary(row[:-1], nodes.get(run_id, ()))
        return Run(**vars(summary), plan=from_json(row[-1]))

    def _require(self, cur: sqlite3.Cursor, run_id: int) -> None:
        if cur.rowcount == 0:
            raise StoreError(str(self._db.path), f"no run {run_id}")


def _node_results(cur: sqlite3.Cursor, run_ids: list[int]) -> dict[int, tuple[NodeResult, ...]]:
    if not run_ids:
        return {}
    marks = ", ".join("?" * len(run_ids))
    rows = cur.execute(
        "SELECT run_id, node, status, message, seconds FROM run_nodes"
        f" WHERE run_id IN ({marks}) ORDER BY run_id, node",
        run_ids,
    ).fetchall()
    out: dict[int, list[NodeResult]] = {}
    for run_id, node, status, message, seconds in rows:
        out.setdefault(run_id, []).append(NodeResult(node, NodeStatus(status), message, seconds))
    return {k: tuple(v) for k, v in out.items()}


def _summary(row: tuple[Any, ...], nodes: tuple[NodeResult, ...]) -> RunSummary:
    run_id, started, finished, trigger, command, source, revision, status, actor, name = row
    return RunSummary(
        id=run_id,
        started=parse_time(started),
        finished=None if finished is None else parse_time(finished),
        trigger=Trigger(trigger),
        command=Command(command),
        source=source,
        revision=revision,
        status=RunStatus(status),
        nodes=nodes,
        actor=actor,
        source_name=name,
    )
