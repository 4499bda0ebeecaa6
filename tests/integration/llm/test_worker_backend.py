"""The worker backend over the real worker process serving the embedded SmolLM2: tokens
streamed as chunks, the answer's usage and timings; the worker SIGKILLed mid-stream
(the caller gets BackendUnavailable at once, naming the signal; the supervisor starts it
again and the next request is answered); a hung worker (SIGSTOP: no frame for the hang
timeout) killed and replaced; closing the stream aborts the generation; the worker's
own deadline as DeadlineExceeded, which leaves the circuit closed; a truncated answer's
usage and model."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from controller.llm.breaker import Breaker, State
from controller.llm.chain import Chain, Link
from controller.llm.completion import Answer, Budget, Chunk, Completion, Message, Role
from controller.llm.errors import AnswerTruncated, BackendUnavailable, DeadlineExceeded
from controller.llm.runtime import ModelRuntime
from controller.llm.settings import BackendSettings, LocalModel, ModelsSettings
from controller.llm.supervisor import Supervisor, WorkerOptions
from controller.llm.worker import WorkerBackend
from tests.answerkit import forced_words

pytestmark = pytest.mark.asyncio(loop_scope="module")

SMOLLM2 = {
    "name": "smollm2",
    "path": "embedded:smollm2-135m",
    "n_ctx": 1024,
    "n_threads": 1,
    "pinned": True,
}
LONG = Completion(
    Role.BRAIN,
    messages=(Message("user", "Count from one to five hundred, in words."),),
    budget=Budget(max_tokens=600),
)
SHORT = Completion(Role.BRAIN, messages=(Message("user", "Say hello."),), budget=Budget(8))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def supervisor(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Supervisor]:
    folder = tmp_path_factory.mktemp("worker")
    sup = Supervisor(
        WorkerOptions(
            socket=folder / "w.sock",
            config={"memory_budget": None, "models": [SMOLLM2]},
            backoff_initial=0.05,
            hang_timeout=2.0,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    )
    await sup.start()
    yield sup
    await sup.close()


@pytest.fixture
def backend(supervisor: Supervisor) -> WorkerBackend:
    return WorkerBackend("smollm2", "smollm2", supervisor, frame_timeout=60)


async def test_streams_chunks_then_the_answer(backend: WorkerBackend) -> None:
    items = [item async for item in backend.stream(SHORT)]
    chunks = [i for i in items if isinstance(i, Chunk)]
    answer = items[-1]
    assert isinstance(answer, Answer) and chunks
    assert "".join(c.text for c in chunks) == answer.text
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert answer.backend == "smollm2" and answer.usage.completion_tokens > 0
    assert 0 < answer.timings.ttft_s <= answer.timings.total_s


async def test_sigkill_mid_stream_fails_the_caller_at_once_and_the_worker_comes_back(
    supervisor: Supervisor, backend: WorkerBackend
) -> None:
    stream = backend.stream(LONG)
    assert isinstance(await anext(stream), Chunk)
    pid = supervisor.pid
    assert pid is not None
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(BackendUnavailable, match=r"smollm2: the worker died \(signal 9"):
        async for _ in stream:
            pass
    assert time.monotonic() - killed < 1.0  # at once, not at a timeout
    items = [item async for item in backend.stream(SHORT)]
    assert isinstance(items[-1], Answer) and items[-1].text
    assert supervisor.pid != pid and supervisor.restarts >= 1


async def test_a_hung_worker_is_killed_and_replaced(
    supervisor: Supervisor, backend: WorkerBackend
) -> None:
    stream = backend.stream(LONG)
    assert isinstance(await anext(stream), Chunk)
    pid = supervisor.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # a decode that never returns: no frame comes
    try:
        with pytest.raises(BackendUnavailable, match="the worker hung"):
            async for _ in stream:
                pass
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    items = [item async for item in backend.stream(SHORT)]
    assert isinstance(items[-1], Answer)
    assert supervisor.pid != pid


async def test_closing_the_stream_frees_the_worker(
    supervisor: Supervisor, backend: WorkerBackend
) -> None:
    stream = backend.stream(LONG)
    assert isinstance(await anext(stream), Chunk)
    await stream.aclose()  # type: ignore[attr-defined]
    # The abort stops it between tokens: the next short request is not stuck behind 600.
    started = time.monotonic()
    items = [item async for item in backend.stream(SHORT)]
    assert isinstance(items[-1], Answer)
    assert time.monotonic() - started < 5.0
    stats = await backend.stats()
    assert stats["queue_detail"]["running"] == 0


# An answer of 120 forced items: hundreds of tokens (and seconds) whatever the model
# prefers, so no budget of 2 s can see it finish (the count alone ends after 51 tokens).
ENDLESS = forced_words(120)


@pytest.mark.parametrize("seconds", [0.05, 2.0])
async def test_the_worker_s_deadline_is_deadline_exceeded_and_no_failure(
    backend: WorkerBackend, seconds: float
) -> None:
    """The worker stops at the budget's deadline (before its first token with 50 ms,
    mid-answer with 2 s of a forced long answer): the caller gets DeadlineExceeded,
    never an answer passed off as one, and the backend's circuit stays closed however
    often it happens (the worker answered: it is up)."""
    request = dataclasses.replace(
        LONG, schema=ENDLESS, budget=Budget(max_tokens=600, seconds=seconds)
    )
    breaker = Breaker(failures=1, reset=60.0)
    chain = Chain(Role.BRAIN, [Link(backend, breaker, "smollm2")])
    for _ in range(2):
        with pytest.raises(DeadlineExceeded) as caught:
            async for _ in chain.stream(request):
                pass
        assert caught.value.answered and caught.value.backend == "smollm2"
    assert breaker.state is State.CLOSED
    items = [item async for item in chain.stream(SHORT)]
    assert isinstance(items[-1], Answer) and items[-1].text


async def test_a_truncated_answer_keeps_its_usage_and_model(backend: WorkerBackend) -> None:
    local = BackendSettings("smollm2", Role.BRAIN, LocalModel(embedded="smollm2-135m"))
    runtime = ModelRuntime(ModelsSettings(backends=(local,)), {"smollm2": backend})
    with pytest.raises(AnswerTruncated) as caught:
        await runtime.complete(dataclasses.replace(LONG, budget=Budget(max_tokens=5)))
    cut = caught.value
    assert cut.usage.completion_tokens == 5 and cut.usage.prompt_tokens > 0
    assert cut.model == "smollm2" and cut.text
