"""The supervisor with the real worker process (``python -m fazai_native``) on a real
Unix socket: start and ready, one supervisor per socket, a SIGKILLed worker failing the
requests in flight at once and coming back, a stop that ends the process; a private lock
and socket folder, a failed start that lets the lock go, restarts that survive a spawn
failing and a watcher failing."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller.llm.errors import BackendUnavailable
from controller.llm.supervisor import Supervisor, SupervisorError, WorkerOptions, lock_path_of
from controller.llm.worker import WorkerBackend


def options(tmp_path: Path, **kwargs: object) -> WorkerOptions:
    base: dict[str, object] = {
        "socket": tmp_path / "run" / "w.sock",
        "config": {"memory_budget": None, "models": []},
        "ready_timeout": 60.0,
        "backoff_initial": 0.05,
        "restart_wait": 30.0,
        "env": {**os.environ, "HF_HUB_OFFLINE": "1"},
    }
    base.update(kwargs)
    return WorkerOptions(**base)  # type: ignore[arg-type]


@pytest.fixture
async def supervisor(tmp_path: Path) -> AsyncIterator[Supervisor]:
    sup = Supervisor(options(tmp_path))
    await sup.start()
    yield sup
    await sup.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_starts_the_worker_and_answers(supervisor: Supervisor) -> None:
    backend = WorkerBackend("local", "none", supervisor)
    stats = await backend.call({"op": "stats"})
    assert "models" in stats and "queue" in stats
    sock = supervisor.options.socket
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600


async def test_a_second_supervisor_on_the_socket_refuses(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    other = Supervisor(options(tmp_path))
    with pytest.raises(SupervisorError, match=f"another supervisor \\(pid {os.getpid()}\\)"):
        await other.start()
    # The first one's worker is untouched.
    assert supervisor.pid is not None and alive(supervisor.pid)
    await WorkerBackend("local", "none", supervisor).call({"op": "stats"})


async def test_sigkill_restarts_the_worker(supervisor: Supervisor) -> None:
    backend = WorkerBackend("local", "none", supervisor)
    await backend.call({"op": "stats"})
    first = supervisor.pid
    assert first is not None
    conn = await supervisor.connection()
    os.kill(first, signal.SIGKILL)
    await asyncio.wait_for(conn.closed.wait(), 10)
    # The next request waits for the restarted worker and is answered by it.
    stats = await asyncio.wait_for(backend.call({"op": "stats"}), 60)
    assert "models" in stats
    assert supervisor.pid != first and supervisor.restarts == 1
    assert not alive(first)


async def test_close_stops_the_worker(tmp_path: Path) -> None:
    sup = Supervisor(options(tmp_path))
    await sup.start()
    pid = sup.pid
    assert pid is not None
    await sup.close()
    assert not alive(pid)
    assert not sup.options.socket.exists()
    with pytest.raises(BackendUnavailable, match="closing"):
        await sup.connection()
    # And the socket is free for the next one.
    again = Supervisor(options(tmp_path))
    await again.start()
    await again.close()


async def test_a_worker_that_cannot_start_is_unavailable(tmp_path: Path) -> None:
    sup = Supervisor(options(tmp_path, config={"models": "nope"}, backoff_initial=30.0))
    with pytest.raises(BackendUnavailable, match="exited with status 2 before it was ready"):
        await sup.start()
    # The requests right after it are not each a new start: they get its reason.
    pid = sup.pid
    with pytest.raises(BackendUnavailable, match=r"exited with status 2.*next try in"):
        await sup.connection()
    assert sup.pid == pid
    await sup.close()


async def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    sup = Supervisor(options(tmp_path, stop_grace=0.5))
    await sup.start()
    pid = sup.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # stopped: SIGTERM stays pending, never handled
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(sup.close(), 10)
    assert not alive(pid)
    assert 0.5 <= asyncio.get_running_loop().time() - started < 5


async def test_the_lock_file_is_private(supervisor: Supervisor) -> None:
    lock = lock_path_of(supervisor.options.socket)
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert lock.read_text() == str(os.getpid())


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
async def test_a_socket_folder_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(mode)
    sup = Supervisor(options(tmp_path, socket=folder / "w.sock"))
    with pytest.raises(SupervisorError, match="writable by others"):
        await sup.start()
    assert sup.pid is None  # no worker was started there
    assert not lock_path_of(folder / "w.sock").exists()


async def test_a_socket_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.getuid() == 0:
        folder = tmp_path / "theirs"
        folder.mkdir(mode=0o700)
        os.chown(folder, 65534, 65534)
        owner = 65534
    else:  # not root: a folder of root's stands for another user's
        folder, owner = Path("/"), 0
    sup = Supervisor(options(tmp_path, socket=folder / "w.sock"))
    with pytest.raises(SupervisorError, match=f"belongs to uid {owner}"):
        await sup.start()
    assert sup.pid is None


async def test_a_start_that_fails_after_the_lock_lets_it_go(tmp_path: Path) -> None:
    """Writing the worker's config fails after the lock is taken: the lock goes with the
    failure, so the next start on that socket (this process's own) is not refused as
    'another supervisor'."""
    broken = Supervisor(options(tmp_path, config={"models": [], "odd": object()}))
    with pytest.raises(TypeError) as caught:
        await broken.start()
    fixed = Supervisor(options(tmp_path))
    await fixed.start()  # while ``caught`` still holds the failed start's frames
    try:
        await WorkerBackend("local", "none", fixed).call({"op": "stats"})
    finally:
        await fixed.close()
    assert caught.value is not None


async def until_logged(caplog: pytest.LogCaptureFixture, text: str) -> None:
    async with asyncio.timeout(30):
        while text not in caplog.text:
            await asyncio.sleep(0.02)  # the log is what says the watcher got there


async def test_a_restart_that_cannot_spawn_is_tried_again(
    supervisor: Supervisor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The restart's exec fails (an OSError: here a missing interpreter, as EAGAIN from
    a process limit would): the watcher keeps trying with its backoff, and the worker
    is back once a start can work again."""
    backend = WorkerBackend("local", "none", supervisor)
    first = supervisor.pid
    assert first is not None
    caplog.set_level(logging.WARNING, "fazai.llm")
    real = sys.executable
    sys.executable = str(tmp_path / "no-such-python")
    try:
        os.kill(first, signal.SIGKILL)
        await until_logged(caplog, "cannot start the worker")
    finally:
        sys.executable = real
    stats = await asyncio.wait_for(backend.call({"op": "stats"}), 60)
    assert "models" in stats and supervisor.pid != first and supervisor.restarts == 1


async def test_a_watcher_that_fails_is_started_again_by_the_next_request(
    supervisor: Supervisor, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in the watcher (here: a restart that raises ValueError) must not leave the
    supervisor 'running' with no one restarting the worker: the next request starts it."""
    backend = WorkerBackend("local", "none", supervisor)
    first = supervisor.pid
    assert first is not None
    caplog.set_level(logging.ERROR, "fazai.llm")
    real = sys.executable
    sys.executable = "python\0with-a-nul"  # exec refuses it with ValueError
    try:
        os.kill(first, signal.SIGKILL)
        await until_logged(caplog, "watcher failed")
    finally:
        sys.executable = real
    assert not supervisor.running
    stats = await asyncio.wait_for(backend.call({"op": "stats"}), 60)
    assert "models" in stats and supervisor.pid != first
