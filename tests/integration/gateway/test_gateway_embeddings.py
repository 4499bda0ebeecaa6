"""``/v1/embeddings`` with the real ``openai`` client over the real worker serving MiniLM
(fastembed, offline)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest
import pytest_asyncio
from gatewaykit import TOKEN, Running, gateway, models_of, smollm2_settings

from controller.llm.runtime import ModelRuntime

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    settings = smollm2_settings(tmp_path_factory.mktemp("embed"), embedder=True)
    runtime = ModelRuntime(settings)
    try:
        async with gateway(runtime, models_of(settings), token_env="FAZAI_TEST_EMBED") as up:
            yield up
    finally:
        await runtime.close()


def client(running: Running) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=running.url, api_key=TOKEN, max_retries=0, timeout=120)


async def test_embeddings_rank_a_paraphrase_above_unrelated_text(running: Running) -> None:
    done = await client(running).embeddings.create(
        model="embedder", input=["a firewall rule", "a packet filter rule", "banana bread"]
    )
    vectors = [d.embedding for d in done.data]
    assert [d.index for d in done.data] == [0, 1, 2]
    assert len(vectors) == 3 and len(vectors[0]) == 384

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2]) + 0.2


async def test_a_completion_model_is_not_an_embedder(running: Running) -> None:
    with pytest.raises(openai.BadRequestError):
        await client(running).embeddings.create(model="smollm2", input="x")
