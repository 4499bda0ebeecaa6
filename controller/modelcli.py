"""``fazai model``: the model runtime for people.

    fazai model worker --socket PATH      the worker in the foreground
    fazai model serve --listen HOST:PORT  the OpenAI-compatible gateway
    fazai model list | stats              what is declared, loaded, queued
    fazai model load NAME | unload NAME   on a running worker
    fazai model chat [PROMPT]             one answer, or a conversation; Ctrl-C aborts
                                          the generation and keeps the model

The models come from fazai.yaml's ``models:`` section (``--config``, default
./fazai.yaml when it exists, else the embedded defaults). Exit codes as the rest of the
CLI: 0 done, 2 trouble, 130 interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from controller.output.terminal import SafeConsole, clean

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from controller.gateway.app import Model
    from controller.llm.metrics import ModelMetrics
    from controller.llm.runtime import ModelRuntime
    from controller.llm.settings import ModelsSettings

EXIT_OK, EXIT_TROUBLE, EXIT_INTERRUPTED = 0, 2, 130
DEFAULT_CONFIG = "fazai.yaml"

T = TypeVar("T")
err = SafeConsole(stderr=True, highlight=False, soft_wrap=True)
out = SafeConsole(highlight=False, soft_wrap=True)


def _fail(message: str) -> NoReturn:
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(message)}")
    sys.exit(EXIT_TROUBLE)


def config_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config",
        "config_file",
        type=click.Path(path_type=Path, dir_okay=False),
        help="fazai.yaml, whose models: section declares the models. Default: ./fazai.yaml "
        "when it exists, else the embedded models.",
    )(func)


def socket_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--socket",
        "socket_path",
        type=click.Path(path_type=Path, dir_okay=False),
        help="The worker's socket (default: models.worker.socket).",
    )(func)


def load_models(config_file: Path | None) -> ModelsSettings:
    """The ``models`` section of fazai.yaml, read by the controller's config loader (with
    positions for every problem), or the embedded defaults without a file."""
    from controller import daemon
    from controller.llm import settings as models_settings
    from controller.reconcile import config as configuration

    path = config_file or Path(DEFAULT_CONFIG)
    if config_file is None and not path.exists():
        return models_settings.ModelsSettings()
    daemon.register_sections()
    config = configuration.load(path)
    found = config.sections.get(models_settings.SECTION)
    return found if found is not None else models_settings.ModelsSettings()


def socket_of(models: ModelsSettings, given: Path | None) -> Path:
    return given if given is not None else models.worker.socket_path


def supervised_elsewhere(socket: Path) -> bool:
    """Whether a supervisor (``fazai model serve``, ``fazai serve``) holds ``socket``."""
    from controller.llm.supervisor import lock_path_of

    lock = lock_path_of(socket)
    try:
        handle = open(lock, encoding="utf-8")  # noqa: SIM115
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return False


def build_runtime(
    models: ModelsSettings, socket: Path | None = None, metrics: ModelMetrics | None = None
) -> ModelRuntime:
    """The runtime; its local backends go to a worker already supervised on the socket
    (a running ``fazai model serve``) when there is one, else to one it starts."""
    import dataclasses

    from controller.llm import worker
    from controller.llm.runtime import ModelRuntime
    from controller.llm.settings import WorkerSettings

    if socket is not None:
        models = dataclasses.replace(
            models, worker=WorkerSettings(socket=socket, queue=models.worker.queue)
        )
    path = models.worker.socket_path
    if supervised_elsewhere(path):
        from controller.llm.backend import Backend
        from controller.llm.endpoint import EndpointBackend

        link = worker.SocketLink(str(path))
        backends: dict[str, Backend] = {}
        for b in models.backends:
            if b.endpoint is not None:
                backends[b.name] = EndpointBackend(b.name, b.endpoint)
            else:
                # Shared: the runtime closes them all at once, and closing it twice is nothing.
                backends[b.name] = worker.WorkerBackend(b.name, b.name, link, owns_link=True)
        return ModelRuntime(models, backends, metrics=metrics)
    return ModelRuntime(models, metrics=metrics)


def gateway_models(models: ModelsSettings) -> list[Model]:
    from controller.gateway.app import Model
    from controller.llm.completion import Role

    names = [Model(r.value, r) for r in Role if models.chain(r)]
    return names + [Model(b.name, b.role, backend=True) for b in models.backends]


def _run(coro: Coroutine[Any, Any, T]) -> T:
    from controller.errors import FazaiError

    try:
        return asyncio.run(coro)
    except FazaiError as exc:
        _fail(str(exc))


@click.group()
def model() -> None:
    """The model runtime: its worker, its OpenAI-compatible gateway, and a chat."""


@model.command("worker")
@socket_option
@click.option(
    "--worker-config",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The worker's own JSON config (default: made from fazai.yaml's models:).",
)
@click.option("--queue", type=click.IntRange(1, 1024), help="Requests it queues before 'busy'.")
@config_option
def worker_command(
    socket_path: Path | None,
    worker_config: Path | None,
    queue: int | None,
    config_file: Path | None,
) -> None:
    """Run the worker in the foreground (python -m fazai_native) until Ctrl-C or SIGTERM."""
    from controller.llm import worker

    models = load_models(config_file)
    socket = socket_of(models, socket_path)
    socket.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(prefix="fazai-worker-") as folder:
        if worker_config is None:
            worker_config = Path(folder) / "worker.json"
            fd = os.open(worker_config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(worker.worker_config(models), handle)
        args = [sys.executable, "-m", "fazai_native", "--socket", str(socket)]
        args += ["--config", str(worker_config), "--queue", str(queue or models.worker.queue)]
        child = subprocess.Popen(args)
        # The child gets Ctrl-C from the terminal itself; SIGTERM is passed on.
        signal.signal(signal.SIGTERM, lambda *_: child.terminate())
        try:
            code = child.wait()
        except KeyboardInterrupt:
            try:
                code = child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                code = child.wait()
    sys.exit(EXIT_INTERRUPTED if code == -signal.SIGINT else (code if code >= 0 else EXIT_TROUBLE))


@model.command("serve")
@click.option("--listen", metavar="HOST:PORT", help="Default 127.0.0.1:8081 (loopback).")
@click.option(
    "--token-ref",
    "token_refs",
    multiple=True,
    metavar="env:NAME|file:PATH",
    help="A bearer token callers must send, by reference (repeatable). Needed to listen "
    "beyond loopback.",
)
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True))
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True))
@config_option
@socket_option
def serve_command(
    listen: str | None,
    token_refs: tuple[str, ...],
    tls_cert: str | None,
    tls_key: str | None,
    config_file: Path | None,
    socket_path: Path | None,
) -> None:
    """Serve /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/models
    (OpenAI-compatible) over the model runtime, until SIGTERM or Ctrl-C."""
    import logging

    from controller import logformat
    from controller.gateway import settings as gateway_settings

    logformat.configure("text")
    logging.getLogger("fazai").setLevel(logging.INFO)
    from controller.errors import FazaiError

    try:
        settings = gateway_settings.from_options(listen, token_refs, tls_cert, tls_key)
    except FazaiError as exc:
        _fail(str(exc))
    models = load_models(config_file)

    async def main() -> None:
        from prometheus_client import CollectorRegistry

        from controller.gateway.serve import serve
        from controller.llm.metrics import ModelMetrics

        registry = CollectorRegistry()
        runtime = build_runtime(models, socket_path, ModelMetrics(registry))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def listening(host: str, port: int) -> None:
            shown = f"[{host}]" if ":" in host else host
            print(f"listening on http://{shown}:{port}/v1", flush=True)

        try:
            await serve(
                runtime,
                settings,
                gateway_models(models),
                stop,
                metrics=_metrics_of(runtime, registry),
                on_listen=listening,
            )
        finally:
            await runtime.close()

    _run(main())
    sys.exit(EXIT_OK)


def _metrics_of(
    runtime: ModelRuntime, registry: CollectorRegistry
) -> Callable[[], Awaitable[tuple[bytes, str]]]:
    """The exposition of the runtime's ModelMetrics, the worker's stats read first."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    async def render() -> tuple[bytes, str]:
        await runtime.refresh_metrics()
        return generate_latest(registry), CONTENT_TYPE_LATEST

    return render


