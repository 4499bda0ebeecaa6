"""Writing report files: atomically, under ``<dir>/<schedule>/``, with ``latest.*``.

A reader (a web server publishing the folder, a person with the file open) sees either the
old file or the new one, never a half-written one: each file is written to a temporary
name in the same folder, flushed to disk, then renamed over the target, and the folder
itself is synced so the rename survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from controller.reports.errors import ReportError

_STAMPED = re.compile(r"^\d{8}T\d{6}Z(-\d+)?\.(md|json|html)$")


@dataclass(frozen=True)
class Written:
    """The files one report run wrote, relative to the reports folder's root."""

    root: Path
    files: tuple[Path, ...]  # e.g. daily/20250102T060000Z.md, daily/latest.md


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` in one rename; ReportError when it cannot."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, mode)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        _sync_folder(folder)
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some file systems do not open folders; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_report(root: Path, schedule: str, stamp: str, renderings: Mapping[str, str]) -> Written:
    """Write each ``{extension: text}`` as ``<root>/<schedule>/<stamp>.<ext>`` and as
    ``latest.<ext>``. A stamp already used (two reports in one second) gets ``-2``, ``-3``."""
    folder = root / schedule
    name = stamp
    counter = 1
    while any((folder / f"{name}.{ext}").exists() for ext in renderings):
        counter += 1
        name = f"{stamp}-{counter}"
    files = []
    for ext, text in renderings.items():
        data = text.encode("utf-8")
        atomic_write(folder / f"{name}.{ext}", data)
        atomic_write(folder / f"latest.{ext}", data)
        files += [Path(schedule) / f"{name}.{ext}", Path(schedule) / f"latest.{ext}"]
    return Written(root, tuple(files))


def prune(root: Path, schedule: str, keep: int) -> Sequence[Path]:
    """Delete all but the newest ``keep`` stamped reports of ``schedule`` (0: keep all);
    returns what was deleted. Only files named like our reports are ever touched."""
    if keep <= 0:
        return []
    folder = root / schedule
    try:
        names = [p for p in folder.iterdir() if _STAMPED.match(p.name)]
    except OSError:
        return []
    runs = sorted({p.name.split(".", 1)[0] for p in names}, key=_order, reverse=True)
    old = set(runs[keep:])
    removed = []
    for path in names:
        if path.name.split(".", 1)[0] in old:
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def _order(stem: str) -> tuple[str, int]:
    stamp, _, counter = stem.partition("-")
    return stamp, int(counter or 1)
