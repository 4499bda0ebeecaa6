"""The worker process and its socket, with no model loaded: the ready line, mode 0600,
a live socket refused, a stale one replaced, a file never replaced, oversized and bad
frames, and SIGTERM's clean exit."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import time
from pathlib import Path

from fazai_native import protocol, server
from workerkit import launch, running_worker


def test_ready_line_socket_mode_and_a_clean_sigterm(tmp_path: Path) -> None:
    with running_worker(tmp_path) as worker:
        assert worker.ready_line == f"ready {worker.path}"
        info = os.lstat(worker.path)
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        with worker.client() as client:
            stats = client.stats()
        assert stats["models"] == {}
        assert worker.stop(signal.SIGTERM) == 0
        assert not os.path.exists(worker.path)


def test_sigint_also_exits_cleanly(tmp_path: Path) -> None:
    with running_worker(tmp_path) as worker:
        assert worker.stop(signal.SIGINT) == 0
        assert not os.path.exists(worker.path)


def test_a_second_worker_on_a_live_socket_refuses_to_start(tmp_path: Path) -> None:
    with running_worker(tmp_path) as worker:
        second = launch(worker.path, tmp_path)
        assert second.wait(60) == 1
        assert second.stdout is not None and second.stdout.read() == ""
        second.stdout.close()
        assert "already" in worker.stderr()
        with worker.client() as client:  # the first still serves
            assert client.stats()["connections"] == 1


def test_a_socket_not_held_by_a_worker_but_answering_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "w.sock")
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(path)
    other.listen(1)
    try:
        proc = launch(path, tmp_path)
        assert proc.wait(60) == 1
        assert proc.stdout is not None
        proc.stdout.close()
        assert "already answering" in (tmp_path / "worker.stderr").read_text()
    finally:
        other.close()


def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "w.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()
    with running_worker(tmp_path) as worker, worker.client() as client:
        assert client.stats()["in_flight"] == 0


def test_a_file_at_the_socket_path_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "w.sock"
    path.write_text("not a socket")
    proc = launch(str(path), tmp_path)
    assert proc.wait(60) == 1
    assert proc.stdout is not None
    proc.stdout.close()
    assert path.read_text() == "not a socket"
    assert "not a socket" in (tmp_path / "worker.stderr").read_text()


def test_a_missing_socket_folder_is_refused(tmp_path: Path) -> None:
    proc = launch(str(tmp_path / "nope" / "w.sock"), tmp_path)
    assert proc.wait(60) == 1
    assert proc.stdout is not None
    proc.stdout.close()
    assert "does not exist" in (tmp_path / "worker.stderr").read_text()


def test_a_bad_config_exits_2_naming_the_field(tmp_path: Path) -> None:
    proc = launch(
        str(tmp_path / "w.sock"), tmp_path, models=[{"name": "a", "path": "/x", "n_ctx": 1}]
    )
    assert proc.wait(60) == 2
    assert proc.stdout is not None
    proc.stdout.close()
    assert "models[0]: spec.n_ctx" in (tmp_path / "worker.stderr").read_text()
    assert not (tmp_path / "w.sock").exists()


def test_an_oversized_frame_is_refused_and_the_connection_closed(tmp_path: Path) -> None:
    with running_worker(tmp_path) as worker:
        with worker.client() as client:
            # The worker stops reading at the limit; its answer is there all the same.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                client.sock.sendall(b"x" * (protocol.MAX_FRAME + 1024))
            frame = client.recv()
            assert frame is not None
            assert frame["event"] == "error" and frame["code"] == "bad_request"
            assert str(protocol.MAX_FRAME) in frame["message"]
            assert client.recv() is None  # closed
        with worker.client() as client:  # the worker serves on
            assert client.stats()["connections"] == 1


def test_bad_frames_are_answered_naming_the_field_and_the_connection_serves_on(
    tmp_path: Path,
) -> None:
    secret = "prompt text 9c1e"
    with running_worker(tmp_path) as worker, worker.client() as client:
        client.sock.sendall(b"{not json\n")
        frame = client.recv()
        assert frame is not None and frame["code"] == "bad_request" and frame["id"] == ""
        client.send({"op": "generate", "model": "brain", "prompt": secret})
        frame = client.recv()
        assert frame is not None and frame["message"].startswith("id:")
        cases = [
            ({"op": "teleport", "id": "a"}, "op:"),
            ({"op": "generate", "id": "b", "prompt": secret}, "model:"),
            (
                {
                    "op": "generate",
                    "id": "c",
                    "model": "m",
                    "prompt": secret,
                    "params": {"top_p": 2},
                },
                "params.top_p:",
            ),
            ({"op": "embed", "id": "d", "model": "m", "texts": "one"}, "texts:"),
            ({"op": "abort", "id": "e"}, "target:"),
            ({"op": "stats", "id": "f", "extra": 1}, "extra:"),
        ]
        for request, field in cases:
            answer = client.call(request)
            assert answer["event"] == "error" and answer["code"] == "bad_request", answer
            assert answer["message"].startswith(field), answer
            assert secret not in answer["message"]
        unknown = client.call({"op": "generate", "id": "g", "model": "nope", "prompt": secret})
        assert unknown["code"] == "unknown_model" and secret not in unknown["message"]
        gone = client.call({"op": "abort", "id": "h", "target": "never-sent"})
        assert gone["result"] == {"target": "never-sent", "aborted": False, "reason": "unknown"}
        stats = client.stats()
        assert stats["totals"]["errors"]["bad_request"] == 8
        assert stats["totals"]["errors"]["unknown_model"] == 1


def test_connections_beyond_the_limit_are_answered_busy_and_closed(tmp_path: Path) -> None:
    with running_worker(tmp_path) as worker:
        clients = []
        try:
            for i in range(server.MAX_CONNECTIONS):
                clients.append(worker.client())
                if i % 64 == 63:  # answered: the worker has accepted all before it
                    clients[-1].stats()
            assert clients[-1].stats()["connections"] == server.MAX_CONNECTIONS
            with worker.client() as extra:
                refused = extra.recv()
                assert refused is not None and refused["code"] == "busy", refused
                assert refused["retry_after"] > 0
                assert extra.recv() is None
            clients.pop().close()
            deadline = time.monotonic() + 30
            while clients[0].stats()["connections"] == server.MAX_CONNECTIONS:
                assert time.monotonic() < deadline, "the worker never saw the close"
            with worker.client() as client:  # room again
                assert client.stats()["connections"] == server.MAX_CONNECTIONS
        finally:
            for client in clients:
                client.close()


def test_a_worker_killed_with_sigkill_leaves_a_socket_the_next_one_replaces(
    tmp_path: Path,
) -> None:
    with running_worker(tmp_path) as first:
        first.proc.send_signal(signal.SIGKILL)
        assert first.proc.wait(30) == -signal.SIGKILL
        assert stat.S_ISSOCK(os.lstat(first.path).st_mode)  # left behind
        with running_worker(tmp_path) as second, second.client() as client:
            assert second.path == first.path
            assert client.stats()["connections"] == 1