async def _worker_call(socket: Path, frame: Mapping[str, Any]) -> dict[str, Any]:
    from controller.llm import worker

    async with worker.connected(str(socket)) as backend:
        return await backend.call(frame)


def _call_or_fail(socket: Path, frame: Mapping[str, Any]) -> dict[str, Any]:
    from controller.llm.errors import ModelError

    try:
        return asyncio.run(_worker_call(socket, frame))
    except ModelError as exc:
        _fail(f"{exc} (is a worker running? `fazai model worker` or `fazai model serve`)")


@model.command("list")
@config_option
@socket_option
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text")
def list_command(config_file: Path | None, socket_path: Path | None, output: str) -> None:
    """The declared models by role, and which a running worker has loaded."""
    from controller.llm.errors import ModelError

    models = load_models(config_file)
    socket = socket_of(models, socket_path)
    loaded: set[str] | None = None
    with contextlib.suppress(ModelError):
        stats = asyncio.run(_worker_call(socket, {"op": "stats"}))
        found = stats.get("models", {})
        loaded = (
            {n for n, m in found.items() if m.get("loaded")} if isinstance(found, dict) else set()
        )
    rows = []
    for b in models.backends:
        if b.endpoint is not None:
            where = f"{b.endpoint.url} ({b.endpoint.model})"
        else:
            assert b.local is not None
            where = f"local: {b.local.embedded or b.local.path}"
        state = (
            ""
            if loaded is None or b.local is None
            else ("loaded" if b.name in loaded else "not loaded")
        )
        rows.append({"name": b.name, "role": b.role.value, "backend": where, "state": state})
    if output == "json":
        click.echo(json.dumps({"models": rows, "worker": loaded is not None}, indent=2))
        return
    for row in rows:
        out.print(f"{row['role']:<9} {row['name']:<24} {row['backend']}  {row['state']}".rstrip())
    if loaded is None:
        err.print(f"[dim]no worker answers on {socket}[/]")


