"""One loaded GGUF model: ``spec.slots`` llama.cpp contexts over the one file, each able
to run one generation at a time, with sessions' KV state kept between requests.

The contexts are separate ``Llama`` objects; with mmap (the default) they share the
weights' pages, so a second slot costs its KV cache and compute buffers, not the model
again. ``generate`` is blocking and thread-safe: up to ``slots`` calls run at once (the
decode releases the GIL), a further call waits for a slot to free.

Stopping: between tokens the loop checks the abort event and the deadline; during a prompt
evaluation llama.cpp's abort callback checks them (ggml asks it between graph nodes), so a
long prompt stops within milliseconds too. The callback is installed only while a prompt
is evaluated: it is a Python function, and asking it between every node of every token
would cost generation speed that the between-token check already covers.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import ctypes
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import jinja2
import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llama_cpp.llama_grammar import LlamaGrammar

from fazai_native.grammar import SchemaUnsupported, check_output, grammar_for
from fazai_native.sessions import SessionState, SessionStore
from fazai_native.types import ChatMessage, GenerateRequest, GenerateResult, ModelSpec

__all__ = [
    "ContextOverflow",
    "Emit",
    "Engine",
    "EngineError",
    "InvalidOutput",
    "LoadFailed",
    "SchemaUnsupported",
]

Emit = Callable[[str, int], None]
FinishReason = Literal["stop", "length", "abort"]

DEFAULT_SESSION_BYTES = 256 * 1024 * 1024
# Tokens per decode of a prompt. llama.cpp reserves a compute buffer for the worst case
# of a batch whose every token asks for logits: n_batch x vocabulary x 4 bytes, 514 MiB
# per context for Gemma 3 (262k vocabulary) at 512. 256 halves that but evaluated a
# 436-token prompt 15-50% slower here (both models, alternated runs): the time to first
# token wins by default; Engine(n_batch=...) trades it back where memory is short.
N_BATCH = 512
SLOT_WAIT_S = 0.05  # how often a call waiting for a slot looks at its abort and deadline
# A prompt formatted without a chat template (see _plain_chat): each turn on its own line
# after its role's name, the answer after "assistant:"; the next turn's name stops it.
PLAIN_STOP = ("\nuser:", "\nsystem:")
PIECE_BYTES = 64  # most tokens' text fits; a longer one is asked for again at its size
_NO_CALLBACK = llama_cpp.ggml_abort_callback()  # NULL: no abort check between graph nodes


class LoadFailed(Exception):
    """The model file could not be loaded (missing, not GGUF, no memory)."""


class ContextOverflow(Exception):
    """The prompt plus ``max_tokens`` exceed the model's context: refused before any
    evaluation."""


class InvalidOutput(Exception):
    """A schema-constrained generation finished (``stop``) with text the schema refuses
    (the grammar cannot enforce everything JSON Schema says, e.g. ``oneOf``'s exclusivity
    or a stop string cutting the JSON). The text is kept for diagnostics, never passed
    on as an answer."""

    def __init__(self, reason: str, result: GenerateResult) -> None:
        self.reason = reason
        self.result = result
        super().__init__(f"output does not match the schema: {reason}")


class EngineError(Exception):
    """llama.cpp failed while generating (not an abort)."""


@dataclass
class _Slot:
    """One context. ``state`` is the session state its KV cache holds right now (the one
    it last saved), so that the same session's next request skips the restore."""

    index: int
    llama: llama_cpp.Llama
    busy: bool = False
    state: SessionState | None = None
    stopping: Callable[[], bool] | None = None
    callback: Any = None  # the ctypes callback; referenced so it is not collected


@dataclass(eq=False)  # told apart by identity: two runs of one session look alike
class _Run:
    """One generation of a session, running: a drop meanwhile marks it."""

    dropped: bool = False


