"""The write-ahead journal of apply: one transaction per (run, node).

The protocol a transaction follows, and what each record lets a restarted controller do:

1. :meth:`Journal.begin_transaction`.
2. :meth:`Journal.record_snapshot` for each object it will touch, before touching it: the
   state to restore on rollback (``None``: the object did not exist; undo deletes it).
3. For each change: :meth:`Journal.intend` *before* sending it (durable when it returns),
   then :meth:`Journal.mark_done` or :meth:`Journal.mark_failed` after. A step still
   ``intended`` after a crash may or may not have reached the node; the snapshots, not
   the steps, say what to restore, so rollback does not need to know. Changes sent
   together (a batch of steps) are intended together, :meth:`Journal.intend_many`, and
   steps reported together are marked together, :meth:`Journal.mark_done_many`: one
   commit, one fsync, for all of them. Marking a step done later than the node reported
   it is safe (a crash in between leaves it ``intended``, which rollback handles);
   intending it later than sending it never is.
4. :meth:`Journal.commit` once verified, or :meth:`Journal.mark_rolled_back` once undone.

A controller killed anywhere in between finds the transaction in
:meth:`Journal.open_transactions` at its next start. Every record is committed (and the
WAL fsync'd) before the call returns, so "returned" means "survives a crash".

Payloads and snapshots are redacted before they are written (see ``redact``): a field
that held a secret comes back as ``***`` and must be restored from its document's secret
reference, not from the journal. The one exception: the secret fields a snapshot names in
``record_snapshot(..., escrow=...)`` are sealed into the escrow (see ``escrow``), stored as
ciphertext in the snapshot itself, and opened again with :meth:`Journal.reveal`. They live
exactly as long as the snapshot row (deleted with its transaction and run), that is, as
long as ``fazai rollback`` can use the snapshot.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from controller.errors import StoreError
from controller.store.audit import AuditLog, Entry
from controller.store.database import Database, from_json, iso, last_id, parse_time, to_json
from controller.store.escrow import Escrow, Revealed, label
from controller.store.records import (
    Intent,
    Snapshot,
    Step,
    StepStatus,
    Transaction,
    TransactionStatus,
)


class Journal(AuditLog):
    _db: Database
    _now: Callable[[], datetime]
    _escrow: Escrow

    def begin_transaction(self, run_id: int, node: str) -> int:
        with self._db.write(f"beginning a transaction on {node}") as cur:
            try:
                cur.execute(
                    "INSERT INTO transactions (run_id, node, started, status) VALUES (?, ?, ?, ?)",
                    (run_id, node, iso(self._now()), TransactionStatus.OPEN.value),
                )
            except sqlite3.IntegrityError as exc:
                raise self._fail(
                    f"cannot begin a transaction for run {run_id} on {node}: "
                    + ("no such run" if "FOREIGN KEY" in str(exc) else "it already has one")
                ) from exc
            return last_id(cur)

    def record_snapshot(
        self,
        txn_id: int,
        kind: str,
        name: str,
        key: str,
        before: Mapping[str, Any] | None,
        *,
        escrow: Collection[str] = (),
    ) -> int:
        """Record the state of one object before the transaction changes it; once per object
        (a second snapshot would capture a state this transaction already changed).

        ``escrow``: secret-named fields (anywhere in ``before``) whose values the rollback
        needs; they are sealed into the escrow instead of masked. Raises EscrowError, with
        nothing recorded, when there is such a value and the escrow key cannot be had."""
        what = f"the snapshot of {kind}/{name}"
        if before is not None and escrow:
            before = self._escrow.seal(before, escrow, _context(txn_id, kind, name, key))
        text = None if before is None else to_json(before, what, self._db.path)
        with self._db.write(f"recording a snapshot of {kind}/{name}") as cur:
            self._require_open(cur, txn_id)
            try:
                cur.execute(
                    "INSERT INTO snapshots (txn_id, kind, name, key, before, recorded)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (txn_id, kind, name, key, text, iso(self._now())),
                )
            except sqlite3.IntegrityError as exc:
                raise self._fail(
                    f"transaction {txn_id} already has a snapshot of {kind}/{name} ({key})"
                ) from exc
            return last_id(cur)

    def intend(
        self, txn_id: int, seq: int, kind: str, name: str, action: str, payload: Mapping[str, Any]
    ) -> int:
        """Record a change about to be sent; on disk when this returns. Returns the step id."""
        (step,) = self.intend_many(txn_id, seq, [Intent(kind, name, action, payload)])
        return step

    def intend_many(self, txn_id: int, seq: int, intents: Sequence[Intent]) -> list[int]:
        """Record changes about to be sent, as steps ``seq``, ``seq + 1``...: all of them on
        disk, in one commit, when this returns; none if it raises. Returns the step ids."""
        if not intents:
            return []
        texts = [
            to_json(intent.payload, f"the payload of step {seq + i}", self._db.path)
            for i, intent in enumerate(intents)
        ]
        last = seq + len(intents) - 1
        span = f"step {seq}" if last == seq else f"steps {seq}-{last}"
        with self._db.write(f"recording {span} of transaction {txn_id}") as cur:
            self._require_open(cur, txn_id)
            when = iso(self._now())
            ids = []
            for i, (intent, text) in enumerate(zip(intents, texts, strict=True)):
                try:
                    cur.execute(
                        "INSERT INTO steps"
                        " (txn_id, seq, kind, name, action, payload, status, intended)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            txn_id,
                            seq + i,
                            intent.kind,
                            intent.name,
                            intent.action,
                            text,
                            StepStatus.INTENDED.value,
                            when,
                        ),
                    )
                except sqlite3.IntegrityError as exc:
                    raise self._fail(f"transaction {txn_id} already has a step {seq + i}") from exc
                ids.append(last_id(cur))
            return ids

    def mark_done(self, step_id: int) -> None:
        self.mark_done_many([step_id])

    def mark_done_many(self, step_ids: Sequence[int]) -> None:
        """Mark steps the node reported as made, in one commit; none if one of them cannot
        be (unknown, already marked, its transaction closed)."""
        if not step_ids:
            return
        span = ", ".join(str(s) for s in step_ids)
        with self._db.write(f"marking step(s) {span} done") as cur:
            when = iso(self._now())
            for step_id in step_ids:
                self._finish_step(cur, step_id, StepStatus.DONE, "", when)

    def mark_failed(self, step_id: int, message: str) -> None:
        with self._db.write(f"marking step {step_id} failed") as cur:
            self._finish_step(cur, step_id, StepStatus.FAILED, message, iso(self._now()))

    def commit(self, txn_id: int, audit: Entry | None = None) -> None:
        """Close the transaction as applied. Refused while a step is still only intended:
        nobody knows whether that change landed, so the node is not known to converge.
        ``audit``: its record in the audit trail, appended in the same transaction."""
        with self._db.write(f"committing transaction {txn_id}") as cur:
            self._require_open(cur, txn_id)
            pending = cur.execute(
                "SELECT seq FROM steps WHERE txn_id = ? AND status = ? ORDER BY seq",
                (txn_id, StepStatus.INTENDED.value),
            ).fetchall()
            if pending:
                seqs = ", ".join(str(row[0]) for row in pending)
                raise StoreError(
                    str(self._db.path),
                    f"cannot commit transaction {txn_id}: step(s) {seqs} not marked done or failed",
                )
            self._close(cur, txn_id, TransactionStatus.COMMITTED, "")
            if audit is not None:
                self._audit(cur, audit, _finished(cur, txn_id))

    def mark_rolled_back(self, txn_id: int, message: str, audit: Entry | None = None) -> None:
        with self._db.write(f"closing transaction {txn_id} as rolled back") as cur:
            self._require_open(cur, txn_id)
            self._close(cur, txn_id, TransactionStatus.ROLLED_BACK, message)
            if audit is not None:
                self._audit(cur, audit, _finished(cur, txn_id))

    def open_transactions(self) -> list[Transaction]:
        """Transactions neither committed nor rolled back, oldest first: what a controller
        that stopped mid-apply left behind, to be rolled back at its next start."""
        with self._db.read("reading open transactions") as cur:
            ids = [
                row[0]
                for row in cur.execute(
                    "SELECT id FROM transactions WHERE status = ? ORDER BY id",
                    (TransactionStatus.OPEN.value,),
                )
            ]
            return [_transaction(cur, txn_id) for txn_id in ids]

    def open_on(self, node: str) -> list[Transaction]:
        """The open transactions on ``node``, oldest first: while one is open a new one
        must not begin there (its snapshot would be taken of a half-applied node, and the
        old one's rollback would later undo the new one's commit)."""
        return [t for t in self.open_transactions() if t.node == node]

    def later_commit(self, node: str, txn_id: int) -> int | None:
        """The first transaction on ``node`` committed after ``txn_id`` began, if any: the
        node was converged again since, so ``txn_id``'s snapshot is older than what is
        there now and must never be restored over it."""
        with self._db.read(f"reading the transactions on {node} after {txn_id}") as cur:
            row = cur.execute(
                "SELECT id FROM transactions WHERE node = ? AND id > ? AND status = ?"
                " ORDER BY id LIMIT 1",
                (node, txn_id, TransactionStatus.COMMITTED.value),
            ).fetchone()
            return int(row[0]) if row else None

    def run_transactions(self, run_id: int) -> list[Transaction]:
        """Every transaction of a run, by node name: what ``fazai rollback RUN`` undoes."""
        with self._db.read(f"reading the transactions of run {run_id}") as cur:
            ids = [
                row[0]
                for row in cur.execute(
                    "SELECT id FROM transactions WHERE run_id = ? ORDER BY node, id", (run_id,)
                )
            ]
            return [_transaction(cur, txn_id) for txn_id in ids]

    def transaction(self, txn_id: int) -> Transaction | None:
        with self._db.read(f"reading transaction {txn_id}") as cur:
            if cur.execute("SELECT 1 FROM transactions WHERE id = ?", (txn_id,)).fetchone():
                return _transaction(cur, txn_id)
            return None

    def snapshots(self, txn_id: int) -> list[Snapshot]:
        """The transaction's snapshots, last recorded first: the order to restore them in."""
        with self._db.read(f"reading the snapshots of transaction {txn_id}") as cur:
            return _snapshots(cur, txn_id)

    def reveal(self, txn_id: int, snapshot: Snapshot) -> Revealed:
        """The snapshot's ``before`` with its escrowed secrets opened (keep it out of logs);
        a secret that cannot be opened (no key, another key, a damaged value) stays masked
        and is listed in ``failures``. Reads no row; never raises for the key."""
        context = _context(txn_id, snapshot.kind, snapshot.name, snapshot.key)
        where = label(snapshot.kind, snapshot.name, snapshot.key)
        return self._escrow.reveal(snapshot.before, context, where)

    def _finish_step(
        self, cur: sqlite3.Cursor, step_id: int, status: StepStatus, message: str, when: str
    ) -> None:
        row = cur.execute(
            "SELECT s.status, t.id, t.status FROM steps s"
            " JOIN transactions t ON t.id = s.txn_id WHERE s.id = ?",
            (step_id,),
        ).fetchone()
        if row is None:
            raise StoreError(str(self._db.path), f"no journal step {step_id}")
        step_status, txn_id, txn_status = row
        if txn_status != TransactionStatus.OPEN.value:
            raise StoreError(
                str(self._db.path), f"step {step_id}: transaction {txn_id} is {txn_status}"
            )
        if step_status != StepStatus.INTENDED.value:
            raise StoreError(str(self._db.path), f"step {step_id} is already {step_status}")
        cur.execute(
            "UPDATE steps SET status = ?, message = ?, finished = ? WHERE id = ?",
            (status.value, message, when, step_id),
        )

    def _require_open(self, cur: sqlite3.Cursor, txn_id: int) -> None:
        row = cur.execute("SELECT status FROM transactions WHERE id = ?", (txn_id,)).fetchone()
        if row is None:
            raise StoreError(str(self._db.path), f"no transaction {txn_id}")
        if row[0] != TransactionStatus.OPEN.value:
            raise StoreError(str(self._db.path), f"transaction {txn_id} is already {row[0]}")

    def _close(
        self, cur: sqlite3.Cursor, txn_id: int, status: TransactionStatus, message: str
    ) -> None:
        cur.execute(
            "UPDATE transactions SET status = ?, message = ?, finished = ? WHERE id = ?",
            (status.value, message, iso(self._now()), txn_id),
        )

    def _fail(self, message: str) -> StoreError:
        return StoreError(str(self._db.path), message)


