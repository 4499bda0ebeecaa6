"""A streaming client that goes away before its first token, over the real worker: its
request waits in the worker's queue behind a long answer (one slot), the client leaves,
and the worker drops it then, not once the slot is free (the gateway awaits the first
item before it starts the response, so that wait must watch for the disconnect too)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from gatewaykit import TOKEN, Running, gateway, models_of, smollm2_settings

from controller.llm import worker
from controller.llm.runtime import ModelRuntime
from tests.answerkit import forced_words

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Hundreds of forced tokens under a grammar: many seconds of the one slot.
ENDLESS = {
    "type": "json_schema",
    "json_schema": {"name": "words", "schema": forced_words(120)},
}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Running, worker.WorkerBackend]]:
    settings = smollm2_settings(tmp_path_factory.mktemp("gateway"), queue=4, slots=1)
    backends = {b.name: worker.local_backend(settings, b) for b in settings.backends}
    runtime = ModelRuntime(settings, backends)
    try:
        async with gateway(runtime, models_of(settings), token_env="FAZAI_TEST_GONE") as running:
            yield running, backends["smollm2"]
    finally:
        await runtime.close()


async def queue(local: worker.WorkerBackend) -> dict[str, Any]:
    detail: dict[str, Any] = (await local.stats()).get("queue_detail", {})
    return detail


async def until(local: worker.WorkerBackend, key: str, value: int) -> None:
    """Polls the worker's own counts (no event crosses the process boundary)."""
    async with asyncio.timeout(30):
        while (await queue(local)).get(key, 0) != value:
            await asyncio.sleep(0.05)


async def test_a_client_gone_while_queued_is_dropped_by_the_worker(
    served: tuple[Running, worker.WorkerBackend],
) -> None:
    running, local = served
    url = f"{running.url}/chat/completions"
    ask = [{"role": "user", "content": "List words."}]
    async with httpx.AsyncClient(timeout=120, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        long = asyncio.create_task(
            http.post(url, json={"messages": ask, "max_tokens": 600, "response_format": ENDLESS})
        )
        try:
            await until(local, "running", 1)  # the one slot is taken
            body = {"messages": ask, "max_tokens": 8, "stream": True}
            waiting = asyncio.create_task(http.post(url, json=body))
            await until(local, "depth", 1)  # it waits in the worker, no token yet
            waiting.cancel()  # the client goes away, its connection closed
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
            await until(local, "depth", 0)
            # Dropped while the long answer still holds the slot, not run after it.
            assert (await queue(local))["running"] == 1, "the long answer ended first"
            assert not long.done()
        finally:
            long.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await long
    await until(local, "pending", 0)