class Engine:
    """A GGUF model loaded for generation (see the module's docstring)."""

    def __init__(
        self, spec: ModelSpec, *, sessions: SessionStore | None = None, n_batch: int = N_BATCH
    ) -> None:
        if spec.kind != "gguf":
            raise LoadFailed(f"model {spec.name!r}: kind {spec.kind!r} is not a GGUF model")
        path = str(spec.path)
        if not 32 <= n_batch <= 4096:
            raise LoadFailed(f"model {spec.name!r}: n_batch {n_batch} is not in 32..4096")
        if not os.path.isfile(path):
            raise LoadFailed(f"model {spec.name!r}: no file at {path}")
        self.spec = spec
        self.sessions = sessions if sessions is not None else SessionStore(DEFAULT_SESSION_BYTES)
        self._cond = threading.Condition()
        self._closed = False
        self._users = 0  # calls inside generate/tokenize: close frees nothing under them
        self._waiting: collections.deque[object] = collections.deque()  # FIFO for slots
        self._runs: dict[str, list[_Run]] = {}  # running generations, by session
        self._slots: list[_Slot] = []
        try:
            for index in range(spec.slots):
                llama = llama_cpp.Llama(
                    model_path=path,
                    n_ctx=spec.n_ctx,
                    n_threads=spec.n_threads,
                    n_threads_batch=spec.n_threads,
                    n_batch=n_batch,
                    n_ubatch=n_batch,
                    # A sliding-window cache that keeps the whole context lets a session's
                    # prefix be truncated and restored like any other (Gemma 3).
                    swa_full=True,
                    verbose=False,
                )
                self._slots.append(self._make_slot(index, llama))
        except (ValueError, RuntimeError, OSError) as exc:
            self.close()
            raise LoadFailed(f"model {spec.name!r}: cannot load {path}: {exc}") from exc
        first = self._slots[0].llama
        self.n_ctx = first.n_ctx()
        self._vocab = first._model.vocab
        self._formatter = self._chat_formatter(first)
        self._file_bytes = os.path.getsize(path)
        # What a session state must have been made by to be restored here.
        self._fingerprint = f"{os.path.realpath(path)}:{self._file_bytes}:{self.n_ctx}"
        self._kv_bytes_per_token = _kv_bytes_per_token(first)
        # The file's pages once (the slots map the same file: the page cache holds it
        # once), then each slot's KV cache at full context and its working memory.
        self.memory_bytes = self._file_bytes + spec.slots * (
            self._kv_bytes_per_token * self.n_ctx + _compute_bytes(first)
        )

    # -- public --------------------------------------------------------------------------

    @property
    def chat_template(self) -> str | None:
        """The model's own chat template (GGUF metadata), or None (then the plain one)."""
        return self._formatter.template if self._formatter is not None else None

    def generate(
        self, request: GenerateRequest, *, abort: threading.Event, emit: Emit
    ) -> GenerateResult:
        """Generate for ``request``, streaming each piece of text through ``emit(text,
        index)`` as it is made (never a split UTF-8 character). Blocks until done.

        Raises ContextOverflow (prompt + max_tokens > n_ctx), SchemaUnsupported (a schema
        the grammar cannot enforce), InvalidOutput (a finished schema answer the schema
        refuses), EngineError (llama.cpp failed). An abort or the deadline ends it with
        ``finish_reason`` "abort" and what was made so far (nothing when it stopped the
        prompt's evaluation). An exception raised by ``emit`` ends the generation, frees
        the slot and propagates; the session's state is then not saved."""
        grammar = grammar_for(request.schema) if request.schema is not None else None
        with self._use():
            if grammar is not None:
                self._check_grammar(grammar)
            return self._generate_using(request, grammar, abort, emit)

    def _generate_using(
        self,
        request: GenerateRequest,
        grammar: LlamaGrammar | None,
        abort: threading.Event,
        emit: Emit,
    ) -> GenerateResult:
        # Tokenizing reads only the vocabulary (llama.cpp's tokenizer is const): it needs
        # no slot, so an overflow is refused without waiting for one.
        tokens, stops = self._prompt(self._slots[0].llama, request)
        if len(tokens) + request.sampling.max_tokens > self.n_ctx:
            raise ContextOverflow(
                f"prompt of {len(tokens)} tokens + max_tokens {request.sampling.max_tokens} "
                f"exceed the context of {self.n_ctx}"
            )
        stopping = _stopping(abort, request.deadline)
        # Registered before it waits for a slot: a drop from then on is seen at its end.
        run = self._begin_run(request.session)
        try:
            slot = None if stopping() else self._acquire(request.session, stopping)
            if slot is None:
                return _result("", "abort", len(tokens), 0, 0, 0.0, 0.0)
            try:
                result = self._generate(slot, request, tokens, stops, grammar, stopping, emit, run)
            finally:
                self._release(slot)
        finally:
            self._end_run(request.session, run)
        if request.schema is not None and result.finish_reason == "stop":
            reason = check_output(request.schema, result.text)
            if reason is not None:
                raise InvalidOutput(reason, result)
        return result

    def drop_session(self, session: str) -> bool:
        """Forget a session's KV state; False when it had none."""
        with self._cond:  # with the store's drop: a save checks and puts under it too
            dropped = self.sessions.drop(session)
            for run in self._runs.get(session, ()):
                run.dropped = True  # a generation of it running now saves nothing at its end
            for slot in self._slots:
                if slot.state is not None and slot.state.owner == session:
                    slot.state = None  # a later request of that name starts cold
        return dropped

    def sessions_bytes(self) -> int:
        """The bytes of the session states kept (their KV caches and token ids)."""
        return self.sessions.bytes_used

    def piece(self, token: int) -> bytes:
        """The bytes of one generated token. Not ``Llama.detokenize``: its 32-byte buffer
        silently turns a longer piece into nothing, and vocabularies hold many (a newline
        and 32 spaces of indented code, a line of 64 dashes: 47 in SmolLM2, 379 in
        Gemma 3)."""
        size = PIECE_BYTES
        while True:
            buffer = (ctypes.c_char * size)()
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, size, 0, False)
            if n >= 0:
                return buffer.raw[:n]
            if -n <= size:  # a negative answer is the size needed: never smaller
                raise EngineError(f"llama.cpp could not give the text of token {token}")
            size = -n

    @property
    def slots(self) -> int:
        return len(self._slots)

    def busy_slots(self) -> int:
        """How many slots are generating now."""
        with self._cond:
            return sum(slot.busy for slot in self._slots)

    def tokenize(self, text: str) -> list[int]:
        """``text`` as this model's tokens (special tokens' text stays plain text)."""
        with self._use():
            return self._slots[0].llama.tokenize(text.encode(), add_bos=False, special=False)

    def close(self) -> None:
        """Free the contexts (waits for running calls to end: generations give their slots
        back, callers waiting for a slot are refused) and drop the session states this
        model made (others sharing the store stay)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            while self._users:
                self._cond.wait()
            slots, self._slots = self._slots, []
        for slot in slots:
            llama_cpp.llama_set_abort_callback(slot.llama._ctx.ctx, _NO_CALLBACK, None)
            slot.llama.close()
        if hasattr(self, "_fingerprint"):  # a load that failed made no states
            self.sessions.drop_model(self._fingerprint)

    # -- slots ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _use(self) -> Iterator[None]:
        """Hold the contexts alive for one call: refused once closed; ``close`` waits for
        every holder (a tokenize racing a close would read freed memory)."""
        with self._cond:
            if self._closed or not self._slots:
                raise EngineError(f"model {self.spec.name!r} is closed")
            self._users += 1
        try:
            yield
        finally:
            with self._cond:
                self._users -= 1
                self._cond.notify_all()

    def _begin_run(self, session: str | None) -> _Run:
        run = _Run()
        if session is not None:
            with self._cond:
                self._runs.setdefault(session, []).append(run)
        return run

    def _end_run(self, session: str | None, run: _Run) -> None:
        if session is None:
            return
        with self._cond:
            runs = self._runs.get(session, [])
            if run in runs:
                runs.remove(run)
            if not runs:
                self._runs.pop(session, None)

    def _make_slot(self, index: int, llama: llama_cpp.Llama) -> _Slot:
        slot = _Slot(index=index, llama=llama)

        def should_abort(_data: ctypes.c_void_p) -> bool:
            check = slot.stopping
            return check is not None and check()

        slot.callback = llama_cpp.ggml_abort_callback(should_abort)
        return slot

    def _acquire(self, session: str | None, stopping: Callable[[], bool]) -> _Slot | None:
        """A free slot, the one already holding the session's state if it is free; None
        when the call was aborted while it waited. Callers are served in arrival order: a
        newcomer never takes a slot ahead of one already waiting for it."""
        ticket = object()
        with self._cond:
            self._waiting.append(ticket)
            try:
                while True:
                    if self._closed:
                        raise EngineError(f"model {self.spec.name!r} is closed")
                    free = [slot for slot in self._slots if not slot.busy]
                    if free and self._waiting.index(ticket) < len(free):
                        wanted = self.sessions.get(session) if session is not None else None
                        chosen = next(
                            (s for s in free if wanted is not None and s.state is wanted), None
                        )
                        if chosen is None:
                            # Prefer a slot holding no live session state, so that other
                            # sessions keep their affinity.
                            chosen = min(free, key=lambda s: s.state is not None)
                        chosen.busy = True
                        return chosen
                    if stopping():
                        return None
                    self._cond.wait(SLOT_WAIT_S)
            finally:
                self._waiting.remove(ticket)
                self._cond.notify_all()  # the next in line may now be within reach

    def _release(self, slot: _Slot) -> None:
        with self._cond:
            slot.busy = False
            self._cond.notify_all()

    # -- one generation ------------------------------------------------------------------

    def _generate(
        self,
        slot: _Slot,
        request: GenerateRequest,
        tokens: list[int],
        format_stops: tuple[str, ...],
        grammar: LlamaGrammar | None,
        stopping: Callable[[], bool],
        emit: Emit,
        run: _Run,
    ) -> GenerateResult:
        start = time.monotonic()
        llama = slot.llama
        sampling = request.sampling
        stops = tuple(s for s in (*sampling.stop, *format_stops) if s)
        cached = self._place(slot, request.session, tokens)
        suffix = tokens[cached:]

        llama.set_seed(sampling.seed if sampling.seed is not None else secrets.randbits(32))
        ctx = llama._ctx.ctx
        slot.stopping = stopping
        llama_cpp.llama_set_abort_callback(ctx, slot.callback, None)
        generator = llama.generate(
            suffix,
            reset=False,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=sampling.min_p,
            temp=sampling.temperature,
            repeat_penalty=sampling.repeat_penalty,
            grammar=grammar,
        )
        text = _Text(stops)
        pieces = 0
        completion: list[int] = []
        ttft = 0.0
        finish: FinishReason = "length"
        try:
            try:
                token = next(generator)
            except RuntimeError as exc:
                if stopping():
                    # The abort callback stopped the prompt's decode: what it left in
                    # the cache is partial, so the context starts clean next time.
                    self._clear(slot)
                    now = time.monotonic() - start
                    return _result("", "abort", len(tokens), 0, cached, now, now)
                self._clear(slot)
                raise EngineError(f"llama.cpp failed evaluating the prompt: {exc}") from exc
            finally:
                llama_cpp.llama_set_abort_callback(ctx, _NO_CALLBACK, None)
                slot.stopping = None
            ttft = time.monotonic() - start
            while True:
                if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    finish = "stop"
                    break
                completion.append(token)
                piece, stopped = text.add(self.piece(token))
                if piece:
                    emit(piece, pieces)
                    pieces += 1
                if stopped:
                    finish = "stop"
                    break
                if len(completion) >= sampling.max_tokens:
                    finish = "length"
                    break
                if stopping():
                    finish = "abort"
                    break
                try:
                    token = next(generator)
                except RuntimeError as exc:
                    self._clear(slot)
                    raise EngineError(f"llama.cpp failed generating: {exc}") from exc
        finally:
            generator.close()
        if finish != "stop" or not text.stopped:
            rest = text.flush()
            if rest:
                emit(rest, pieces)
                pieces += 1
        if request.session is not None:
            self._save(slot, request.session, run)
        total = time.monotonic() - start
        return _result(text.value, finish, len(tokens), len(completion), cached, ttft, total)

    def _place(self, slot: _Slot, session: str | None, tokens: Sequence[int]) -> int:
        """Make the slot's context hold the best reusable prefix of ``tokens``: the
        session's saved state when it has one (restored unless this slot holds it
        already), else nothing. Returns how many prompt tokens need no evaluation."""
        llama = slot.llama
        state = self.sessions.get(session) if session is not None else None
        if state is None or state.model != self._fingerprint:
            # None, or made by another model sharing the store: its bytes mean nothing here.
            self._clear(slot)
            return 0
        if slot.state is not state and not self._restore(slot, state):
            self._clear(slot)
            return 0
        common = 0
        for held, new in zip(state.tokens, tokens, strict=False):
            if held != new:
                break
            common += 1
        # At least one prompt token is evaluated so that the logits to sample from are
        # this prompt's (the saved state has no logits).
        reuse = min(common, len(tokens) - 1)
        if reuse <= 0 or not llama._ctx.kv_cache_seq_rm(-1, reuse, -1):
            self._clear(slot)
            return 0
        llama.n_tokens = reuse
        llama._requires_eval = True
        slot.state = None  # the cache is about to change
        return reuse

    def _restore(self, slot: _Slot, state: SessionState) -> bool:
        llama = slot.llama
        self._clear(slot)
        buffer = (ctypes.c_uint8 * len(state.kv)).from_buffer_copy(state.kv)
        read = llama_cpp.llama_state_seq_set_data(llama._ctx.ctx, buffer, len(state.kv), 0)
        if read != len(state.kv):
            self._clear(slot)
            return False
        count = len(state.tokens)
        llama.input_ids[:count] = state.tokens
        llama.n_tokens = count
        llama._requires_eval = True
        slot.state = state
        return True

    def _save(self, slot: _Slot, session: str, run: _Run) -> None:
        """Keep the slot's state as the session's, unless the session was dropped while
        this run had it (checked and put under the lock drop_session holds)."""
        llama = slot.llama
        ctx = llama._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, 0)
        tokens = tuple(int(t) for t in llama.input_ids[: llama.n_tokens])
        state = SessionState(
            tokens=tokens, kv=bytes(buffer)[:written], model=self._fingerprint, owner=session
        )
        with self._cond:
            kept = not run.dropped and self.sessions.put(session, state)
            slot.state = state if kept else None

    def _clear(self, slot: _Slot) -> None:
        llama = slot.llama
        memory = llama_cpp.llama_get_memory(llama._ctx.ctx)
        if memory is not None:
            llama_cpp.llama_memory_clear(memory, True)
        llama.reset()  # type: ignore[no-untyped-call]
        slot.state = None

    def _check_grammar(self, grammar: LlamaGrammar) -> None:
        """llama.cpp parses the grammar when the sampler is made; a NULL there would be
        added to the sampler chain unchecked: parse it here first."""
        sampler = llama_cpp.llama_sampler_init_grammar(
            self._vocab, grammar._grammar.encode(), grammar._root.encode()
        )
        if not sampler:
            raise SchemaUnsupported("llama.cpp could not parse the grammar made from it")
        llama_cpp.llama_sampler_free(sampler)

    # -- prompts -------------------------------------------------------------------------

    @staticmethod
    def _chat_formatter(llama: llama_cpp.Llama) -> Jinja2ChatFormatter | None:
        template = llama.metadata.get("tokenizer.chat_template")
        if not template:
            return None
        model = llama._model
        eos, bos = model.token_eos(), model.token_bos()
        return Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
        )

    def _prompt(
        self, llama: llama_cpp.Llama, request: GenerateRequest
    ) -> tuple[list[int], tuple[str, ...]]:
        """The prompt's tokens and the stop strings its format adds. A plain prompt's
        text and chat messages' contents are tokenized as text: a special token's text in
        them (``<|im_end|>``) stays text, it cannot forge a turn."""
        if request.messages:
            if self._formatter is None:
                return _plain_chat(llama, request.messages), PLAIN_STOP
            return _templated_chat(llama, self._formatter, request.messages), ()
        if not request.prompt:
            raise ValueError("a request needs a prompt or messages")
        return llama.tokenize(request.prompt.encode(), add_bos=True, special=False), ()


class _Text:
    """The generated text as it grows: bytes decoded without splitting a character, stop
    strings found across pieces, and what may be emitted now (nothing that could be the
    start of a stop string)."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(stops)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""
        self._emitted = 0
        self.stopped = False

    @property
    def value(self) -> str:
        return self._text

    def add(self, data: bytes) -> tuple[str, bool]:
        """Take a token's bytes; return the text now safe to emit and whether a stop
        string ended the generation (the text is then cut before it)."""
        self._text += self._decoder.decode(data)
        if not self._stops:
            return self._take(len(self._text)), False
        found = [at for at in (self._text.find(s, self._emitted) for s in self._stops) if at >= 0]
        if found:
            self._text = self._text[: min(found)]
            self.stopped = True
            return self._take(len(self._text)), True
        held = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(self._text) - self._emitted), held, -1):
                if self._text.endswith(stop[:size]):
                    held = size
                    break
        return self._take(len(self._text) - held), False

    def flush(self) -> str:
        """The end: what the stop check still held. Bytes of a character the last token
        left incomplete (cut by max_tokens or an abort) are dropped, not shown as U+FFFD."""
        self._decoder.reset()
        return self._take(len(self._text))

    def _take(self, end: int) -> str:
        piece = self._text[self._emitted : end]
        self._emitted = max(self._emitted, end)
        return piece


