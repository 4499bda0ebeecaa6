"""The state store: one SQLite file holding the run log, the journal and the inventory."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from types import TracebackType

from controller.store import locks
from controller.store.database import DEFAULT_BUSY_TIMEOUT, Database, utc_now
from controller.store.escrow import Escrow, KeyRef, key_ref
from controller.store.inventory import Inventory
from controller.store.journal import Journal
from controller.store.paths import default_path
from controller.store.runs import RunLog


class StateStore(RunLog, Journal, Inventory):
    """Opens (creating, or migrating to the current schema) the state file at ``path``,
    by default :func:`~controller.store.paths.default_path`.

    Raises StoreError naming the file when it cannot be used. ``now`` supplies timestamps
    (aware datetimes; tests pass a fixed clock). ``escrow_key`` says where the key of the
    escrow (the secrets a rollback needs, see ``escrow``) is; by default
    ``$FAZAI_ESCROW_KEY`` (the key), else ``$FAZAI_ESCROW_KEY_FILE`` (a file holding it),
    else ``state.escrow.key`` next to the state file, made on first use (mode 0600). It is
    only read when a secret is sealed or opened. Close it, or use it as a context manager.
    """

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        now: Callable[[], datetime] = utc_now,
        escrow_key: KeyRef | None = None,
    ) -> None:
        # Resolved: the locks are files named after the state file, so one reached
        # through a symlink (or a relative path) must name the same lock files.
        given = Path(path).expanduser() if path is not None else default_path()
        self.path = given.resolve()
        self._now = now
        self.escrow_key = escrow_key or key_ref(self.path)
        self._escrow = Escrow(self.escrow_key, self.path)
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

    @contextlib.asynccontextmanager
    async def node_writer(self, node: str, timeout: float = 0.0) -> AsyncIterator[None]:
        """The writer lock of ``node`` (``<state>.locks/node-<name>.lock``), held by
        whoever writes to the node; waits up to ``timeout`` s, then raises
        WriterLockedError naming the holder."""
        path = locks.node_lock_path(self.path, node)
        async with locks.hold_async(path, f"node {node}", timeout):
            yield

    def try_node_writer(self, node: str) -> bool:
        """Take ``node``'s writer lock if it is free (release with :meth:`release_node`);
        False while another process holds it."""
        return locks.try_acquire(locks.node_lock_path(self.path, node))

    def release_node(self, node: str) -> None:
        locks.release(locks.node_lock_path(self.path, node))

    def node_holder(self, node: str) -> str:
        return locks.describe(locks.node_lock_path(self.path, node))

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
