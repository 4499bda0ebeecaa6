"""Desired state from a directory on disk (a working copy, or any folder).

A symbolic link is followed only when it leads to a file inside the source root (and not
into a hidden folder such as ``.git``): a ``files/x -> /etc/shadow`` or ``-> ../../key``
in a pull request must not put a controller file into a plan or onto a node. Links that
lead elsewhere are recorded as refused, so that whoever names them (a ``File.source``, or
the loader for a document) gets an error saying why, instead of "does not exist".

Files are read lazily, maybe long after listing (``apply`` reads them again after the
confirmation prompt), so the check is made again when read, without a window: the path is
resolved, checked, then opened one component at a time from the root, none followed, so a
folder (or the root) swapped for a link in between is refused rather than read through.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

from controller.errors import SourceError
from controller.source.tree import SourceTree


def read_directory(root: Path) -> SourceTree:
    if not root.exists():
        raise SourceError(f"{root}: no such file or directory")
    if root.is_file():
        # A single file is a source of one document file, named as given.
        return SourceTree(
            str(root), None, {root.name: root.read_bytes}, {root.name: root.stat().st_size}
        )
    real_root = root.resolve()
    try:
        root_id = _identity(os.stat(real_root))
    except OSError as exc:
        raise SourceError(f"{root}: cannot read: {exc.strerror or exc}") from exc
    files: dict[str, Callable[[], bytes]] = {}
    sizes: dict[str, int] = {}
    refused: dict[str, str] = {}
    try:
        for folder, dirs, names in os.walk(root):
            # Hidden folders (.git, .github, ...) never hold desired state. os.walk does
            # not descend into linked folders; one that leads outside is named, so that
            # what is expected in it is refused in words.
            kept = []
            for name in sorted(dirs):
                path = Path(folder, name)
                if name.startswith("."):
                    continue
                if path.is_symlink():
                    why = _escapes(path, real_root)
                    if why:
                        refused[path.relative_to(root).as_posix() + "/"] = why
                    continue
                kept.append(name)
            dirs[:] = kept
            for name in names:
                if name.startswith("."):
                    continue
                path = Path(folder, name)
                rel = path.relative_to(root).as_posix()
                if path.is_symlink():
                    why = _escapes(path, real_root)
                    if why:
                        refused[rel] = why
                        continue
                if not path.is_file():
                    continue
                sizes[rel] = path.stat().st_size
                files[rel] = _reader(rel, real_root, root_id, sizes[rel])
    except OSError as exc:
        raise SourceError(f"{root}: cannot read: {exc.strerror or exc}") from exc
    # Absolute: the description is recorded with each run, and `fazai rollback` reads the
    # run's source again from wherever it is started.
    return SourceTree(str(root.absolute()), None, files, sizes, refused)


def _escapes(link: Path, real_root: Path) -> str | None:
    """Why following ``link`` is refused, or None when it stays inside the source."""
    target = os.readlink(link)
    real = link.resolve()
    if real != real_root and real_root not in real.parents:
        return f"is a symbolic link to {target!r}, outside the source"
    if any(part.startswith(".") for part in real.relative_to(real_root).parts):
        return f"is a symbolic link to {target!r}, into a hidden folder of the source"
    return None


def _reader(
    rel: str, real_root: Path, root_id: tuple[int, int], listed_size: int
) -> Callable[[], bytes]:
    def read() -> bytes:
        return _read_inside(rel, real_root, root_id, listed_size)

    return read


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in opens at once (and is then refused) instead of hanging.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _read_inside(rel: str, real_root: Path, root_id: tuple[int, int], listed_size: int) -> bytes:
    """The bytes of ``rel``, read only if it is still a regular file inside the root, of at
    most the size that was listed (and checked against the limits)."""
    real = Path(os.path.realpath(real_root / rel))
    if real != real_root and real_root not in real.parents:
        raise SourceError(f"{rel}: leads outside the source since it was listed")
    parts = real.relative_to(real_root).parts
    if not parts or any(part.startswith(".") for part in parts):
        raise SourceError(f"{rel}: leads into a hidden folder of the source since it was listed")
    fds: list[int] = []
    try:
        fds.append(os.open(real_root, _DIR_FLAGS))
        if _identity(os.fstat(fds[0])) != root_id:
            raise SourceError(f"{real_root}: the source folder was replaced since it was listed")
        for part in parts[:-1]:
            fds.append(os.open(part, _DIR_FLAGS, dir_fd=fds[-1]))
        fds.append(os.open(parts[-1], _FILE_FLAGS, dir_fd=fds[-1]))
        if not stat.S_ISREG(os.fstat(fds[-1]).st_mode):
            raise SourceError(f"{rel}: is no longer a regular file")
        data = b""
        while len(data) <= listed_size:
            chunk = os.read(fds[-1], listed_size + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise SourceError(
                f"{rel}: a folder or file on its path became a symbolic link since it was "
                "listed; refusing to follow it"
            ) from exc
        raise
    finally:
        for fd in fds:
            os.close(fd)
    if len(data) > listed_size:
        raise SourceError(
            f"{rel}: grew since it was listed (more than the {listed_size} bytes checked); "
            "read it again"
        )
    return data


def _identity(status: os.stat_result) -> tuple[int, int]:
    return status.st_dev, status.st_ino
