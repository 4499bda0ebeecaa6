"""Verified SSH connections to Linux nodes, kept between reads, transactions and passes.

While a :func:`kept` block runs on an event loop (``fazai serve`` for its whole life, a
CLI command for its own), every read and transaction on that loop takes the node's kept
connection instead of opening one. A connection is keyed by the node's whole connection
identity (:class:`Identity`: everything of the Node document that reaches ``connect``,
plus the known_hosts and key files as they are on disk): any change opens a new one,
with the host key checked exactly as a first connection, and closes the old one.

A kept connection found dead (the node rebooted, its sshd killed, the network cut and
the keepalives unanswered: an idle one sends them every third of its connect timeout,
so that a cut is found as fast as a new connection would find it) is replaced by a new
one; a *read* that failed on a reused connection because it was lost runs once more on
a new one (reads change nothing), a *write* never does: its caller sees the error and
rolls back. A connection nobody used for :data:`IDLE_S` seconds is closed; all are
closed when the block ends. Outside a block, each use opens its own connection and
closes it after, as before.

A kept connection has one user at a time (a read, or a transaction from its snapshot to
its end), so it never has more than one session open, whatever the node's MaxSessions; a
second user meanwhile (a review reading the node during an apply) gets a connection of
its own, closed after, as without a pool. The node's writer lock, not the connection,
keeps two writes apart, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from controller.errors import NodeError, UnreachableError

if TYPE_CHECKING:
    import asyncssh

    from controller.providers.linux import ssh

# asyncssh (and ssh, which imports it) only once a connection is made: entering kept()
# costs nothing to a command that reaches no Linux node (asyncssh's import runs gcc).

IDLE_S = 300.0


def _stamp(path: Path | None) -> tuple[int, int, int, int] | None:
    """The file as it is now: a known_hosts or key file edited since the connection was
    made means a new connection, checked against (or made with) what the file says now."""
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None  # connect() reports the missing file
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class Identity:
    """Everything that decides where a connection goes and whom it trusts."""

    target: ssh.SshTarget
    known_hosts: tuple[int, int, int, int] | None
    private_key: tuple[int, int, int, int] | None
    agent: str | None  # the agent socket, when the agent is used

    @classmethod
    def of(cls, target: ssh.SshTarget) -> Identity:
        agent = os.environ.get("SSH_AUTH_SOCK") if target.use_agent else None
        return cls(target, _stamp(target.known_hosts_file), _stamp(target.private_key_file), agent)


class _Kept:
    def __init__(self, identity: Identity, connection: asyncssh.SSHClientConnection) -> None:
        self.identity = identity
        self.connection = connection
        self.users = 0
        self.retired = False  # no new users; closed when the last one leaves
        self.timer: asyncio.TimerHandle | None = None


@dataclass
class Lease:
    """One use of a connection: ``reused`` when it was made before this use."""

    connection: asyncssh.SSHClientConnection
    reused: bool
    _kept: _Kept | None
    _pool: Pool | None

    def discard(self) -> None:
        """The connection failed in a way that may have left it dead or stuck mid-command:
        nobody gets it again, and it is closed now."""
        if self._pool is not None and self._kept is not None:
            self._pool.discard(self._kept)


class Pool:
    """The kept connections of one event loop (see the module's text)."""

    def __init__(self, idle: float = IDLE_S) -> None:
        self.idle = idle
        self.connects = 0  # connections opened (each one's host key checked)
        self._kept: dict[Identity, _Kept] = {}
        self._all: set[_Kept] = set()
        self._locks: dict[Identity, asyncio.Lock] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.users = 0  # kept() blocks open on this loop

    @contextlib.asynccontextmanager
    async def lease(self, target: ssh.SshTarget) -> AsyncIterator[Lease]:
        kept, reused = await self._take(target)
        if kept is None:  # in use: a connection of its own, closed after
            made = await self._connect(target)
            try:
                yield Lease(made, False, None, None)
            finally:
                made.close()
                await _wait_closed(made, target.connect_timeout)
            return
        try:
            yield Lease(kept.connection, reused, kept, self)
        finally:
            self._leave(kept)

    @contextlib.asynccontextmanager
    async def fresh(self, target: ssh.SshTarget) -> AsyncIterator[asyncssh.SSHClientConnection]:
        """A new connection (a new login, its host key checked) that becomes the node's
        kept one once the block ends without error; the one it replaces is closed when its
        users are done with it."""
        identity = Identity.of(target)
        kept = self._made(identity, await self._connect(target))
        kept.users = 1
        ok = False
        try:
            yield kept.connection
            ok = True
        finally:
            if ok:
                old = self._kept.get(identity)
                if old is not None:
                    self._retire(old)
                self._retire_others(identity)
                self._kept[identity] = kept
            else:
                kept.retired = True
            self._leave(kept)

    def discard(self, kept: _Kept) -> None:
        self._retire(kept)
        self._close(kept)

    async def aclose(self) -> None:
        """Close every connection and wait (each within its connect timeout)."""
        for kept in list(self._all):
            kept.retired = True
            self._close(kept)
        self._kept.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def open(self) -> int:
        """Connections made and not closed (kept, or in use)."""
        return sum(1 for k in self._all if not k.connection.is_closed())

    # -- internals --------------------------------------------------------------------

    async def _take(self, target: ssh.SshTarget) -> tuple[_Kept | None, bool]:
        """The node's kept connection (made now if there is none; None while another
        user has it), and whether it was made before."""
        from controller.providers.linux import ssh

        identity = Identity.of(target)
        self._retire_others(identity)
        lock = self._locks.setdefault(identity, asyncio.Lock())
        async with lock:  # one connect per identity at a time; the others reuse it
            kept = self._kept.get(identity)
            if kept is not None and (kept.retired or kept.connection.is_closed()):
                self.discard(kept)
                kept = None
            if kept is not None and kept.users > 0:
                return None, False
            reused = kept is not None
            if kept is None:
                kept = self._made(identity, await self._connect(target))
                self._kept[identity] = kept
            kept.users += 1
            if kept.timer is not None:
                kept.timer.cancel()
                kept.timer = None
            # In use: a slow answer during a long command is not taken for a dead node.
            kept.connection.set_keepalive(ssh.KEEPALIVE_S, 3)
        return kept, reused

    def _made(self, identity: Identity, connection: asyncssh.SSHClientConnection) -> _Kept:
        kept = _Kept(identity, connection)
        self._all.add(kept)
        return kept

    async def _connect(self, target: ssh.SshTarget) -> asyncssh.SSHClientConnection:
        from controller.providers.linux import ssh

        connection = await ssh.connect(target)
        self.connects += 1
        return connection

    def _retire_others(self, identity: Identity) -> None:
        """The node's connections made under another identity (its Node document or the
        files it names changed) are not used again."""
        for other in [k for i, k in self._kept.items() if i != identity]:
            if other.identity.target.node == identity.target.node:
                self._retire(other)

    def _retire(self, kept: _Kept) -> None:
        kept.retired = True
        if self._kept.get(kept.identity) is kept:
            del self._kept[kept.identity]
        if kept.users == 0:
            self._close(kept)

    def _leave(self, kept: _Kept) -> None:
        kept.users -= 1
        if kept.users > 0:
            return
        if kept.retired or kept.connection.is_closed():
            self._retire(kept)  # closes it: nobody uses it any more
            return
        loop = asyncio.get_running_loop()
        kept.timer = loop.call_later(self.idle, self._expire, kept)
        kept.connection.set_keepalive(max(1.0, kept.identity.target.connect_timeout / 3), 3)

    def _expire(self, kept: _Kept) -> None:
        kept.timer = None
        if kept.users == 0:
            self._retire(kept)

    def _close(self, kept: _Kept) -> None:
        if kept.timer is not None:
            kept.timer.cancel()
            kept.timer = None
        if kept not in self._all:
            return  # closed already
        self._all.discard(kept)
        kept.connection.close()
        timeout = kept.identity.target.connect_timeout
        task = asyncio.ensure_future(_wait_closed(kept.connection, timeout))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


async def _wait_closed(connection: asyncssh.SSHClientConnection, timeout: float) -> None:
    import asyncssh

    with contextlib.suppress(TimeoutError, OSError, asyncssh.Error):
        await asyncio.wait_for(connection.wait_closed(), timeout)


# -- the loop's pool ---------------------------------------------------------------------

# asyncssh connections belong to the loop that made them: one pool per running loop,
# whatever task or context uses it.
_pools: dict[asyncio.AbstractEventLoop, Pool] = {}


def current() -> Pool | None:
    return _pools.get(asyncio.get_running_loop())


@contextlib.asynccontextmanager
async def kept(idle: float = IDLE_S) -> AsyncIterator[Pool]:
    """Keep connections on this loop until the block ends (then close them all). Blocks
    nest: the outermost one closes."""
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = Pool(idle)
    pool.users += 1
    try:
        yield pool
    finally:
        pool.users -= 1
        if pool.users == 0:
            if _pools.get(loop) is pool:
                del _pools[loop]
            await pool.aclose()


@contextlib.asynccontextmanager
async def connection(target: ssh.SshTarget) -> AsyncIterator[Lease]:
    """The node's kept connection, or outside :func:`kept` a new one for this use."""
    pool = current()
    if pool is not None:
        async with pool.lease(target) as lease:
            yield lease
        return
    from controller.providers.linux import ssh

    made = await ssh.connect(target)
    try:
        yield Lease(made, False, None, None)
    finally:
        made.close()
        await _wait_closed(made, target.connect_timeout)


@contextlib.asynccontextmanager
async def new_login(target: ssh.SshTarget) -> AsyncIterator[asyncssh.SSHClientConnection]:
    """A connection made now (the node must accept a new login), kept afterwards in
    place of the node's older one when a pool is active."""
    pool = current()
    if pool is not None:
        async with pool.fresh(target) as made:
            yield made
        return
    async with connection(target) as lease:
        yield lease.connection


async def read(
    target: ssh.SshTarget, command: str, stdin: str | None = None
) -> asyncssh.SSHCompletedProcess:
    """Run a command that changes nothing; when a reused connection turns out lost, once
    more over a new one."""
    from controller.providers.linux import ssh

    for attempt in (1, 2):
        async with connection(target) as lease:
            try:
                return await ssh.run(lease.connection, target, command, stdin)
            except UnreachableError:
                lease.discard()
                if not lease.reused or attempt == 2:
                    raise
            except NodeError:
                lease.discard()  # timed out: the connection may be stuck; no time for more
                raise
    raise AssertionError("unreachable")  # pragma: no cover
