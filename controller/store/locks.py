"""Writer locks across processes: one per state store and one per node, as OS file locks.

``flock(2)`` on a file beside the state file: ``state.db.lock`` for the store (held by
``fazai apply`` and ``fazai rollback`` for their whole run), ``state.db.locks/<node>.lock``
for each node (held by whoever writes to the node: an apply's node transaction, a
rollback, a recovery; the CLI and ``serve`` alike), and ``state.db.locks/run-<id>.lock`` for
each run while it is in progress. The kernel drops a lock when its
holder dies, however it dies, so a free lock next to an open transaction proves that the
transaction's owner is gone: that is what recovery checks before it rolls anything back.

The holder writes who it is (pid, host, command, run id, since when) into the file, for
the message a second writer gets. The lock is re-entrant within one process (a count per
file): the CLI takes a node's lock for its recovery and the engine takes it again for the
transaction; in-process exclusion between coroutines is the caller's (``NodeLocks``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from controller.errors import Interrupted, StoreError, WriterLockedError

POLL_SECONDS = 0.1


def store_lock_path(state: Path) -> Path:
    return state.with_name(state.name + ".lock")


def node_lock_path(state: Path, node: str) -> Path:
    # Quoted, so a node name can never name another path ("..", "a/b").
    return state.with_name(state.name + ".locks") / f"node-{quote(node, safe='')}.lock"


def machine_lock_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the machine-wide node locks live: ``$FAZAI_LOCK_DIR``, else
    ``/run/lock/fazai`` (else the temp directory, where there is no ``/run/lock``)."""
    env = os.environ if environ is None else environ
    explicit = env.get("FAZAI_LOCK_DIR")
    if explicit:
        return Path(explicit).expanduser()
    run_lock = Path("/run/lock")
    base = run_lock if run_lock.is_dir() else Path(tempfile.gettempdir())
    return base / "fazai"


