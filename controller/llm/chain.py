"""One role's ordered backends, and how a request falls over from one to the next.

``stream(request)`` tries each backend in order, skipping one whose circuit is open:

* a failure before its first chunk: the next backend is tried; the caller sees nothing;
* a failure after chunks came out (a dropped stream, a crashed worker, an answer that
  breaks the schema): the next backend makes the answer again **from the start**. Its
  first chunk carries ``restart=True`` (an empty one when it answers with no chunk at all)
  and counts ``index`` from 0 again: the caller discards every text it got before. A
  marker in the stream, rather than a silent reset of ``index``, because an agent that
  concatenates pieces must not be able to miss it, and a gateway that already sent the
  partial text to its client sees exactly when it must give up that response. The final
  :class:`~controller.llm.completion.Answer` holds the whole text of the backend that
  served it, whatever came before;
* which errors fall through, and which stop the chain (they would fail the same
  everywhere, or they are the caller's own limits):

  ===========================================  ========  ==============================
  error                                        falls to  why
                                               the next
  ===========================================  ========  ==============================
  BackendUnavailable, BackendBusy, anything    yes       this backend is down or full;
  unmapped (a bug in a backend)                          counted by its circuit breaker
  SchemaUnsupported                            yes       this backend cannot enforce the
                                                         schema; another may (a remote
                                                         vLLM vs llama.cpp's converter)
  BackendRefused, ``request_fault=False``      yes       its own configuration (key,
  (401, 403, 404)                                        model name), not the request's
  BackendRefused, ``request_fault=True``       no        the request as such was refused
  (400, 413, 422)                                        (it would be everywhere): the
                                                         caller gets it at once
  GenerationAborted                            no        an abort or the budget's
                                                         deadline: the caller's, for the
                                                         whole chain
  AnswerTruncated                              no        the budget's max_tokens, the same
                                                         on every backend (backends
                                                         answer ``finish_reason=length``;
                                                         ``complete`` raises it)
  ===========================================  ========  ==============================

  Only temporary failures count toward opening a circuit (the breaker reads
  ``retry_decision``). When every backend failed, :class:`NoBackendLeft` lists each one's
  error; it is permanent only when all of them were.

The budget's deadline is the chain's: each backend gets all that is left of it, not a
share kept back for the fallbacks (a long answer must not be cut short for a fallback
that may never be needed). A backend that hangs with a budget shorter than its own
``tokenTimeout`` therefore spends the whole budget: it raises
:class:`~controller.llm.errors.DeadlineExceeded`, which goes to the caller (no time is
left for another backend) and counts as a temporary failure on its circuit, so that after
``failures`` such requests in a row it is skipped and the next backend gets the budget.
A backend that stops at the deadline itself and says so (the worker:
``DeadlineExceeded.answered``) goes to the caller too, but counts nothing: it is up.

Events (no prompt text in any): ``model.token`` per chunk (the answer's own text, for the
SSE stream; ephemeral: live subscribers get it, the bus's replay history does not keep
it), ``model.fallback`` when a backend fails and the next one is tried, ``model.answer``
with backend, model (as the backend reports it), fallbacks, token counts and timings.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from controller.events import EventBus, EventType
from controller.llm.backend import Backend
from controller.llm.breaker import Breaker
from controller.llm.completion import Answer, Chunk, Completion, Role
from controller.llm.errors import (
    AnswerTruncated,
    BackendRefused,
    BackendUnavailable,
    GenerationAborted,
    ModelError,
    NoBackendLeft,
)
from controller.llm.metrics import ModelMetrics

log = logging.getLogger("fazai.llm")


@dataclass(frozen=True)
class Link:
    backend: Backend
    breaker: Breaker
    model: str  # the model's name, for metrics of failures (answers name their own)

    @property
    def name(self) -> str:
        return self.backend.name


def stops_chain(error: ModelError) -> bool:
    """Whether ``error`` goes to the caller at once rather than to the next backend
    (see the module's table)."""
    if isinstance(error, GenerationAborted | AnswerTruncated):
        return True
    return isinstance(error, BackendRefused) and error.request_fault


class Chain:
    def __init__(
        self,
        role: Role,
        links: Sequence[Link],
        *,
        events: EventBus | None = None,
        metrics: ModelMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.role = role
        self.links = tuple(links)
        self._events = events
        self._metrics = metrics
        self._clock = clock

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(link.name for link in self.links)

    async def stream(self, request: Completion) -> AsyncIterator[Chunk | Answer]:
        call = uuid.uuid4().hex[:16]
        start = self._clock()
        deadline = start + request.budget.seconds if request.budget.seconds is not None else None
        attempts: list[ModelError] = []
        fallbacks: list[str] = []
        delivered = 0  # chunks the caller got, from every backend so far
        for link in self.links:
            admission = link.breaker.allow()
            if admission is None:
                attempts.append(_skipped(link))
                continue
            sub = request
            if deadline is not None:
                left = deadline - self._clock()
                if left <= 0:
                    link.breaker.release(admission)
                    raise GenerationAborted("", "the budget's deadline passed") from _last(attempts)
                sub = dataclasses.replace(
                    request, budget=dataclasses.replace(request.budget, seconds=left)
                )
            restart = delivered > 0
            produced = 0
            first_at = 0.0
            verdict = False
            items = link.backend.stream(sub)
            try:
                while True:
                    # Only the backend's own step is its failure: what the chain does
                    # with an item (events, metrics) failing is the chain's bug, raised
                    # to the caller and not counted against the backend.
                    failure = await _step(link, items)
                    if isinstance(failure, ModelError):
                        break
                    item = failure
                    if isinstance(item, Chunk):
                        if produced == 0:
                            first_at = self._clock()
                        chunk = Chunk(item.text, produced, link.name, restart and produced == 0)
                        produced += 1
                        delivered += 1
                        self._token(call, request, chunk)
                        yield chunk
                        continue
                    verdict = True
                    link.breaker.success(admission)
                    if restart and produced == 0:
                        marker = Chunk("", 0, link.name, restart=True)
                        self._token(call, request, marker)
                        yield marker
                    now = self._clock()
                    answer = dataclasses.replace(
                        item,
                        backend=link.name,
                        fallbacks=tuple(fallbacks),
                        timings=dataclasses.replace(
                            item.timings,
                            ttft_s=(first_at - start) if produced else now - start,
                            total_s=now - start,
                        ),
                    )
                    self._answered(call, link, answer)
                    yield answer
                    return
                verdict = True
                link.breaker.failure(failure, admission)
                self._failed(call, link, failure, produced)
                if stops_chain(failure):
                    raise failure
                attempts.append(failure)
                fallbacks.append(link.name)
            finally:
                if not verdict:  # the caller stopped reading: no word on the backend
                    link.breaker.release(admission)
                closing = getattr(items, "aclose", None)
                if closing is not None:
                    await closing()  # aborts the generation on the backend
        raise NoBackendLeft(self.role.value, attempts) from _last(attempts)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        attempts: list[ModelError] = []
        for link in self.links:
            admission = link.breaker.allow()
            if admission is None:
                attempts.append(_skipped(link))
                continue
            try:
                vectors = await link.backend.embed(texts)
            except ModelError as exc:
                link.breaker.failure(exc, admission)
                self._failed("", link, exc, 0)
                if stops_chain(exc):
                    raise
                attempts.append(exc)
                continue
            except Exception as exc:  # a backend broke its contract: it is down to us
                error = _broken(link, exc)
                link.breaker.failure(error, admission)
                self._failed("", link, error, 0)
                attempts.append(error)
                continue
            except BaseException:  # cancelled: no word on the backend
                link.breaker.release(admission)
                raise
            link.breaker.success(admission)
            return vectors
        raise NoBackendLeft(self.role.value, attempts) from _last(attempts)

    # -- what the chain tells ------------------------------------------------------

    def _publish(self, type: EventType, *, ephemeral: bool = False, **data: Any) -> None:
        if self._events is not None:
            self._events.publish(type, ephemeral=ephemeral, **data)

    def _token(self, call: str, request: Completion, chunk: Chunk) -> None:
        # Ephemeral: live subscribers get every token, the bus's replay history keeps
        # none, so a long answer cannot push run and approval events out of it.
        self._publish(
            EventType.MODEL_TOKEN,
            ephemeral=True,
            request=call,
            role=self.role.value,
            session=request.session,
            backend=chunk.backend,
            index=chunk.index,
            text=chunk.text,
            restart=chunk.restart,
        )

    def _failed(self, call: str, link: Link, error: ModelError, produced: int) -> None:
        kind = type(error).__name__
        log.warning("model backend %s failed: %s", link.name, error)
        if self._metrics is not None:
            self._metrics.error(link.name, link.model, kind)
        if stops_chain(error):
            return
        if self._metrics is not None:
            self._metrics.fallback(self.role.value, link.name, kind)
        self._publish(
            EventType.MODEL_FALLBACK,
            request=call,
            role=self.role.value,
            backend=link.name,
            error=kind,
            message=str(error),
            chunks=produced,
        )

    def _answered(self, call: str, link: Link, answer: Answer) -> None:
        if self._metrics is not None:  # labelled by the configured model: a bounded set
            self._metrics.answer(self.role.value, link.model, answer)
        self._publish(
            EventType.MODEL_ANSWER,
            request=call,
            role=self.role.value,
            backend=answer.backend,
            model=answer.model,
            finish_reason=answer.finish_reason,
            fallbacks=list(answer.fallbacks),
            usage={
                "prompt": answer.usage.prompt_tokens,
                "completion": answer.usage.completion_tokens,
                "cached": answer.usage.cached_tokens,
            },
            ttft_s=round(answer.timings.ttft_s, 4),
            total_s=round(answer.timings.total_s, 4),
            per_second=round(answer.tokens_per_s, 2),
        )


async def _step(link: Link, items: AsyncIterator[Chunk | Answer]) -> Chunk | Answer | ModelError:
    """The backend's next item, or the error it failed with (mapped when it broke its
    contract: an unmapped exception, a stream that ended without its Answer)."""
    try:
        return await anext(items)
    except StopAsyncIteration:
        return BackendUnavailable(link.name, "the stream ended without an answer")
    except ModelError as exc:
        return exc
    except Exception as exc:  # a backend broke its contract: it is down to us
        return _broken(link, exc)


def _broken(link: Link, exc: Exception) -> ModelError:
    log.error("model backend %s failed unexpectedly", link.name, exc_info=exc)
    error = BackendUnavailable(link.name, f"failed ({type(exc).__name__})")
    error.__cause__ = exc
    return error


def _skipped(link: Link) -> ModelError:
    """What an open circuit says in NoBackendLeft: when to try it again."""
    wait = link.breaker.retry_in()
    error = BackendUnavailable(link.name, f"circuit open ({wait:.1f}s left)")
    error.delay = wait
    return error


def _last(attempts: Sequence[ModelError]) -> ModelError | None:
    return attempts[-1] if attempts else None
