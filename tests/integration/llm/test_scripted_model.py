"""The public test kit's scripted model (controller.testing.scripted_model), driven
through the real ModelRuntime and EndpointBackend over loopback HTTP: the way the agent's
loop tests will use it."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.llm.completion import Answer, Budget, Chunk, Completion, Message, Role
from controller.llm.endpoint import EndpointBackend
from controller.llm.errors import (
    AnswerTruncated,
    BackendUnavailable,
    NoBackendLeft,
    SchemaUnsupported,
)
from controller.llm.runtime import ModelRuntime
from controller.testing.scripted_model import (
    EMBEDDING_DIMENSION,
    Transcript,
    TranscriptError,
    Turn,
    embedding,
    serving,
    settings_for,
)

PLAN = {"action": "plan", "steps": ["check nginx", "restart nginx"]}
DONE = {"action": "done", "outcome": "resolved", "summary": "nginx runs again"}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"action": {"enum": ["plan", "done"]}},
    "required": ["action"],
}


def ask(text: str, *, schema: Mapping[str, Any] | None = None, **budget: int) -> Completion:
    return Completion(
        Role.BRAIN,
        messages=(Message("system", "You are FazAI."), Message("user", text)),
        schema=schema,
        budget=Budget(**budget),
    )


def cause(error: NoBackendLeft, index: int = 0) -> BaseException:
    return error.attempts[index]


async def test_two_turns_stream_in_order_in_chunks_with_usage(tmp_path: Path) -> None:
    file = tmp_path / "loop.yaml"
    file.write_text(
        "turns:\n"
        "  - expect: restart nginx\n"
        f"    answer: {json.dumps(PLAN)}\n"
        "  - expect: [exit 0, active]\n"
        "    answer:\n"
        "      action: done\n"
        "      outcome: resolved\n"
        "      summary: nginx runs again\n"
    )
    with serving(file) as model:
        runtime = ModelRuntime(settings_for(model.url))
        answers: list[Answer] = []
        for text in ("goal: restart nginx on web-1", "observation: exit 0, nginx active"):
            items = [item async for item in runtime.stream(ask(text))]
            chunks = [i for i in items if isinstance(i, Chunk)]
            answer = items[-1]
            assert isinstance(answer, Answer) and len(chunks) == len(items) - 1
            assert len(chunks) > 3 and all(0 < len(c.text) <= 8 for c in chunks)
            assert [c.index for c in chunks] == list(range(len(chunks)))
            assert "".join(c.text for c in chunks) == answer.text
            assert answer.usage.completion_tokens == len(chunks)
            prompt = f"You are FazAI.\n{text}"
            assert answer.usage.prompt_tokens == math.ceil(len(prompt) / 4)
            assert (answer.backend, answer.model, answer.finish_reason) == (
                "scripted-brain",
                "scripted",
                "stop",
            )
            answers.append(answer)
        assert [json.loads(a.text) for a in answers] == [PLAN, DONE]
        assert (model.calls, model.served, model.remaining, model.errors) == (2, 2, 0, [])
        sent = model.completions
        assert [r.path for r in sent] == ["/v1/chat/completions"] * 2
        assert sent[1].body["messages"][-1]["content"] == "observation: exit 0, nginx active"
        assert sent[0].body["stream"] is True
        await runtime.close()


async def test_a_raw_prompt_and_the_packaged_sample_go_to_completions() -> None:
    transcript = Transcript.packaged("restart_nginx")
    assert len(transcript.turns) == 3
    with serving(transcript) as model:
        runtime = ModelRuntime(settings_for(model.url, roles=("executor",)))
        answer = await runtime.complete(Completion(Role.EXECUTOR, prompt="Goal: nginx is up"))
        assert json.loads(answer.text)["action"] == "plan"
        assert answer.backend == "scripted-executor"
        assert model.requests[0].path == "/v1/completions"
        assert model.remaining == 2
        await runtime.close()


async def test_an_unexpected_request_fails_loudly_naming_the_turn() -> None:
    transcript = Transcript((Turn("{}"), Turn(json.dumps(DONE), expect=("exit 0",))))
    with serving(transcript, strict=False) as model:
        runtime = ModelRuntime(settings_for(model.url))
        await runtime.complete(ask("goal"))
        with pytest.raises(NoBackendLeft) as caught:
            await runtime.complete(ask("observation: exit 1"))
        error = cause(caught.value)
        assert isinstance(error, BackendUnavailable)
        assert "HTTP 500 (transcript_mismatch)" in str(error)
        assert model.remaining == 1  # a mismatch takes no turn
        assert model.errors == [
            "turn 2 of 2 expected 'exit 0' in the last user message, which was: "
            "'observation: exit 1'"
        ]
        await runtime.close()


async def test_strict_serving_raises_what_the_loop_may_have_swallowed() -> None:
    transcript = Transcript((Turn("{}", expect=("nginx",)),))
    with pytest.raises(AssertionError) as caught, serving(transcript) as model:
        runtime = ModelRuntime(settings_for(model.url))
        with pytest.raises(NoBackendLeft):  # an agent loop that retries, then gives up
            await runtime.complete(ask("goal: apache"))
        await runtime.close()
    assert str(caught.value) == (
        "the scripted model refused requests: turn 1 of 1 expected 'nginx' in the last "
        "user message, which was: 'goal: apache'"
    )


async def test_within_prompt_looks_at_every_message() -> None:
    transcript = Transcript.parse([{"expect": "FazAI", "within": "prompt", "answer": "ok"}])
    with serving(transcript) as model:
        runtime = ModelRuntime(settings_for(model.url))
        assert (await runtime.complete(ask("goal"))).text == "ok"
        await runtime.close()


async def test_a_hanging_turn_times_out_and_the_chain_falls_back() -> None:
    with serving(Transcript((Turn(hang=True),))) as hung:
        alone = ModelRuntime(settings_for(hung.url, token_timeout=0.3))
        started = time.monotonic()
        with pytest.raises(NoBackendLeft) as caught:
            await alone.complete(ask("goal"))
        assert time.monotonic() - started >= 0.3
        assert "within tokenTimeout" in str(cause(caught.value))
        await alone.close()
    hang, good = Transcript((Turn(hang=True),)), Transcript((Turn(json.dumps(PLAN)),))
    with serving(hang) as hung, serving(good) as backup:
        runtime = ModelRuntime(settings_for([hung.url, backup.url], token_timeout=0.3))
        assert runtime.chain(Role.BRAIN) == ("scripted-brain", "scripted-brain-2")
        answer = await runtime.complete(ask("goal"))
        assert json.loads(answer.text) == PLAN
        assert (answer.backend, answer.fallbacks) == ("scripted-brain-2", ("scripted-brain",))
        assert (hung.calls, hung.remaining, backup.calls) == (1, 0, 1)
        await runtime.close()


async def test_delay_spaces_the_chunks() -> None:
    with serving(Transcript((Turn("a" * 24, delay=0.1),))) as model:
        runtime = ModelRuntime(settings_for(model.url, token_timeout=5))
        started = time.monotonic()
        answer = await runtime.complete(ask("goal"))
        assert time.monotonic() - started >= 0.3 and answer.usage.completion_tokens == 3
        await runtime.close()


async def test_finish_length_and_max_tokens_truncate() -> None:
    transcript = Transcript((Turn(json.dumps(PLAN), finish="length"), Turn("x" * 40)))
    with serving(transcript) as model:
        runtime = ModelRuntime(settings_for(model.url))
        with pytest.raises(AnswerTruncated) as caught:
            await runtime.complete(ask("goal"))
        assert caught.value.text == json.dumps(PLAN)
        # The server keeps to max_tokens (one chunk, one token) and says length.
        with pytest.raises(AnswerTruncated) as caught:
            await runtime.complete(ask("goal", max_tokens=2))
        assert caught.value.text == "x" * 16 and caught.value.usage.completion_tokens == 2
        assert model.completions[1].body["max_tokens"] == 2
        await runtime.close()


async def test_an_exhausted_transcript_is_an_error() -> None:
    with serving(Transcript((Turn("ok"),)), strict=False) as model:
        runtime = ModelRuntime(settings_for(model.url))
        await runtime.complete(ask("goal"))
        with pytest.raises(NoBackendLeft) as caught:
            await runtime.complete(ask("goal"))
        assert "HTTP 500 (transcript_exhausted)" in str(cause(caught.value))
        assert model.calls == 2 and model.errors == ["transcript exhausted after 1 turn"]
        await runtime.close()
    with serving(Transcript(()), strict=False) as model:
        async with httpx.AsyncClient(base_url=model.url + "/") as client:
            sent = await client.post("chat/completions", json={"messages": [{"content": "x"}]})
        assert sent.status_code == 500
        assert sent.json()["error"]["message"] == "transcript exhausted after 0 turns"


async def test_a_status_turn_answers_that_status() -> None:
    with serving(Transcript((Turn(status=503), Turn("ok")))) as model:
        runtime = ModelRuntime(settings_for(model.url))
        with pytest.raises(NoBackendLeft, match="HTTP 503"):
            await runtime.complete(ask("goal"))
        assert (await runtime.complete(ask("goal"))).text == "ok"  # one turn per request
        await runtime.close()


async def test_embeddings_are_deterministic_unit_vectors_ranking_shared_words() -> None:
    texts = ["restart nginx on web-1", "nginx restart", "postgres disk quota"]
    with serving(Transcript(())) as model:
        runtime = ModelRuntime(settings_for(model.url, roles=("embedder",)))
        vectors = await runtime.embed(texts)
        assert vectors == await runtime.embed(texts) == [embedding(t) for t in texts]
        assert all(len(v) == EMBEDDING_DIMENSION for v in vectors)
        assert all(math.isclose(math.fsum(x * x for x in v), 1.0) for v in vectors)

        def cosine(a: list[float], b: list[float]) -> float:
            return math.fsum(x * y for x, y in zip(a, b, strict=True))

        assert cosine(vectors[0], vectors[1]) > 0.5 > abs(cosine(vectors[0], vectors[2]))
        assert model.calls == 0 and model.requests[0].path == "/v1/embeddings"
        await runtime.close()


async def test_a_schema_answer_is_validated_by_the_endpoint() -> None:
    transcript = Transcript((Turn(json.dumps(PLAN)), Turn('{"action": "reboot"}'), Turn("{no")))
    with serving(transcript) as model:
        runtime = ModelRuntime(settings_for(model.url))
        answer = await runtime.complete(ask("goal", schema=SCHEMA))
        assert json.loads(answer.text) == PLAN
        sent = model.completions[0].body["response_format"]
        assert sent["type"] == "json_schema" and sent["json_schema"]["schema"] == SCHEMA
        with pytest.raises(NoBackendLeft) as caught:
            await runtime.complete(ask("goal", schema=SCHEMA))
        assert isinstance(cause(caught.value), SchemaUnsupported)
        await runtime.close()
        # The backend itself raises it, for a text that is not JSON at all.
        (settings,) = settings_for(model.url, roles=("brain",)).backends
        assert settings.endpoint is not None
        backend = EndpointBackend(settings.name, settings.endpoint)
        with pytest.raises(SchemaUnsupported, match="not JSON"):
            [item async for item in backend.stream(ask("goal", schema=SCHEMA))]
        await backend.close()


async def test_plain_openai_clients_get_whole_answers_and_the_model_list() -> None:
    transcript = Transcript((Turn("hello world"), Turn("text", finish="length")))
    with serving(transcript, model="m1") as model:
        async with httpx.AsyncClient(base_url=model.url + "/") as client:
            listed = (await client.get("models")).json()
            assert [m["id"] for m in listed["data"]] == ["m1"]
            chat = await client.post(
                "chat/completions",
                json={"model": "m1", "messages": [{"role": "user", "content": "hi"}]},
            )
            body = chat.json()
            assert body["choices"][0]["message"] == {"role": "assistant", "content": "hello world"}
            assert body["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
            text = (await client.post("completions", json={"prompt": "p"})).json()
            assert text["choices"][0] == {"index": 0, "text": "text", "finish_reason": "length"}
        # Without /v1, as some clients are configured.
        root = model.url.removesuffix("/v1")
        async with httpx.AsyncClient() as client:
            assert (await client.get(root + "/models")).status_code == 200
        assert model.calls == 2


def test_a_bad_transcript_is_refused_naming_the_turn(tmp_path: Path) -> None:
    with pytest.raises(TranscriptError, match="turn 2: unknown key 'answr'"):
        Transcript.parse(["ok", {"answr": "typo"}])
    with pytest.raises(TranscriptError, match="turn 1: finish is stop or length"):
        Transcript.parse([{"answer": "x", "finish": "abort"}])
    with pytest.raises(TranscriptError, match="turn 1: a turn needs an answer"):
        Transcript.parse([{"expect": "x"}])
    file = tmp_path / "t.json"
    file.write_text(json.dumps({"chunkSize": 0, "turns": []}))
    with pytest.raises(TranscriptError, match="chunkSize"):
        Transcript.load(file)
    file.write_text(json.dumps({"chunkSize": 3, "turns": [{"answer": {"action": "observe"}}]}))
    loaded = Transcript.load(file)
    assert loaded.chunk_size == 3 and loaded.turns[0].answer == '{"action": "observe"}'
