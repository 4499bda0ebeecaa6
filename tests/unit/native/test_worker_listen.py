"""Claiming the worker's socket: mode 0600 from the start, a live socket refused, a
stale one replaced, a file that is not a socket never touched, two claims at once
settled by the lock."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from fazai_native import listen


def test_the_socket_is_created_mode_0600_and_removed_on_release(tmp_path: Path) -> None:
    path = str(tmp_path / "w.sock")
    claimed = listen.claim(path)
    try:
        info = os.lstat(path)
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o600
    finally:
        claimed.release()
    assert not os.path.exists(path)


def test_a_socket_a_process_answers_on_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "w.sock")
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(path)
    live.listen(1)
    try:
        with pytest.raises(listen.SocketRefused, match="already answering"):
            listen.claim(path)
        assert os.path.exists(path)
    finally:
        live.close()


def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = str(tmp_path / "w.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()  # the file stays: what a killed worker leaves
    os.chmod(path, 0o755)
    claimed = listen.claim(path)
    try:
        # The inode number may be reused: the new socket shows by its mode and answers.
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        claimed.sock.listen(1)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(5)
        probe.connect(path)
        probe.close()
    finally:
        claimed.release()


@pytest.mark.parametrize("kind", ["file", "symlink", "folder"])
def test_a_path_that_is_not_a_socket_is_refused_and_kept(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "w.sock"
    if kind == "file":
        path.write_text("keep me")
    elif kind == "symlink":
        path.symlink_to(tmp_path / "elsewhere")
    else:
        path.mkdir()
    with pytest.raises(listen.SocketRefused, match="not a socket"):
        listen.claim(str(path))
    assert os.path.lexists(path)
    if kind == "file":
        assert path.read_text() == "keep me"


def test_a_missing_folder_is_refused_not_created(tmp_path: Path) -> None:
    with pytest.raises(listen.SocketRefused, match="does not exist"):
        listen.claim(str(tmp_path / "nope" / "w.sock"))
    assert not (tmp_path / "nope").exists()


def test_a_second_claim_while_the_first_holds_the_lock_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "w.sock")
    first = listen.claim(path)  # bound, not yet listening: a connect would be refused
    try:
        with pytest.raises(listen.SocketRefused, match="another worker"):
            listen.claim(path)
        assert os.lstat(path).st_ino == first.inode
    finally:
        first.release()
    listen.claim(path).release()  # the lock is free again


def test_a_folder_everyone_may_write_to_is_refused_unless_sticky(tmp_path: Path) -> None:
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(listen.SocketRefused, match="writable by everyone"):
        listen.claim(str(folder / "w.sock"))
    assert not (folder / "w.sock").exists()
    folder.chmod(0o1777)  # sticky, as /tmp: nobody else may remove or rename our socket
    listen.claim(str(folder / "w.sock")).release()


def test_a_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "theirs"
    folder.mkdir()
    os.chown(folder, 65534, 65534)  # the tests run as root: nobody's folder
    with pytest.raises(listen.SocketRefused, match="another user"):
        listen.claim(str(folder / "w.sock"))


def _stale(path: str) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()


def test_a_stale_socket_gone_before_the_unlink_is_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "w.sock")
    _stale(path)
    real = listen._answering

    def answering(p: str) -> bool:
        alive = real(p)
        os.unlink(p)  # another cleaner got there first, between the check and the unlink
        return alive

    monkeypatch.setattr(listen, "_answering", answering)
    listen.claim(path).release()


def test_a_stale_socket_replaced_by_a_file_before_the_unlink_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.sock"
    _stale(str(path))
    real = listen._answering

    def answering(p: str) -> bool:
        alive = real(p)
        os.unlink(p)
        path.write_text("keep me")  # swapped between the check and the unlink
        return alive

    monkeypatch.setattr(listen, "_answering", answering)
    with pytest.raises(listen.SocketRefused, match="changed"):
        listen.claim(str(path))
    assert path.read_text() == "keep me"


def test_a_stale_socket_of_another_user_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "w.sock"
    _stale(str(path))
    os.chown(path, 65534, 65534)
    with pytest.raises(listen.SocketRefused, match="another user"):
        listen.claim(str(path))
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
