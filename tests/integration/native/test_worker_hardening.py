"""The worker process against hostile or unlucky clients, through its real socket: loads
that fail leave the table as it was, the model cap, shutdown with a request that ignores
its abort, idle and slow connections, oversized lines, aborts after the fact."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from fazai_native.embed import MAX_CHARS
from fazai_native.residency import MAX_MODELS
from workerkit import SMOLLM2, launch, running_worker


def test_a_failed_load_by_spec_declares_nothing_and_keeps_a_good_spec(tmp_path: Path) -> None:
    models = [{"name": "spare", **SMOLLM2}]
    with running_worker(tmp_path, models=models) as worker, worker.client() as client:
        failed = client.call(
            {"op": "load", "id": "l1", "spec": {"name": "ghost", "path": str(tmp_path / "no")}}
        )
        assert failed["code"] == "load_failed", failed
        assert "ghost" not in client.stats()["models"]
        unknown = client.call({"op": "generate", "id": "g1", "model": "ghost", "prompt": "Hi"})
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
        done = client.call(
            {
                "op": "generate",
                "id": "g2",
                "model": "spare",
                "prompt": "The capital of France is",
                "params": {"max_tokens": 2},
            }
        )
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
