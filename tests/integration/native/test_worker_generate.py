"""Generation through the real worker and socket with SmolLM2 (one thread, small
context): tokens stream then ``done``; an abort frame, a deadline and a closed
connection each stop a generation; duplicate ids, a full queue and SIGTERM are answered;
stats say what ran."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from workerkit import LONG, SMOLLM2, Client, WorkerProcess, running_worker

BRAIN = {"name": "brain", "pinned": True, **SMOLLM2}


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    with running_worker(tmp_path_factory.mktemp("gen"), models=[BRAIN]) as running:
        yield running


def generate(rid: str, max_tokens: int, **fields: Any) -> dict[str, Any]:
    fields.setdefault("prompt", LONG)
    return {
        "op": "generate",
        "id": rid,
        "model": "brain",
        "params": {"max_tokens": max_tokens},
        **fields,
    }


def test_tokens_stream_in_order_then_done_carries_the_whole_text(worker: WorkerProcess) -> None:
    with worker.client() as client:
        client.send(generate("g1", 12))
        tokens, done = client.final("g1")
    assert done["event"] == "done", done
    assert [t["index"] for t in tokens] == list(range(len(tokens)))
    assert len(tokens) >= 1
    assert "".join(t["text"] for t in tokens) == done["text"]
    assert done["finish_reason"] in ("stop", "length")
    assert done["model"] == "brain"
    assert done["usage"]["completion_tokens"] <= 12 and done["usage"]["prompt_tokens"] > 5
    timings = done["timings"]
    assert 0 <= timings["ttft_s"] <= timings["total_s"]
    assert timings["queued_s"] >= 0


def test_chat_messages_are_formatted_by_the_model(worker: WorkerProcess) -> None:
    with worker.client() as client:
        done = client.call(
            {
                "op": "generate",
                "id": "c1",
                "model": "brain",
                "messages": [{"role": "user", "content": "Say hello."}],
                "params": {"max_tokens": 8},
            }
        )
    assert done["event"] == "done" and done["usage"]["completion_tokens"] >= 1, done


def test_an_abort_frame_stops_a_generation_between_tokens(worker: WorkerProcess) -> None:
    with worker.client() as client:
        client.send(generate("long", 450))
        first = client.next_for("long")
        assert first["event"] == "token"
        asked = time.monotonic()
        client.send({"op": "abort", "id": "a1", "target": "long"})
        assert client.next_for("a1")["result"] == {"target": "long", "aborted": True}
        _, done = client.final("long")
        stopped = time.monotonic() - asked
    assert done["event"] == "done" and done["finish_reason"] == "abort", done
    assert done["abort_reason"] == "abort"
    assert done["usage"]["completion_tokens"] < 450
    assert stopped < 1.0, stopped


def test_a_deadline_stops_a_generation(worker: WorkerProcess) -> None:
    with worker.client() as client:
        began = time.monotonic()
        done = client.call(generate("d1", 450, deadline=0.5))
        took = time.monotonic() - began
    if done["event"] == "error":  # stopped before its first token: the "aborted" code
        assert done["code"] == "aborted", done
    else:
        assert done["finish_reason"] == "abort", done
        assert done["abort_reason"] == "deadline"
    assert took < 2.0, took


def test_a_closed_connection_aborts_its_requests(worker: WorkerProcess) -> None:
    first = worker.client()
    first.send(generate("left", 450))
    assert first.next_for("left")["event"] == "token"
    first.close()
    # One slot: had the first not stopped, this would wait for its ~450 tokens.
    with worker.client() as client:
        done = client.call(generate("next", 4))
    assert done["event"] == "done", done
    assert done["timings"]["queued_s"] < 1.5, done["timings"]


def test_a_duplicate_id_in_flight_is_refused(worker: WorkerProcess) -> None:
    with worker.client() as client:
        client.send(generate("same", 450))
        assert client.next_for("same")["event"] == "token"
        client.send(generate("same", 4))
        refused = client.next_for("same")
        while refused["event"] == "token":  # the first's tokens still come
            refused = client.next_for("same")
        assert refused["event"] == "error" and refused["code"] == "bad_request", refused
        assert refused["message"].startswith("id:")
        client.send({"op": "abort", "id": "a2", "target": "same"})
        _, done = client.final("same")
        assert done["finish_reason"] == "abort"


def test_sessions_reuse_their_prompt_and_can_be_dropped(worker: WorkerProcess) -> None:
    with worker.client() as client:
        once = client.call(generate("s1", 4, session="agent-1", prompt="The sky is"))
        twice = client.call(generate("s2", 4, session="agent-1", prompt="The sky is blue and"))
        assert once["event"] == twice["event"] == "done", (once, twice)
        assert twice["usage"]["cached_tokens"] > 0, twice["usage"]
        brain = client.stats()["models"]["brain"]
        assert brain["sessions"] == 1 and brain["sessions_bytes"] > 0
        assert brain["sessions_capacity_bytes"] >= brain["sessions_bytes"]
        dropped = client.call({"op": "drop", "id": "x1", "session": "agent-1"})
        assert dropped["result"] == {"session": "agent-1", "dropped": True}
        again = client.call({"op": "drop", "id": "x2", "session": "agent-1"})
        assert again["result"]["dropped"] is False


def test_stats_name_models_memory_sessions_queue_and_speeds(worker: WorkerProcess) -> None:
    with worker.client() as client:
        client.call(generate("st", 8))
        stats = client.stats()
    brain = stats["models"]["brain"]
    assert brain["loaded"] and brain["pinned"] and brain["memory_bytes"] > 50 << 20
    assert brain["requests"] >= 1 and brain["completion_tokens"] >= 1
    assert brain["recent_tokens_per_s"] > 0 and brain["recent_ttft_s"] > 0
    assert "sessions_bytes" in brain
    assert stats["queue"]["size"] == 8 and stats["queue"]["pending"] == 0
    assert stats["in_flight"] == 0  # counted before the stats request itself
    assert stats["swaps"] == 0  # the brain loaded at start
    assert stats["totals"]["completion_tokens"] >= brain["completion_tokens"]
    assert stats["budget_bytes"] is None and stats["used_bytes"] >= brain["memory_bytes"]


def test_a_full_queue_is_answered_busy_at_once(tmp_path: Path) -> None:
    with running_worker(tmp_path, models=[BRAIN], queue=1) as worker, worker.client() as client:
        client.send(generate("one", 450))
        assert client.next_for("one")["event"] == "token"
        asked = time.monotonic()
        client.send(generate("two", 4))
        busy = client.next_for("two")
        assert time.monotonic() - asked < 0.5
        assert busy["event"] == "error" and busy["code"] == "busy", busy
        assert busy["retry_after"] > 0
        assert client.stats()["queue"]["busy_refusals"] == 1
        client.send({"op": "abort", "id": "a", "target": "one"})
        _, done = client.final("one")
        assert done["finish_reason"] == "abort"
        # The place is free again.
        assert client.call(generate("three", 2))["event"] == "done"


def test_sigterm_answers_in_flight_requests_and_exits_0(tmp_path: Path) -> None:
    with running_worker(tmp_path, models=[BRAIN]) as worker:
        client = Client.connect(worker.path)
        client.send(generate("cut", 450))
        assert client.next_for("cut")["event"] == "token"
        worker.proc.send_signal(signal.SIGTERM)
        _, final = client.final("cut")
        assert final["event"] == "error" and final["code"] == "internal", final
        assert "shutting down" in final["message"]
        assert client.recv() is None
        client.close()
        assert worker.proc.wait(30) == 0
        assert not Path(worker.path).exists()


def test_a_reader_that_falls_behind_has_its_generation_aborted(tmp_path: Path) -> None:
    limit = 65536
    with (
        running_worker(tmp_path, models=[BRAIN], extra=("--write-limit", str(limit))) as worker,
        worker.client() as client,
    ):
        client.send(generate("fed", 450))
        assert client.next_for("fed")["event"] == "token"
        # Stop reading, and make the worker answer a flood of small requests: their
        # answers fill the socket's buffers, then the worker's, past the limit.
        target = "t" * 128
        flood = b"".join(
            json.dumps({"op": "abort", "id": f"{i:0128d}", "target": target}).encode() + b"\n"
            for i in range(4000)
        )
        client.sock.setblocking(False)
        sent = 0
        with contextlib.suppress(BlockingIOError):
            while sent < len(flood):
                sent += client.sock.send(flood[sent : sent + 65536])
        # Still not reading: wait (watching from another connection) until the worker
        # has ended the generation, which it must do without this reader's help.
        with worker.client() as watcher:
            deadline = time.monotonic() + 60
            while watcher.stats()["in_flight"] and time.monotonic() < deadline:
                time.sleep(0.05)
        client.sock.setblocking(True)
        client.sock.settimeout(60)
        _, done = client.final("fed")
    assert done["event"] == "done" and done["finish_reason"] == "abort", done
    assert done["abort_reason"] == "slow_reader"
    assert done["usage"]["completion_tokens"] < 450


def test_a_deadline_reached_while_waiting_for_the_slot_aborts_it_there(
    worker: WorkerProcess,
) -> None:
    with worker.client() as client:
        client.send(generate("holder", 450))
        assert client.next_for("holder")["event"] == "token"
        began = time.monotonic()
        waited = client.call(generate("waiter", 4, deadline=0.3))
        took = time.monotonic() - began
        assert waited["event"] == "error" and waited["code"] == "aborted", waited
        assert took < 1.0, took
        client.send({"op": "abort", "id": "a", "target": "holder"})
        assert client.final("holder")[1]["finish_reason"] == "abort"
