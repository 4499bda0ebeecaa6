"""Claiming the worker's Unix socket safely.

- The parent folder must exist (it is not created: its owner and mode are the
  supervisor's to choose), be owned by this user or root, and not be writable by everyone
  unless sticky (as /tmp is): else another user could swap the socket under its clients.
- ``PATH.lock`` (``flock``, held for the worker's life) settles two workers started at
  once on one path: the second is refused, never replaces the first's socket.
- If ``PATH`` exists: a worker answering there -> refused; a socket nothing answers on
  (left by a killed worker) -> replaced, if it is still that same socket just before the
  unlink (gone meanwhile is fine); anything that is not a socket (a file, a symlink, a
  folder) -> refused, never removed. A permission error is a SocketRefused saying so.
- The socket is bound under umask 0177, so it is created mode 0600: there is no moment
  when another user could connect.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
from dataclasses import dataclass

CONNECT_TIMEOUT_S = 1.0


class SocketRefused(RuntimeError):
    """The socket path cannot be claimed; the message says why."""


@dataclass
class Claimed:
    path: str
    sock: socket.socket
    lock_fd: int
    inode: int

    def release(self) -> None:
        """Close the socket and remove its file if it is still ours."""
        self.sock.close()
        with contextlib.suppress(OSError):
            if os.lstat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        os.close(self.lock_fd)


def _answering(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(CONNECT_TIMEOUT_S)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except PermissionError as exc:
        raise SocketRefused(
            f"cannot connect to {path} to see whether a worker answers there"
            f" ({exc.strerror}): refusing to replace it"
        ) from exc
    except OSError as exc:
        # A timeout: something holds it, busy; do not take it over.
        return exc.errno not in (errno.ECONNREFUSED, errno.ENOENT)
    finally:
        probe.close()
    return True


def _check_folder(parent: str) -> None:
    try:
        info = os.stat(parent)
    except FileNotFoundError:
        raise SocketRefused(f"the socket's folder {parent} does not exist") from None
    except PermissionError as exc:
        raise SocketRefused(f"cannot look at the socket's folder {parent}: {exc.strerror}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise SocketRefused(f"the socket's folder {parent} does not exist")
    if info.st_uid not in (os.geteuid(), 0):
        raise SocketRefused(
            f"the socket's folder {parent} belongs to another user (uid {info.st_uid})"
        )
    if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
        raise SocketRefused(
            f"the socket's folder {parent} is writable by everyone and not sticky:"
            " anyone could replace the socket"
        )


def _unlink_stale(path: str, seen: os.stat_result) -> None:
    """Remove the stale socket ``seen``, only if ``path`` is still that socket."""
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return  # gone meanwhile: nothing to remove
    if (now.st_dev, now.st_ino) != (seen.st_dev, seen.st_ino) or not stat.S_ISSOCK(now.st_mode):
        raise SocketRefused(f"{path} changed while it was checked: refusing to replace it")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def claim(path: str) -> Claimed:
    """Bind a listening-ready (not yet listening) socket at ``path``, mode 0600."""
    try:
        return _claim(path)
    except PermissionError as exc:  # anything not mapped more precisely below
        raise SocketRefused(f"cannot claim {path}: {exc.strerror}") from exc


def _claim(path: str) -> Claimed:
    parent = os.path.dirname(os.path.abspath(path))
    _check_folder(parent)
    lock_path = path + ".lock"
    try:
        lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise SocketRefused(f"cannot open the lock file {lock_path}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SocketRefused(
                f"another worker holds {lock_path}: one is already running on {path}"
            ) from None
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(info.st_mode):
                raise SocketRefused(f"{path} exists and is not a socket: refusing to replace it")
            if info.st_uid not in (os.geteuid(), 0):
                raise SocketRefused(f"{path} belongs to another user: refusing to replace it")
            if _answering(path):
                raise SocketRefused(f"a worker is already answering on {path}: refusing to start")
            _unlink_stale(path, info)  # stale: its worker is gone
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(path)
        except OSError as exc:
            sock.close()
            raise SocketRefused(f"cannot bind {path}: {exc.strerror}") from exc
        finally:
            os.umask(old)
        return Claimed(path, sock, lock_fd, os.lstat(path).st_ino)
    except BaseException:
        os.close(lock_fd)
        raise
