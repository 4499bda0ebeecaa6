"""The worker's other ops and error codes through the real socket: load (by name and by
spec), unload (refused while in use), schema output and a schema refused, context
overflow, an abort during a long prompt's evaluation, a load that fails."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from workerkit import SMOLLM2, WorkerProcess, generate, running_worker

MODELS = [
    {"name": "brain", "pinned": True, **SMOLLM2},
    {"name": "spare", **SMOLLM2},
    {"name": "embedder", "path": "embedded:minilm", "kind": "embedder", "n_threads": 1},
]


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    with running_worker(tmp_path_factory.mktemp("ops"), models=MODELS) as running:
        yield running


def test_load_and_unload_by_name(worker: WorkerProcess) -> None:
    with worker.client() as client:
        loaded = client.call({"op": "load", "id": "l1", "model": "spare"})
        assert loaded["result"]["model"] == "spare" and not loaded["result"]["already_loaded"]
        assert loaded["result"]["load_s"] > 0 and loaded["result"]["memory_bytes"] > 0
        again = client.call({"op": "load", "id": "l2", "model": "spare"})
        assert again["result"]["already_loaded"] is True
        assert client.stats()["models"]["spare"]["loaded"]
        gone = client.call({"op": "unload", "id": "u1", "model": "spare"})
        assert gone["result"] == {"model": "spare", "unloaded": True}
        assert not client.stats()["models"]["spare"]["loaded"]
        twice = client.call({"op": "unload", "id": "u2", "model": "spare"})
        assert twice["result"]["unloaded"] is False
        unknown = client.call({"op": "unload", "id": "u3", "model": "nope"})
        assert unknown["code"] == "unknown_model"


def test_a_model_in_use_is_not_unloaded(worker: WorkerProcess) -> None:
    with worker.client() as client:
        client.send(generate("busy", prompt="Count to a thousand:", params={"max_tokens": 400}))
        assert client.next_for("busy")["event"] == "token"
        refused = client.call({"op": "unload", "id": "u", "model": "brain"})
        assert refused["code"] == "busy" and refused["retry_after"] > 0, refused
        client.send({"op": "abort", "id": "a", "target": "busy"})
        assert client.final("busy")[1]["finish_reason"] == "abort"


def test_load_by_spec_declares_the_model(worker: WorkerProcess) -> None:
    spec = {"name": "late", "path": "embedded:smollm2-135m", "n_ctx": 256, "n_threads": 1}
    with worker.client() as client:
        loaded = client.call({"op": "load", "id": "s1", "spec": spec})
        assert loaded["event"] == "result", loaded
        assert client.call(generate("g", model="late"))["event"] == "done"
        missing = {"name": "ghost", "path": "/nonexistent/ghost.gguf"}
        failed = client.call({"op": "load", "id": "s2", "spec": missing})
        assert failed["code"] == "load_failed" and "ghost" in failed["message"], failed
        unknown = client.call(
            {"op": "load", "id": "s3", "spec": {"name": "x", "path": "embedded:llama-70b"}}
        )
        assert unknown["code"] == "load_failed" and "smollm2-135m" in unknown["message"]
        client.call({"op": "unload", "id": "s4", "model": "late"})


def test_a_schema_constrains_the_output_and_one_it_cannot_enforce_is_refused(
    worker: WorkerProcess,
) -> None:
    schema = {
        "type": "object",
        "properties": {"action": {"enum": ["plan", "apply"]}},
        "required": ["action"],
    }
    with worker.client() as client:
        done = client.call(
            generate(
                "j1",
                messages=[{"role": "user", "content": "Pick an action."}],
                params={"max_tokens": 32},
                schema=schema,
            )
        )
        assert done["event"] == "done", done
        if done["finish_reason"] == "stop":
            assert json.loads(done["text"])["action"] in ("plan", "apply")
        refused = client.call(generate("j2", schema={"type": "integer", "multipleOf": 3}))
        assert refused["code"] == "schema_unsupported", refused
        assert "multipleOf" in refused["message"]


def test_a_schema_whose_grammar_crashed_llama_cpp_is_refused_and_the_worker_lives(
    worker: WorkerProcess,
) -> None:
    # Handed to llama.cpp, this grammar overflowed the parser's stack: a segfault.
    crashing = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 20000}}}
    with worker.client() as client:
        refused = client.call(generate("big", schema=crashing))
        assert refused["code"] == "schema_unsupported", refused
        assert "20000 is over 1000" in refused["message"]
        done = client.call(generate("after", params={"max_tokens": 2}))
        assert done["event"] == "done", done
    assert worker.proc.poll() is None


def test_prompt_and_max_tokens_beyond_the_context_overflow(worker: WorkerProcess) -> None:
    with worker.client() as client:
        refused = client.call(generate("o", params={"max_tokens": 600}))  # n_ctx 512
    assert refused["code"] == "context_overflow", refused


def test_an_abort_during_a_long_prompt_stops_it_before_any_token(worker: WorkerProcess) -> None:
    prompt = "The history of the firewall, in detail. " * 45  # ~400 tokens on one thread
    with worker.client() as client:
        client.send(generate("p", prompt=prompt, params={"max_tokens": 8}))
        client.send({"op": "abort", "id": "a", "target": "p"})
        asked = time.monotonic()
        assert client.next_for("a")["result"]["aborted"] is True
        tokens, final = client.final("p")
        took = time.monotonic() - asked
        assert final["event"] == "error" and final["code"] == "aborted", final
        assert tokens == [] and took < 0.5, took
        # The model is usable after it.
        assert client.call(generate("after"))["event"] == "done"


def test_minilm_embeds_on_demand_and_ranks_a_paraphrase_first(worker: WorkerProcess) -> None:
    texts = [
        "Open port 443 on the firewall for the web server.",
        "Allow HTTPS traffic through the firewall to the web host.",
        "My grandmother bakes bread on Sundays.",
    ]
    with worker.client() as client:
        answer = client.call({"op": "embed", "id": "e1", "model": "embedder", "texts": texts})
        assert answer["event"] == "result", answer
        vectors = answer["result"]["vectors"]
        assert answer["result"]["model"] == "embedder"
        assert len(vectors) == 3 and all(len(v) == 384 for v in vectors)
        assert all(abs(sum(x * x for x in v) - 1.0) < 1e-3 for v in vectors)

        def cosine(a: list[float], b: list[float]) -> float:
            return sum(x * y for x, y in zip(a, b, strict=True))

        assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3
        stats = client.stats()["models"]["embedder"]
        assert stats["loaded"] and stats["kind"] == "embedder" and stats["requests"] == 1


def test_an_embedder_refuses_generate_and_a_generator_refuses_embed(
    worker: WorkerProcess,
) -> None:
    with worker.client() as client:
        refused = client.call({"op": "embed", "id": "e", "model": "brain", "texts": ["x"]})
        assert refused["code"] == "bad_request" and refused["message"].startswith("model:")
        refused = client.call(generate("g", model="embedder"))
        assert refused["code"] == "bad_request" and refused["message"].startswith("model:")


def test_a_pinned_model_that_cannot_load_stops_the_worker_with_exit_1(tmp_path: Path) -> None:
    from workerkit import launch

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    proc = launch(
        str(tmp_path / "w.sock"),
        tmp_path,
        models=[{"name": "brain", "path": str(broken), "pinned": True, "n_threads": 1}],
    )
    assert proc.wait(60) == 1
    assert proc.stdout is not None and proc.stdout.read() == ""
    proc.stdout.close()
    assert "brain" in (tmp_path / "worker.stderr").read_text()
    assert not (tmp_path / "w.sock").exists()