def _stopping(abort: threading.Event, deadline: float | None) -> Callable[[], bool]:
    if deadline is None:
        return abort.is_set
    return lambda: abort.is_set() or time.monotonic() >= deadline


def _result(
    text: str,
    finish: FinishReason,
    prompt_tokens: int,
    completion_tokens: int,
    cached: int,
    ttft: float,
    total: float,
) -> GenerateResult:
    return GenerateResult(
        text=text,
        finish_reason=finish,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cached_tokens=cached,
        ttft_s=ttft,
        total_s=total,
    )


_CONTINUATION = re.compile(r"\r\n|\r|\n|\u2028|\u2029|\x0b|\x0c|\x1c|\x1d|\x1e|\x85")
_PLACEHOLDER = "\x00fazai-content-{}\x00"


def _templated_chat(
    llama: llama_cpp.Llama, formatter: Jinja2ChatFormatter, messages: Sequence[ChatMessage]
) -> list[int]:
    """The messages through the model's template. The template is rendered around
    placeholders, its own text tokenized with special tokens and each content as plain
    text, so that a message cannot carry a control token."""
    marked = [{"role": m.role, "content": _PLACEHOLDER.format(i)} for i, m in enumerate(messages)]
    try:
        rendered = formatter(messages=marked).prompt  # type: ignore[arg-type]
    except jinja2.TemplateError as exc:  # raise_exception() in a template: a ValueError
        raise ValueError(f"the chat template refused the messages: {exc}") from exc
    tokens: list[int] = []
    rest = rendered
    for index, message in enumerate(messages):
        mark = _PLACEHOLDER.format(index)
        if rest.count(mark) != 1:
            raise ValueError("the chat template does not place each message's content once")
        before, rest = rest.split(mark)
        tokens += llama.tokenize(before.encode(), add_bos=False, special=True)
        tokens += llama.tokenize(message.content.encode(), add_bos=False, special=False)
    tokens += llama.tokenize(rest.encode(), add_bos=False, special=True)
    return tokens


