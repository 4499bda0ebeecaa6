"""The state store: one SQLite file holding the run log, the journal and the inventory."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from types import TracebackType

from controller.store import chain, locks
from controller.store.agenttools import VerifiedTools
from controller.store.audit import AuditLog
from controller.store.database import DEFAULT_BUSY_TIMEOUT, Database, utc_now
from controller.store.escrow import Escrow, KeyRef, key_ref
from controller.store.inventory import Inventory
from controller.store.journal import Journal
from controller.store.paths import default_path
from controller.store.runs import RunLog


class StateStore(RunLog, Journal, Inventory, VerifiedTools, AuditLog):
    """Opens (creating, or migrating to the current schema) the state file at ``path``,
    by default :func:`~controller.store.paths.default_path`.

    Raises StoreError naming the file when it cannot be used. ``now`` supplies timestamps
    (aware datetimes; tests pass a fixed clock). ``escrow_key`` says where the key of the
    escrow (the secrets a rollback needs, see ``escrow``) is; by default
    ``$FAZAI_ESCROW_KEY`` (the key), else ``$FAZAI_ESCROW_KEY_FILE`` (a file holding it),
    else ``state.escrow.key`` next to the state file, made on first use (mode 0600). It is
    only read when a secret is sealed or opened. ``audit_key`` says where the HMAC key
    of the audit trail is (see ``chain``); by default ``$FAZAI_AUDIT_KEY``, else
    ``$FAZAI_AUDIT_KEY_FILE``, else none (plain SHA-256 links). Close it, or use it as a
    context manager.
    """

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        now: Callable[[], datetime] = utc_now,
        escrow_key: KeyRef | None = None,
        audit_key: chain.KeyRef | None = None,
    ) -> None:
        # Resolved: the locks are files named after the state file, so one reached
        # through a symlink (or a relative path) must name the same lock files.
        given = Path(path).expanduser() if path is not None else default_path()
        self.path = given.resolve()
        self._now = now
        self.escrow_key = escrow_key or key_ref(self.path)
        self._escrow = Escrow(self.escrow_key, self.path)
        self.audit_key = audit_key or chain.key_ref()
        self._db = Database(self.path, busy_timeout=busy_timeout)

    @property
    def commits(self) -> int:
        """Write transactions committed so far through this store (each one fsync)."""
        return self._db.commits

    def close(self) -> None:
        self._db.close()

    # -- writer locks (see ``locks``) ---------------------------------------------------

    @contextlib.contextmanager
    def writer(self, timeout: float = 0.0) -> Iterator[None]:
        """The store's writer lock (``<state>.lock``), held by a CLI apply or rollback for
        its whole run; waits up to ``timeout`` s, then raises WriterLockedError."""
        with locks.hold(locks.store_lock_path(self.path), f"state store {self.path}", timeout):
            yield

    def note_run(self, run_id: int) -> None:
        """Name ``run_id`` in the store's writer lock, if this process holds it."""
        locks.note_run(locks.store_lock_path(self.path), run_id)

    def _node_locks(self, node: str, key: str | None) -> list[locks.Lock]:
        # The store's lock of the node, and the machine-wide one of what it connects to:
        # another state file on this host (sudo's, serve's) names the same machine.
        wanted = [locks.Lock(locks.node_lock_path(self.path, node))]
        if key is not None:
            machine = locks.machine_node_lock_path(key)
            wanted.append(locks.Lock(machine, shared=True, owner=node))
        return wanted

    @contextlib.asynccontextmanager
    async def node_writer(
        self,
        node: str,
        timeout: float = 0.0,
        *,
        key: str | None = None,
        run_id: int | None = None,
        interrupt: locks.Stop | None = None,
    ) -> AsyncIterator[None]:
        """The writer locks of ``node``: ``<state>.locks/node-<name>.lock`` and, given the
        node's ``key`` (``engine.nodekey``), the machine-wide one of that machine, held by
        whoever writes to the node; waits up to ``timeout`` s, then raises
        WriterLockedError naming the holder (Interrupted once ``interrupt`` is set)."""
        wanted = self._node_locks(node, key)
        async with locks.hold_async(
            wanted, f"node {node}", timeout, run_id=run_id, interrupt=interrupt
        ):
            yield

    def try_node_writer(self, node: str, key: str | None = None) -> bool:
        """Take ``node``'s writer locks if they are free (release with
        :meth:`release_node`, with the same ``key``); False while another process holds
        one."""
        return locks.try_all(self._node_locks(node, key)) is None

    def release_node(self, node: str, key: str | None = None) -> None:
        for lock in reversed(self._node_locks(node, key)):
            locks.release(lock.path)

    def node_holder(self, node: str, key: str | None = None) -> str:
        """Who holds ``node``'s lock (the one that is taken)."""
        wanted = self._node_locks(node, key)
        busy = next((lock for lock in wanted if not locks.is_free(lock)), wanted[0])
        return locks.describe(busy.path)

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
