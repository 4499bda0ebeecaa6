"""The worker process against hostile or unlucky clients, through its real socket: loads
that fail leave the table as it was, the model cap, shutdown with a request that ignores
its abort, idle and slow connections, oversized lines, aborts after the fact."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

from fazai_native import protocol
from fazai_native.embed import MAX_CHARS
from fazai_native.residency import MAX_MODELS
from workerkit import LONG, SMOLLM2, generate, launch, running_worker


def test_a_failed_load_by_spec_declares_nothing_and_keeps_a_good_spec(tmp_path: Path) -> None:
    models = [{"name": "spare", **SMOLLM2}]
    with running_worker(tmp_path, models=models) as worker, worker.client() as client:
        failed = client.call(
            {"op": "load", "id": "l1", "spec": {"name": "ghost", "path": str(tmp_path / "no")}}
        )
        assert failed["code"] == "load_failed", failed
        assert "ghost" not in client.stats()["models"]
        unknown = client.call(generate("g1", "ghost"))
        assert unknown["code"] == "unknown_model", unknown
        bad = tmp_path / "bad.gguf"
        bad.write_bytes(b"GGUF" + b"\0" * 64)
        failed = client.call(
            {"op": "load", "id": "l2", "spec": {"name": "spare", "path": str(bad), "n_threads": 1}}
        )
        assert failed["code"] == "load_failed", failed
        # The good spec is still the one declared: loading it by name works.
        loaded = client.call({"op": "load", "id": "l3", "model": "spare"})
        assert loaded["event"] == "result", loaded
        done = client.call(generate("g2", "spare", max_tokens=2))
        assert done["event"] == "done", done


def test_declared_models_are_capped(tmp_path: Path) -> None:
    many = [{"name": f"m{i}", "path": str(tmp_path / f"m{i}.gguf")} for i in range(MAX_MODELS)]
    with running_worker(tmp_path, models=many) as worker, worker.client() as client:
        refused = client.call(
            {"op": "load", "id": "l", "spec": {"name": "more", "path": str(tmp_path / "x")}}
        )
        assert refused["code"] == "bad_request", refused
        assert str(MAX_MODELS) in refused["message"]
        assert len(client.stats()["models"]) == MAX_MODELS
    too_many = [*many, {"name": "more", "path": str(tmp_path / "x.gguf")}]
    proc = launch(str(tmp_path / "w2.sock"), tmp_path, models=too_many)
    assert proc.wait(60) == 2
    assert proc.stdout is not None
    proc.stdout.close()
    assert str(MAX_MODELS) in (tmp_path / "worker.stderr").read_text()


EMBEDDER = {"name": "embedder", "path": "embedded:minilm", "kind": "embedder", "n_threads": 1}


def _long_texts(count: int) -> list[str]:
    # The tokenizer reads all of a text before the model cuts it to 256 tokens, and an
    # embed never looks at its abort: tens of seconds of work that SIGTERM cannot stop.
    return [(f"word{i} " * (MAX_CHARS // 8))[:MAX_CHARS] for i in range(count)]


def test_sigterm_with_requests_that_ignore_their_abort_still_answers_and_exits(
    tmp_path: Path,
) -> None:
    models = [{**EMBEDDER, "slots": 4}]
    extra = ("--shutdown-grace", "1")
    with running_worker(tmp_path, models=models, extra=extra) as worker, worker.client() as client:
        assert client.call({"op": "load", "id": "l", "model": "embedder"})["event"] == "result"
        ids = [f"e{i}" for i in range(4)]
        for rid in ids:
            client.send({"op": "embed", "id": rid, "model": "embedder", "texts": _long_texts(40)})
        deadline = time.monotonic() + 60
        while client.stats()["queue"]["running"] < 1:
            assert time.monotonic() < deadline, "no embed started"
            time.sleep(0.2)
        began = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        for rid in ids:
            final = client.next_for(rid)
            assert final["event"] == "error" and final["code"] == "internal", final
            assert "shutting down" in final["message"]
        assert client.recv() is None  # then the connection is closed
        # Four of these embeds take minutes; the worker leaves after its grace.
        assert worker.proc.wait(45) == 0
        took = time.monotonic() - began
        assert took < 45, took
        assert "did not stop" in worker.stderr()
        assert not os.path.exists(worker.path)


def test_a_frame_begun_but_never_finished_is_refused_and_closed(tmp_path: Path) -> None:
    extra = ("--stall-timeout", "1")
    with running_worker(tmp_path, extra=extra) as worker:
        with worker.client() as client:
            client.sock.sendall(b'{"op": "stats", "id": ')  # and nothing more
            frame = client.recv()
            assert frame is not None and frame["id"] == "", frame
            assert frame["code"] == "bad_request" and "not finished" in frame["message"]
            assert client.recv() is None  # closed
        with worker.client() as client:  # a slow but finished frame is fine
            client.sock.sendall(b'{"op": "stats",')
            time.sleep(0.3)
            client.sock.sendall(b' "id": "s"}\n')
            assert client.next_for("s")["event"] == "result"


def test_an_idle_connection_is_closed_but_not_one_with_a_request_running(tmp_path: Path) -> None:
    models = [{"name": "brain", **SMOLLM2}]
    extra = ("--idle-timeout", "1")
    with running_worker(tmp_path, models=models, extra=extra) as worker:
        with worker.client() as client:
            assert client.recv() is None  # nothing sent: closed after the idle timeout
        with worker.client() as client:
            # Silent for longer than the idle timeout, but a request is running.
            client.send(generate("g", prompt=LONG, max_tokens=200))
            tokens, done = client.final("g")
            assert done["event"] == "done" and done["finish_reason"] in ("length", "stop"), done
            assert len(tokens) == done["usage"]["completion_tokens"]
            assert client.recv() is None  # then idle again: closed


def test_frame_size_limit_at_the_byte(tmp_path: Path) -> None:
    def line_of(size: int) -> bytes:
        head = b'{"op": "stats", "id": "big", "pad": "'
        tail = b'"}\n'
        return head + b"x" * (size - len(head) - len(tail)) + tail

    with running_worker(tmp_path) as worker:
        with worker.client() as client:
            client.sock.sendall(line_of(protocol.MAX_FRAME))  # at the limit: a frame
            answer = client.next_for("big")
            assert answer["code"] == "bad_request" and "pad" in answer["message"], answer
            assert client.stats()["connections"] == 1  # and the connection serves on
        with worker.client() as client:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                client.sock.sendall(line_of(protocol.MAX_FRAME + 1))
            frame = client.recv()
            assert frame is not None and frame["id"] == "" and frame["code"] == "bad_request"
            assert str(protocol.MAX_FRAME) in frame["message"]
            assert client.recv() is None  # closed


def test_a_client_that_never_reads_its_answers_is_closed(tmp_path: Path) -> None:
    extra = ("--stall-timeout", "1", "--write-limit", "4096")
    with running_worker(tmp_path, extra=extra) as worker:
        with worker.client() as client:
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sent = 0
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, TimeoutError):
                client.sock.settimeout(10)
                for i in range(2000):
                    client.send({"op": "stats", "id": f"s{i}"})
                    sent += 1
            time.sleep(3)  # past the stall timeout, reading nothing
            client.sock.settimeout(30)
            answered = 0
            with contextlib.suppress(ConnectionResetError):
                while client.recv() is not None:
                    answered += 1
            assert answered < sent  # given up on: closed, not answered to the end
        assert "its output was not read" in worker.stderr()
        with worker.client() as client:
            assert client.stats()["connections"] == 1


def test_an_abort_after_its_target_finished_says_so(tmp_path: Path) -> None:
    models = [{"name": "brain", **SMOLLM2}]
    with running_worker(tmp_path, models=models) as worker, worker.client() as client:
        done = client.call(generate("g", prompt="Hi", max_tokens=2))
        assert done["event"] == "done", done
        late = client.call({"op": "abort", "id": "a1", "target": "g"})
        assert late["result"] == {"target": "g", "aborted": False, "reason": "finished"}
        stats = client.call({"op": "stats", "id": "s"})
        assert stats["event"] == "result"
        late = client.call({"op": "abort", "id": "a2", "target": "s"})  # any op's id
        assert late["result"] == {"target": "s", "aborted": False, "reason": "finished"}
        never = client.call({"op": "abort", "id": "a3", "target": "typo"})
        assert never["result"] == {"target": "typo", "aborted": False, "reason": "unknown"}
        with worker.client() as other:  # ids are per connection
            elsewhere = other.call({"op": "abort", "id": "a4", "target": "g"})
            assert elsewhere["result"]["reason"] == "unknown"
        client.send(generate("long", prompt=LONG, max_tokens=400))
        assert client.next_for("long")["event"] == "token"
        live = client.call({"op": "abort", "id": "a5", "target": "long"})
        assert live["result"] == {"target": "long", "aborted": True}
        assert client.final("long")[1]["finish_reason"] == "abort"


def test_the_worker_refuses_a_socket_folder_anyone_may_write_to(tmp_path: Path) -> None:
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o777)
    proc = launch(str(folder / "w.sock"), tmp_path)
    assert proc.wait(60) == 1
    assert proc.stdout is not None
    proc.stdout.close()
    assert "writable by everyone" in (tmp_path / "worker.stderr").read_text()
    assert not (folder / "w.sock").exists()