def _plain_chat(llama: llama_cpp.Llama, messages: Sequence[ChatMessage]) -> list[int]:
    return llama.tokenize(plain_chat_text(messages).encode(), add_bos=True, special=False)


def plain_chat_text(messages: Sequence[ChatMessage]) -> str:
    """A model without a chat template (a base model): each turn as ``role: content``
    from the start of a line, then ``assistant:`` for the answer; PLAIN_STOP ends it when
    the model starts the next turn itself. A content's own line breaks are followed by an
    indent, so that no content can start a line with ``assistant:`` and forge a turn."""
    turns = (f"{m.role}: {_CONTINUATION.sub(chr(10) + '  ', m.content)}\n" for m in messages)
    return "".join(turns) + "assistant:"


def _kv_bytes_per_token(llama: llama_cpp.Llama) -> int:
    """The f16 K and V cache bytes one token takes, from the model's metadata."""
    meta = llama.metadata
    arch = meta.get("general.architecture", "")

    def number(key: str, default: int = 0) -> int:
        try:
            return int(meta.get(f"{arch}.{key}", default))
        except ValueError:
            return default

    layers = number("block_count")
    embd = number("embedding_length")
    heads = number("attention.head_count", 1) or 1
    heads_kv = number("attention.head_count_kv", heads) or heads
    key_len = number("attention.key_length", embd // heads)
    value_len = number("attention.value_length", embd // heads)
    return layers * heads_kv * (key_len + value_len) * 2


def _compute_bytes(llama: llama_cpp.Llama) -> int:
    """A context's memory besides the weights and its KV cache, as measured (PSS and
    anonymous RSS growth per added slot after a prompt, n_ctx 1024, batch 512): 35-40 MB
    for SmolLM2 (49k vocabulary), 85-90 MB for Gemma 3 (262k), 12 MB less for Gemma at a
    batch of 256. Each ``Llama`` loads its own vocabulary (about 200 bytes a token) and
    touches a batch-sized share of its compute buffer. llama.cpp reserves far more (n_batch
    x vocabulary floats for logits, 514 MiB for Gemma), but this engine asks for the last
    position's logits only, so those pages are never touched; the formula errs ~25% high:
    with two slots it says 249 MB for SmolLM2 (measured PSS 222) and 509 MB for Gemma 3
    (449)."""
    return 256 * llama.n_vocab() + llama.n_batch * llama.n_embd() * 4 * 20 + (16 << 20)
