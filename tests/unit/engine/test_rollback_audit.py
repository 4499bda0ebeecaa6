"""A node whose rollback failed: the ROLLBACK FAILED message reaches the user even when
its audit record cannot be written (the transaction stays open in the journal, and its
recovery is recorded when it happens)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from controller.engine import apply, trail
from controller.errors import FazaiError
from controller.store import Command, NodeStatus, StateStore, TransactionStatus, Trigger


class _Unreachable:
    """A node transaction whose rollback fails, as a node gone off the network does."""

    async def rollback(self, snapshot: Mapping[str, Any]) -> None:
        raise FazaiError("connection reset by peer")


def test_a_failed_rollback_keeps_its_message_when_the_trail_is_locked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "state.db"
    with StateStore(db, busy_timeout=0.2) as store:
        run_id = store.start_run(Trigger.CLI, Command.APPLY, "src", None)
        txn_id = store.begin_transaction(run_id, "web-1")
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the file: appends fail
        try:
            outcome = asyncio.run(
                apply._roll_back(
                    _Unreachable(),  # type: ignore[arg-type]
                    {},
                    store,
                    txn_id,
                    "verify failed",
                    lambda status, message: apply.NodeOutcome("web-1", status, message),
                    lambda result, message: trail.node_entry(run_id, "web-1", (), result, message),
                )
            )
        finally:
            holder.rollback()
            holder.close()
        assert outcome.status is NodeStatus.FAILED
        assert "ROLLBACK FAILED, will retry: connection reset by peer" in outcome.message
        assert "no audit record of its failed rollback" in caplog.text
        current = store.transaction(txn_id)
        assert current is not None and current.status is TransactionStatus.OPEN
