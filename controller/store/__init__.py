"""The state store of FazAI: runs, the write-ahead journal of apply, owned objects, and
the tools the agent verified (until their pull request is merged).

One SQLite file (``$FAZAI_STATE``, else ``$XDG_STATE_HOME/fazai/state.db``, else
``~/.local/state/fazai/state.db``) in WAL mode with ``synchronous=FULL``: every call that
writes has committed and fsync'd when it returns, so a journal intent recorded before a
change is sent survives the controller being killed at any point.

Use from asyncio: every operation is one short transaction (milliseconds and one fsync),
so calling it from a coroutine is fine; a lock serializes the connection, so the same
store may also be used through ``asyncio.to_thread``. Several processes may open the file
at once (readers never block; writers wait up to ``busy_timeout``).

Nothing secret is ever written in clear: every JSON value goes through :func:`redact`
first, which masks secrets, except those a snapshot hands to the escrow for its rollback:
they are written encrypted, with a key kept outside the file (``$FAZAI_ESCROW_KEY``,
``$FAZAI_ESCROW_KEY_FILE``, else ``state.escrow.key`` next to it; see ``escrow``).
"""

from __future__ import annotations

from controller.store.escrow import EscrowFailure, KeyRef, Revealed, key_ref
from controller.store.paths import default_escrow_key_path, default_path
from controller.store.records import (
    Command,
    Intent,
    NodeResult,
    NodeStatus,
    OwnedObject,
    Run,
    RunStatus,
    RunSummary,
    Snapshot,
    Step,
    StepStatus,
    Transaction,
    TransactionStatus,
    Trigger,
    VerifiedToolRecord,
    overall_status,
)
from controller.store.redact import MASK, is_secret_key, redact
from controller.store.schema import SCHEMA_VERSION
from controller.store.store import StateStore

__all__ = [
    "MASK",
    "SCHEMA_VERSION",
    "Command",
    "EscrowFailure",
    "Intent",
    "KeyRef",
    "NodeResult",
    "NodeStatus",
    "OwnedObject",
    "Revealed",
    "Run",
    "RunStatus",
    "RunSummary",
    "Snapshot",
    "StateStore",
    "Step",
    "StepStatus",
    "Transaction",
    "TransactionStatus",
    "Trigger",
    "VerifiedToolRecord",
    "default_escrow_key_path",
    "default_path",
    "is_secret_key",
    "key_ref",
    "overall_status",
    "redact",
]