@model.command("stats")
@config_option
@socket_option
def stats_command(config_file: Path | None, socket_path: Path | None) -> None:
    """A running worker's stats (loaded models, sessions, memory, queue, speeds), as JSON."""
    socket = socket_of(load_models(config_file), socket_path)
    click.echo(json.dumps(_call_or_fail(socket, {"op": "stats"}), indent=2, sort_keys=True))


@model.command("load")
@click.argument("name")
@config_option
@socket_option
def load_command(name: str, config_file: Path | None, socket_path: Path | None) -> None:
    """Load a declared model on the running worker."""
    socket = socket_of(load_models(config_file), socket_path)
    _call_or_fail(socket, {"op": "load", "model": name})
    out.print(f"loaded {clean(name, one_line=True)}")


@model.command("unload")
@click.argument("name")
@config_option
@socket_option
def unload_command(name: str, config_file: Path | None, socket_path: Path | None) -> None:
    """Unload a model from the running worker (its sessions go with it)."""
    socket = socket_of(load_models(config_file), socket_path)
    _call_or_fail(socket, {"op": "unload", "model": name})
    out.print(f"unloaded {clean(name, one_line=True)}")


@model.command("chat")
@click.argument("prompt", required=False)
@click.option(
    "--role", type=click.Choice(["brain", "executor"]), default="brain", show_default=True
)
@click.option("--system", "system_prompt", help="A system message first.")
@click.option("--session", help="Keep the KV state under this id (default: one per chat).")
@click.option("--max-tokens", type=click.IntRange(1, 1 << 20), default=256, show_default=True)
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.0, show_default=True)
@config_option
@socket_option
def chat_command(
    prompt: str | None,
    role: str,
    system_prompt: str | None,
    session: str | None,
    max_tokens: int,
    temperature: float,
    config_file: Path | None,
    socket_path: Path | None,
) -> None:
    """Ask the model PROMPT and print the answer as it comes; without PROMPT, a
    conversation (an empty line or Ctrl-D ends it). Ctrl-C stops the answer being made
    and keeps the model; Ctrl-C at the prompt ends the chat."""
    import uuid

    from controller.llm.completion import Message

    models = load_models(config_file)
    history: list[Message] = []
    if system_prompt:
        history.append(Message("system", system_prompt))
    session = session or f"chat-{uuid.uuid4().hex[:12]}"
    loop = asyncio.new_event_loop()
    runtime = build_runtime(models, socket_path)
    code = EXIT_OK
    try:
        if prompt is not None:
            history.append(Message("user", prompt))
            answer, outcome = loop.run_until_complete(
                _one_answer(runtime, role, history, session, max_tokens, temperature)
            )
            code = {"aborted": EXIT_INTERRUPTED, "failed": EXIT_TROUBLE}.get(outcome, EXIT_OK)
        else:
            while True:
                try:
                    line = input("> ")
                except (EOFError, KeyboardInterrupt):
                    click.echo()
                    break
                if not line.strip():
                    break
                history.append(Message("user", line))
                answer, _ = loop.run_until_complete(
                    _one_answer(runtime, role, history, session, max_tokens, temperature)
                )
                if answer:
                    history.append(Message("assistant", answer))
                else:
                    history.pop()
    finally:
        loop.run_until_complete(runtime.close())
        loop.close()
    sys.exit(code)


