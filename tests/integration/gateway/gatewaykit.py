"""The gateway under test: ``fazai model serve``'s app on real uvicorn on loopback, over a
real ModelRuntime whose local backends are the real worker process with the embedded
SmolLM2 (small context, one thread: five people share two cores)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from controller.gateway.app import Model, Runtime
from controller.gateway.serve import serve
from controller.gateway.settings import GatewaySettings
from controller.llm.completion import Role
from controller.llm.settings import BackendSettings, LocalModel, ModelsSettings, WorkerSettings

TOKEN = "gateway-test-token-0123456789abcdef"


def smollm2_settings(
    folder: Path, *, queue: int = 8, slots: int = 1, embedder: bool = False
) -> ModelsSettings:
    minilm = BackendSettings("minilm", Role.EMBEDDER, LocalModel(embedded="minilm"), threads=1)
    return ModelsSettings(
        backends=(
            BackendSettings(
                "smollm2",
                Role.BRAIN,
                LocalModel(embedded="smollm2-135m"),
                context_size=1024,
                threads=1,
                slots=slots,
            ),
            *((minilm,) if embedder else ()),
        ),
        worker=WorkerSettings(socket=folder / "worker.sock", queue=queue),
    )


def models_of(settings: ModelsSettings) -> list[Model]:
    names = [Model(r.value, r) for r in Role if settings.chain(r)]
    return names + [Model(b.name, b.role, backend=True) for b in settings.backends]


@dataclass
class Running:
    url: str  # the API's base, up to /v1
    stop: asyncio.Event


@contextlib.asynccontextmanager
async def gateway(
    runtime: Runtime,
    models: Sequence[Model],
    *,
    token_env: str | None = None,
    metrics: object = None,
    more_tokens: Sequence[str] = (),
) -> AsyncIterator[Running]:
    """The gateway on 127.0.0.1, a free port; with ``token_env`` a bearer token is
    needed (TOKEN, through that environment variable, or one of ``more_tokens``,
    through that name with ``_1``, ``_2``... appended)."""
    from controller.server.settings import SecretRef

    tokens: tuple[SecretRef, ...] = ()
    if token_env is not None:
        os.environ[token_env] = TOKEN
        tokens = (SecretRef(env=token_env),)
        for i, extra in enumerate(more_tokens, 1):
            os.environ[f"{token_env}_{i}"] = extra
            tokens += (SecretRef(env=f"{token_env}_{i}"),)
    settings = GatewaySettings("127.0.0.1", 0, tokens)
    stop = asyncio.Event()
    listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(
            runtime,
            settings,
            models,
            stop,
            metrics=metrics,  # type: ignore[arg-type]
            on_listen=lambda host, port: listening.set_result(port),
        )
    )
    try:
        port = await asyncio.wait_for(asyncio.shield(listening), 30)
        yield Running(f"http://127.0.0.1:{port}/v1", stop)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