def _finished(cur: sqlite3.Cursor, txn_id: int) -> str:
    row = cur.execute("SELECT finished FROM transactions WHERE id = ?", (txn_id,)).fetchone()
    return str(row[0])


def _transaction(cur: sqlite3.Cursor, txn_id: int) -> Transaction:
    run_id, node, started, status = cur.execute(
        "SELECT run_id, node, started, status FROM transactions WHERE id = ?", (txn_id,)
    ).fetchone()
    steps = tuple(
        Step(
            id=row[0],
            seq=row[1],
            kind=row[2],
            name=row[3],
            action=row[4],
            payload=from_json(row[5]),
            status=StepStatus(row[6]),
            message=row[7],
        )
        for row in cur.execute(
            "SELECT id, seq, kind, name, action, payload, status, message FROM steps"
            " WHERE txn_id = ? ORDER BY seq",
            (txn_id,),
        )
    )
    return Transaction(
        id=txn_id,
        run_id=run_id,
        node=node,
        started=parse_time(started),
        status=TransactionStatus(status),
        snapshots=tuple(_snapshots(cur, txn_id)),
        steps=steps,
    )


def _snapshots(cur: sqlite3.Cursor, txn_id: int) -> list[Snapshot]:
    return [
        Snapshot(id=row[0], kind=row[1], name=row[2], key=row[3], before=from_json(row[4]))
        for row in cur.execute(
            "SELECT id, kind, name, key, before FROM snapshots WHERE txn_id = ? ORDER BY id DESC",
            (txn_id,),
        )
    ]


def _context(txn_id: int, kind: str, name: str, key: str) -> tuple[str, str, str, str]:
    """What a sealed value is bound to: it opens only in this record of this transaction."""
    return (str(txn_id), kind, name, key)
