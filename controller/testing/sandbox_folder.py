"""The sandbox's folder (``--workdir``): claimed while a sandbox runs, cleaned by
``fazai demo --clean``.

``--workdir`` may name any folder, so cleaning never trusts it: the marker records
whether FazAI made the folder and which files the sandbox wrote there, ``clean``
removes those and the sandbox's fixed names only, and removes the folder itself only
when FazAI made it and nothing else is left in it. A folder that already holds
someone's files is refused before the sandbox writes an SSH key over one of them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from controller.errors import SandboxError

DEFAULT_WORKDIR = Path("/var/lib/fazai/sandbox")
MARKER = ".fazai-sandbox"  # in every folder a sandbox used; held locked while it runs
# What a sandbox writes under these names (the fleet's client key, known_hosts and node
# folders; the state store, its WAL, locks and escrow key), wherever its folder is.
FIXED = (
    "id_ed25519",
    "id_ed25519.pub",
    "known_hosts",
    "state.db",
    "state.db-wal",
    "state.db-shm",
    "state.db-journal",
    "state.escrow.key",
    "state.db.lock",
    "state.db.locks",  # the writer locks beside the store (controller.store.locks)
    "nodes",
)
# The firewalls' key, secret and CA bundle, named by the Node documents: only in a
# folder FazAI made (an older marker does not list them).
PATTERNS = ("*.key", "*.secret", "*-ca.pem")
WORKING_COPY = "infra"  # `serve --sandbox`'s git working copy: may hold the user's commits


@dataclass
class Claim:
    """A sandbox's hold on its folder; ``wrote`` records a file for ``clean``."""

    workdir: Path
    fd: int
    made_folder: bool
    files: list[str] = field(default_factory=list)

    def wrote(self, path: Path) -> None:
        try:
            name = path.resolve().relative_to(self.workdir.resolve())
        except ValueError:
            return  # outside the folder: never the cleaner's to remove
        if str(name) not in self.files:
            self.files.append(str(name))
            _write_marker(self.fd, self.made_folder, self.files)


@contextlib.contextmanager
def claimed(workdir: Path, *, cleaning: bool = False) -> Iterator[Claim]:
    """Hold ``workdir`` for a sandbox's lifetime (the kernel drops the lock if the
    process dies), so ``--clean`` never removes what a running sandbox uses, and two
    sandboxes never share one folder."""
    _refuse_unsafe(workdir)
    try:
        claim = _lock(workdir, cleaning)
    except OSError as exc:
        raise _os_error(workdir, exc) from exc
    try:
        yield claim
    finally:
        os.close(claim.fd)


def clean(workdir: Path) -> list[str]:
    """Remove what a sandbox left in ``workdir``; what was done, in words. Refuses a
    folder no sandbox used, and one a sandbox is using."""
    try:
        return _clean(workdir)
    except OSError as exc:
        raise _os_error(workdir, exc) from exc


def _clean(workdir: Path) -> list[str]:
    if workdir.is_symlink():
        raise SandboxError(
            f"{workdir} is a symbolic link: not followed; pass the folder it points to, "
            f"--workdir {workdir.resolve()}"
        )
    if not workdir.exists():
        return [f"nothing to clean: {workdir} does not exist"]
    _refuse_unsafe(workdir)
    if not (workdir / MARKER).is_file() and not _is_default(workdir):
        raise SandboxError(
            f"{workdir} was not made by `fazai demo` (no {MARKER} in it): not removed"
        )
    with claimed(workdir, cleaning=True) as claim:
        return _remove(claim)


def _remove(claim: Claim) -> list[str]:
    """The sandbox's files first, the marker last, while the lock is held: a sandbox
    starting meanwhile is refused, and one starting after the marker is gone makes a
    new one, whose files nothing here touches (the last step, rmdir, fails on a
    folder that is not empty)."""
    workdir = claim.workdir
    names = set(FIXED) | set(claim.files)
    if claim.made_folder:
        names |= {p.name for pattern in PATTERNS for p in workdir.glob(pattern)}
    removed = []
    for name in sorted(names):
        path = workdir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.is_symlink() or path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    (workdir / MARKER).unlink()
    lines = [f"removed from {workdir}: {', '.join(removed) or 'nothing but its marker'}"]
    kept = sorted(p.name for p in workdir.iterdir())
    if not kept and claim.made_folder:
        with contextlib.suppress(OSError):  # a sandbox starting now: the folder is its
            workdir.rmdir()
            lines.append(f"removed {workdir}")
    if WORKING_COPY in kept:
        lines.append(
            f"kept {workdir / WORKING_COPY}: the working copy `serve --sandbox` made may "
            f"hold your commits; remove it yourself when it does not (rm -r "
            f"{workdir / WORKING_COPY})"
        )
    others = [name for name in kept if name != WORKING_COPY]
    if others:
        lines.append(f"kept what no sandbox wrote: {', '.join(others)}")
    return lines


