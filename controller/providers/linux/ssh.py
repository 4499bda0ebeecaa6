"""SSH connections to Linux nodes, with asyncssh's failures mapped into FazAI's errors.

Host keys are checked against the node's known_hosts file unless the Node document
turns checking off for a lab; an unknown or changed key is never accepted silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from controller.errors import AuthenticationError, HostKeyError, NodeError, UnreachableError
from controller.model.document import Document

KEEPALIVE_S = 15  # a connection that stops answering is closed after 3 unanswered
# A session the node refused to open (ChannelOpenError: the channel, or the command's
# start, refused) ran nothing, so it is asked for again after these pauses. sshd frees
# a closed session's slot a moment after the close: on a node with MaxSessions 1 the
# next command on the same connection can come too early.
REOPEN_S = (0.05, 0.25)


@dataclass(frozen=True)
class SshTarget:
    """How to reach one node; derived from its Node document."""

    node: str
    address: str
    port: int
    user: str
    private_key_file: Path | None
    use_agent: bool
    known_hosts_file: Path | None  # None: host key checking is off
    connect_timeout: float
    command_timeout: float

    @classmethod
    def from_node(cls, node: Document) -> SshTarget:
        spec = node.spec
        auth: Mapping[str, Any] = spec.get("auth", {})
        key = auth.get("privateKeyFile")
        known_hosts: Path | None = None
        if spec.get("hostKeyChecking", True):
            known_hosts = Path(os.path.expanduser(spec.get("knownHostsFile", "~/.ssh/known_hosts")))
        return cls(
            node=node.name,
            address=spec["address"],
            port=int(spec.get("port", 22)),
            user=spec.get("user", "root"),
            private_key_file=Path(os.path.expanduser(key)) if key else None,
            use_agent=bool(auth.get("agent", not key)),
            known_hosts_file=known_hosts,
            connect_timeout=float(spec.get("connectTimeout", 10)),
            command_timeout=float(spec.get("commandTimeout", 60)),
        )


# What OpenSSH's sshd says when it disconnects after MaxAuthTries failed attempts.
_TOO_MANY_TRIES = "too many authentication failures"


async def connect(target: SshTarget) -> asyncssh.SSHClientConnection:
    options: dict[str, Any] = {
        "port": target.port,
        "username": target.user,
        "connect_timeout": target.connect_timeout,
        "login_timeout": target.connect_timeout,
        "config": [],  # never let ~/.ssh/config change what the desired state says
        "keepalive_interval": KEEPALIVE_S,
    }
    if target.known_hosts_file is None:
        options["known_hosts"] = None
    else:
        if not target.known_hosts_file.is_file():
            raise HostKeyError(
                target.node,
                f"known_hosts file {target.known_hosts_file} does not exist; "
                "add the node's host key there (or set hostKeyChecking: false in a lab)",
            )
        options["known_hosts"] = str(target.known_hosts_file)
    if target.private_key_file is not None:
        try:
            options["client_keys"] = [asyncssh.read_private_key(str(target.private_key_file))]
        except (OSError, asyncssh.KeyImportError) as exc:
            raise AuthenticationError(
                target.node, f"cannot use private key {target.private_key_file}: {_reason(exc)}"
            ) from exc
        if not target.use_agent:
            options["agent_path"] = None
    try:
        return await asyncssh.connect(target.address, **options)
    except asyncssh.HostKeyNotVerifiable as exc:
        raise HostKeyError(
            target.node,
            f"host key of {target.address}:{target.port} is unknown or has changed "
            f"(checked against {target.known_hosts_file}); refusing to connect",
        ) from exc
    except asyncssh.PermissionDenied as exc:
        raise AuthenticationError(
            target.node, f"{target.user}@{target.address} refused our credentials"
        ) from exc
    except asyncssh.DisconnectError as exc:
        if _TOO_MANY_TRIES in (exc.reason or "").lower():
            # sshd's MaxAuthTries: it hangs up (a protocol error to asyncssh) instead of
            # answering "permission denied". Every key offered failed: trying again,
            # unchanged, fails the same, and each try counts towards fail2ban.
            raise AuthenticationError(
                target.node,
                f"{target.user}@{target.address} refused our credentials: too many "
                "authentication failures (sshd MaxAuthTries; an agent offering many keys "
                "uses them up: give auth.privateKeyFile and agent: false)",
            ) from exc
        raise UnreachableError(
            target.node, f"cannot connect to {target.address}:{target.port}: {_reason(exc)}"
        ) from exc
    except TimeoutError as exc:
        raise UnreachableError(
            target.node,
            f"no answer from {target.address}:{target.port} within {target.connect_timeout:g} s",
        ) from exc
    except (OSError, asyncssh.Error) as exc:
        raise UnreachableError(
            target.node, f"cannot connect to {target.address}:{target.port}: {_reason(exc)}"
        ) from exc


async def run(
    connection: asyncssh.SSHClientConnection,
    target: SshTarget,
    command: str,
    stdin: str | None = None,
) -> asyncssh.SSHCompletedProcess:
    """Run ``command`` within the node's command timeout; failures become NodeErrors."""
    try:
        for pause in (*REOPEN_S, None):
            try:
                return await connection.run(
                    command, input=stdin, check=False, timeout=target.command_timeout
                )
            except asyncssh.ChannelOpenError:
                if pause is None:
                    raise
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover
    except asyncssh.TimeoutError as exc:
        raise NodeError(
            target.node, f"command did not finish within {target.command_timeout:g} s"
        ) from exc
    except (OSError, asyncssh.Error) as exc:
        raise UnreachableError(target.node, f"connection lost: {_reason(exc)}") from exc


