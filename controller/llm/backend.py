"""What the chain needs of a backend (the worker client, an OpenAI-compatible endpoint).

A backend streams one completion as :class:`~controller.llm.completion.Chunk` values and
ends with its :class:`~controller.llm.completion.Answer`; it raises only
:class:`~controller.llm.errors.ModelError` subclasses, mapped from whatever failed
(socket, httpx, a worker crash), chained with ``from exc``. ``started`` on a
``BackendUnavailable`` raised mid-stream is not needed: the chain knows whether a chunk
came out already, and then retries the whole completion on the next backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from controller.llm.completion import Answer, Chunk, Completion


class Backend(Protocol):
    name: str  # unique in the runtime: the model's name in fazai.yaml

    def stream(self, request: Completion) -> AsyncIterator[Chunk | Answer]:
        """Chunks as they come, then exactly one Answer, last. Cancelling the iteration
        (``aclose()``, task cancellation) aborts the generation on the backend."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def close(self) -> None: ...