async def _one_answer(
    runtime: ModelRuntime,
    role: str,
    history: list[Any],
    session: str,
    max_tokens: int,
    temperature: float,
) -> tuple[str, str]:
    """Streams one answer to stdout; (its text, "ok", "cut", "aborted" (Ctrl-C) or
    "failed"). A model error is printed, not raised (the chat goes on); its text is ""."""
    from controller.llm.completion import Answer, Budget, Chunk, Completion, Role, Sampling
    from controller.llm.errors import AnswerTruncated, ModelError

    request = Completion(
        Role(role),
        messages=tuple(history),
        session=session,
        budget=Budget(max_tokens=max_tokens),
        sampling=Sampling(temperature=temperature),
    )
    pieces: list[str] = []

    async def produce() -> Answer | None:
        async for item in runtime.stream(request):
            if isinstance(item, Chunk):
                pieces.append(item.text)
                out.print(item.text, end="", markup=False)
                out.file.flush()
            else:
                return item
        return None

    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(produce())
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    try:
        answer = await task
    except asyncio.CancelledError:
        out.print()
        err.print("[yellow]aborted[/] (the model stays loaded)")
        return "", "aborted"
    except AnswerTruncated as exc:
        out.print()
        err.print("[yellow]cut at --max-tokens[/]")
        return exc.text, "cut"
    except ModelError as exc:
        out.print()
        from rich.markup import escape

        err.print(f"[bold red]error:[/] {escape(clean(str(exc), one_line=True))}")
        return "", "failed"
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    out.print()
    if answer is None:
        return "".join(pieces), "failed"
    from rich.markup import escape

    cut = answer.finish_reason == "length"
    err.print(
        f"[dim]{escape(clean(answer.backend, one_line=True))} · "
        f"{answer.usage.completion_tokens} tokens · first {answer.timings.ttft_s:.2f} s · "
        f"{answer.tokens_per_s:.1f} tok/s{' · cut at --max-tokens' if cut else ''}[/]"
    )
    # A cut answer is still shown (a person reads it), but it is not a whole one.
    return answer.text, "cut" if cut else "ok"