class Stream:
    """A command running on the node whose standard output is read in lines as they come
    (see :func:`start`); standard error is collected for the end."""

    READ_SIZE = 65536

    def __init__(self, target: SshTarget, process: asyncssh.SSHClientProcess[str]) -> None:
        self.target = target
        self.process = process
        self._stderr: asyncio.Task[str] = asyncio.ensure_future(process.stderr.read())
        self._pending = ""  # output read but not yet handed out: a line's beginning
        self._failure: NodeError | None = None  # met while lingering: for the next read

    async def read_lines(self, timeout: float, linger: float = 0.0) -> list[str]:
        """The whole lines of standard output that have come, waiting up to ``timeout`` for
        the first; [] once the output has ended (an unfinished last line comes back as a
        line of its own first). With ``linger``, the lines that follow the first within
        ``linger`` seconds come with it (not past the end of the output), so that the
        caller can act on them together; a failure met meanwhile is raised by the next
        call, after the lines that came before it."""
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        with _mapped(self.target, timeout):
            lines = await self._lines(timeout)
        loop = asyncio.get_running_loop()
        until = loop.time() + linger
        while lines and (left := until - loop.time()) > 0:
            try:
                more = await self._lines(left)
            except TimeoutError:
                break
            except (OSError, asyncssh.Error) as exc:
                self._failure = _node_error(self.target, exc, timeout)
                break
            if not more:
                break  # the end: the next call says so
            lines += more
        return lines

    async def _lines(self, timeout: float) -> list[str]:
        deadline = asyncio.get_running_loop().time() + timeout
        while "\n" not in self._pending:
            left = max(0.0, deadline - asyncio.get_running_loop().time())
            # read(n) hands over whatever is buffered, waiting only when nothing is; a read
            # cancelled at the timeout takes nothing from the buffer.
            chunk: str = await asyncio.wait_for(self.process.stdout.read(self.READ_SIZE), left)
            if not chunk:
                rest, self._pending = self._pending, ""
                return [rest] if rest else []
            self._pending += chunk
        *lines, self._pending = self._pending.split("\n")
        return [line + "\n" for line in lines]

    async def finish(self, timeout: float) -> tuple[int | None, str]:
        """The exit status (None when killed by a signal) and standard error, once the
        command has ended."""
        with _mapped(self.target, timeout):
            await asyncio.wait_for(self.process.wait_closed(), timeout)
            stderr = await asyncio.wait_for(self._stderr, timeout)
        status: int | None = self.process.exit_status
        if status is None and self.process.exit_signal is None:
            # the channel closed without saying how the command ended: the connection
            raise UnreachableError(
                self.target.node, "connection lost before the command reported its end"
            )
        return status, stderr

    def close(self) -> None:
        if self._stderr.done() and not self._stderr.cancelled():
            self._stderr.exception()  # retrieved: a lost connection is reported elsewhere
        self._stderr.cancel()
        self.process.close()


async def start(
    connection: asyncssh.SSHClientConnection, target: SshTarget, command: str, stdin: str
) -> Stream:
    """Start ``command`` with ``stdin`` as its whole standard input (sent, then closed)."""
    with _mapped(target, target.command_timeout):
        process = await _process(connection, target, command)
        try:
            process.stdin.write(stdin)
            process.stdin.write_eof()
            await asyncio.wait_for(process.stdin.drain(), target.command_timeout)
        except BaseException:
            process.close()
            raise
    return Stream(target, process)


async def _process(
    connection: asyncssh.SSHClientConnection, target: SshTarget, command: str
) -> asyncssh.SSHClientProcess[str]:
    for pause in (*REOPEN_S, None):
        try:
            process: asyncssh.SSHClientProcess[str] = await asyncio.wait_for(
                connection.create_process(command), target.command_timeout
            )
            return process
        except asyncssh.ChannelOpenError:
            if pause is None:
                raise
            await asyncio.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def _mapped(target: SshTarget, timeout: float) -> Iterator[None]:
    try:
        yield
    except (TimeoutError, OSError, asyncssh.Error) as exc:
        raise _node_error(target, exc, timeout) from exc


def _node_error(target: SshTarget, exc: BaseException, timeout: float) -> NodeError:
    if isinstance(exc, TimeoutError):
        error = NodeError(target.node, f"no answer from the node within {timeout:g} s")
    else:
        error = UnreachableError(target.node, f"connection lost: {_reason(exc)}")
    error.__cause__ = exc
    return error


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.Error):
        return exc.reason or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