def _lock(workdir: Path, cleaning: bool) -> Claim:
    for _ in range(5):  # a `--clean` may remove the folder between two of these steps
        made = False
        if cleaning and not workdir.exists():
            raise SandboxError(f"{workdir} was removed while --clean ran: nothing to clean")
        if not workdir.exists():
            # It will hold an SSH private key and the firewall's API secret. An existing
            # folder keeps its mode: --workdir may name one that is not only the sandbox's.
            workdir.parent.mkdir(parents=True, exist_ok=True)
            try:
                workdir.mkdir(mode=0o700)
                made = True
            except FileExistsError:
                pass  # another sandbox made it just now: its marker says so
        marker = workdir / MARKER
        fresh = not marker.exists()
        if fresh and not made and not cleaning:
            _refuse_foreign(workdir)
        try:
            fd = os.open(marker, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SandboxError(_busy(workdir, cleaning)) from None
        if _same_file(fd, marker):
            return _claim(workdir, fd, made)
        os.close(fd)  # a `--clean` unlinked the marker we locked: start again
    raise SandboxError(f"{workdir} keeps changing under the sandbox: is a --clean looping?")


def _claim(workdir: Path, fd: int, made: bool) -> Claim:
    try:
        recorded = json.loads(os.pread(fd, 1 << 16, 0) or b"null")
    except ValueError:
        recorded = None
    if isinstance(recorded, dict):
        files = [f for f in recorded.get("files", []) if isinstance(f, str) and _inside(f)]
        return Claim(workdir, fd, bool(recorded.get("madeFolder")), files)
    # A new marker, or one from before markers said anything (then the folder is
    # FazAI's own only at the default path).
    claim = Claim(workdir, fd, made or _is_default(workdir))
    _write_marker(fd, claim.made_folder, claim.files)
    return claim


def _inside(name: str) -> bool:
    """A recorded name stays inside the folder, whatever the marker was edited to say."""
    path = Path(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts


def _write_marker(fd: int, made_folder: bool, files: list[str]) -> None:
    text = json.dumps({"madeFolder": made_folder, "files": files}) + "\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _busy(workdir: Path, cleaning: bool) -> str:
    what = "another sandbox (a `fazai demo` or `fazai serve --sandbox`)"
    if cleaning:
        return (
            f"{workdir} is in use by {what}: nothing removed; stop it first (it removes "
            "its nodes and firewall as it exits), then run --clean again"
        )
    return f"{workdir} is in use by {what}: wait for it, or pass another --workdir"


def _refuse_foreign(workdir: Path) -> None:
    """A folder no sandbox used may be used only if it holds nothing the sandbox would
    overwrite or a later --clean could take for its own (``infra/`` is what
    ``serve --sandbox`` seeds before it claims the folder)."""
    if _is_default(workdir):
        return
    theirs = sorted(p.name for p in workdir.iterdir() if p.name != WORKING_COPY)
    if theirs:
        shown = ", ".join(theirs[:5]) + (", …" if len(theirs) > 5 else "")
        raise SandboxError(
            f"{workdir} already holds files no sandbox made ({shown}): the sandbox writes "
            "an SSH key, known_hosts and nodes/ there; pass a new or empty --workdir"
        )


def _refuse_unsafe(workdir: Path) -> None:
    """Never a sandbox's folder: the root, a top-level folder, anyone's home."""
    path = Path(os.path.abspath(workdir.expanduser()))
    homes = {Path(os.path.abspath(p.pw_dir)) for p in pwd.getpwall() if p.pw_dir}
    homes.add(Path(os.path.abspath(Path.home())))
    if len(path.parts) < 3 or path in homes:
        raise SandboxError(
            f"{workdir} cannot be a sandbox's folder (the root, a top-level folder or a "
            "home folder): pass a folder of its own, such as /var/lib/fazai/sandbox"
        )


def _is_default(workdir: Path) -> bool:
    return Path(os.path.abspath(workdir)) == DEFAULT_WORKDIR


def _os_error(workdir: Path, exc: OSError) -> SandboxError:
    if isinstance(exc, PermissionError):
        return SandboxError(
            f"{workdir}: permission denied ({exc.strerror}): the sandbox's folder is "
            "root's (mode 0700); run as root (sudo), or pass a --workdir of your own"
        )
    return SandboxError(f"{workdir}: {exc.strerror or exc}")