def machine_node_lock_path(key: str, environ: Mapping[str, str] | None = None) -> Path:
    """The lock of the machine ``key`` names (see ``engine.nodekey``), shared by every
    state file on this host; hashed, so any key is one safe file name."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return machine_lock_dir(environ) / f"node-{digest}.lock"


def run_lock_path(state: Path, run_id: int) -> Path:
    # Beside the node locks; the prefixes keep a node called "run-1" from sharing it.
    return state.with_name(state.name + ".locks") / f"run-{int(run_id)}.lock"


@dataclass
class _Held:
    fd: int
    count: int
    owner: str | None = None


_held: dict[Path, _Held] = {}
_guard = threading.Lock()


def _command() -> str:
    args = [a for a in sys.argv[1:] if not a.startswith("-")][:1]
    return "fazai " + " ".join(args) if args else "fazai"


def _describe(path: Path) -> str:
    """Who holds the lock at ``path``, from what the holder wrote there."""
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "another process (it recorded no details)"
    text = f"pid {info.get('pid')} on {info.get('host', '?')} ({info.get('command', 'fazai')}"
    if info.get("run_id") is not None:
        text += f", run {info['run_id']}"
    return text + f") since {info.get('since', '?')}"


def _write_holder(fd: int, run_id: int | None) -> None:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": _command(),
        "run_id": run_id,
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    data = json.dumps(info).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def try_acquire(
    path: Path, *, shared: bool = False, run_id: int | None = None, owner: str | None = None
) -> bool:
    """Take the lock at ``path`` without waiting; True when this process now holds it
    (again, if it already did, for the same ``owner``). ``shared``: a machine-wide lock,
    in a folder every user of the host may use. ``owner``: who in this process holds it
    (a node's name, for a machine's lock): another owner here waits like another process
    (two Node documents naming one machine are not written at once)."""
    with _guard:
        held = _held.get(path)
        if held is not None:
            if held.owner != owner:
                return False
            held.count += 1
            return True
        try:
            fd = _open(path, shared)
        except OSError as exc:
            raise StoreError(str(path), f"cannot open the lock file: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:
            os.close(fd)
            raise StoreError(str(path), f"cannot lock: {exc}") from exc
        with contextlib.suppress(OSError):  # read-only: another user's lock file
            _write_holder(fd, run_id)
        _held[path] = _Held(fd, 1, owner)
        return True


def _open(path: Path, shared: bool) -> int:
    if shared and not path.parent.exists():
        # The machine-wide folder is every user's on the host (sticky, like /tmp).
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            path.parent.chmod(0o1777)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not shared:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    # Any local user may put files in that folder: never follow a link planted there (a
    # root writer would truncate its target), and take only a plain file of one name.
    flags = os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        # Readable by all: another user's writer (root's serve, an operator's apply)
        # must be able to lock it too, and flock needs no write access.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o644)
    except PermissionError:
        fd = os.open(path, os.O_RDONLY | flags)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise OSError(f"{path} is not a plain lock file (a link?)")
    return fd


def release(path: Path, *, remove: bool = False) -> None:
    """Release the lock at ``path``; with ``remove``, delete its file first, while still
    holding it (for locks nobody takes after their holder is done: a run's). Whoever
    opened the old file before it went gets a lock on a file no one else can see: it
    must check again, after locking, what the lock protected (the run's status)."""
    with _guard:
        held = _held.get(path)
        if held is None:
            return
        held.count -= 1
        if held.count == 0:
            del _held[path]
            if remove:
                with contextlib.suppress(OSError):
                    path.unlink()
            # Closing drops the flock; the stale details stay and are overwritten by the
            # next holder (a free lock is never described).
            os.close(held.fd)


def note_run(path: Path, run_id: int) -> None:
    """Record ``run_id`` in the lock at ``path`` if this process holds it (the store's
    lock, taken before the run had an id): the holder's message names it. One lock only:
    a process running several runs (``serve``) must not stamp one into the others'."""
    with _guard:
        held = _held.get(path)
        if held is not None:
            with contextlib.suppress(OSError):
                _write_holder(held.fd, run_id)


def held_here(path: Path) -> bool:
    with _guard:
        return path in _held


def _refusal(path: Path, what: str, waited: float) -> WriterLockedError:
    with _guard:
        held = _held.get(path)
    if held is not None and held.owner is not None:
        # This process, for another Node document that names the same machine.
        holder = f"this process, writing node {held.owner} (the same machine)"
        return WriterLockedError(what, holder, waited)
    return WriterLockedError(what, _describe(path), waited)


@contextlib.contextmanager
def hold(path: Path, what: str, timeout: float = 0.0) -> Iterator[None]:
    """Hold the lock at ``path``, waiting up to ``timeout`` seconds (blocking; for the
    CLI outside any event loop); raises WriterLockedError naming the holder."""
    deadline = time.monotonic() + max(0.0, timeout)
    while not try_acquire(path):
        if time.monotonic() >= deadline:
            raise _refusal(path, what, timeout)
        time.sleep(POLL_SECONDS)
    try:
        yield
    finally:
        release(path)


@dataclass(frozen=True)
class Lock:
    """One lock file to take: ``shared`` for a machine-wide one (see ``try_acquire``)."""

    path: Path
    shared: bool = False
    owner: str | None = None


class Stop(Protocol):
    """Set once a signal asked the run to stop (an ``asyncio.Event``)."""

    def is_set(self) -> bool: ...


def try_all(wanted: Sequence[Lock], run_id: int | None = None) -> Lock | None:
    """Take every lock in ``wanted`` or none of them (so a waiter never sits on one while
    it waits for the other); the one that is held elsewhere, or None once all are held."""
    taken: list[Lock] = []
    for lock in wanted:
        if not try_acquire(lock.path, shared=lock.shared, run_id=run_id, owner=lock.owner):
            for back in reversed(taken):
                release(back.path)
            return lock
        taken.append(lock)
    return None


@contextlib.asynccontextmanager
async def hold_async(
    wanted: Path | Sequence[Lock],
    what: str,
    timeout: float = 0.0,
    *,
    run_id: int | None = None,
    interrupt: Stop | None = None,
) -> AsyncIterator[None]:
    """:func:`hold` for coroutines, of one lock or of several together: waits with
    ``asyncio.sleep``, never in a thread (a cancelled wait leaves no lock taken behind).
    The holder's details name ``run_id``. A set ``interrupt`` ends the wait at once
    with Interrupted (Ctrl-C must not sit out a long ``--lock-timeout``)."""
    locks = [Lock(wanted)] if isinstance(wanted, Path) else list(wanted)
    deadline = time.monotonic() + max(0.0, timeout)
    while (busy := try_all(locks, run_id)) is not None:
        if interrupt is not None and interrupt.is_set():
            raise Interrupted(f"interrupted while waiting for {what}")
        if time.monotonic() >= deadline:
            raise _refusal(busy.path, what, timeout)
        await asyncio.sleep(POLL_SECONDS)
    try:
        yield
    finally:
        for lock in reversed(locks):
            release(lock.path)


def is_free(lock: Lock) -> bool:
    """Whether nobody else (another process, another owner here) holds ``lock`` (a
    glance: it may be taken the moment after)."""
    with _guard:
        held = _held.get(lock.path)
    if held is not None:
        return held.owner == lock.owner
    if not lock.path.exists():
        return True
    if not try_acquire(lock.path, shared=lock.shared, owner=lock.owner):
        return False
    release(lock.path)
    return True


def describe(path: Path) -> str:
    return _describe(path)
