"""Sessions' saved KV state: what a session's last generation left in its context, kept
between requests so that the next one evaluates only its new suffix.

A state holds the token ids the context had evaluated and llama.cpp's serialised KV cache
for them (``llama_state_seq_get_data``: the cache only, never the logits, which for a
262k-token vocabulary are a megabyte per token). The store is bounded by bytes: adding a
state evicts the least recently used ones until it fits, and a state larger than the whole
capacity is not kept at all (its session simply starts cold next time)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

TOKEN_BYTES = 4  # a token id as llama.cpp holds it (int32)


@dataclass(frozen=True)
class SessionState:
    """One session's KV cache: ``tokens`` are the ids it covers, in order; ``model`` says
    which loaded model made it (a state restores only into that one), ``owner`` the
    session."""

    tokens: tuple[int, ...]
    kv: bytes
    model: str = ""
    owner: str = ""

    @property
    def nbytes(self) -> int:
        return len(self.kv) + TOKEN_BYTES * len(self.tokens)


class SessionStore:
    """Session states by session id, at most ``capacity_bytes`` in all, least recently
    used evicted first. Thread-safe: the engine's slots put and get at once."""

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes < 0:
            raise ValueError("capacity_bytes must not be negative")
        self.capacity_bytes = capacity_bytes
        self._states: OrderedDict[str, SessionState] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.evictions = 0

    @property
    def bytes_used(self) -> int:
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)

    def __contains__(self, session: object) -> bool:
        with self._lock:
            return session in self._states

    def sessions(self) -> list[str]:
        """The sessions held, least recently used first."""
        with self._lock:
            return list(self._states)

    def get(self, session: str) -> SessionState | None:
        """The session's state (it becomes the most recently used), or None."""
        with self._lock:
            state = self._states.get(session)
            if state is not None:
                self._states.move_to_end(session)
            return state

    def put(self, session: str, state: SessionState) -> bool:
        """Keep ``state`` for ``session`` (replacing its old one), evicting the least
        recently used others until it fits. False when it is larger than the capacity:
        then the session holds nothing (its old state, now stale, is gone too)."""
        with self._lock:
            old = self._states.pop(session, None)
            if old is not None:
                self._bytes -= old.nbytes
            if state.nbytes > self.capacity_bytes:
                return False
            while self._states and self._bytes + state.nbytes > self.capacity_bytes:
                _, evicted = self._states.popitem(last=False)
                self._bytes -= evicted.nbytes
                self.evictions += 1
            self._states[session] = state
            self._bytes += state.nbytes
            return True

    def drop(self, session: str) -> bool:
        """Forget the session's state; False when there was none."""
        with self._lock:
            state = self._states.pop(session, None)
            if state is None:
                return False
            self._bytes -= state.nbytes
            return True

    def drop_model(self, model: str) -> int:
        """Forget every state ``model`` made (it is being unloaded); how many went."""
        with self._lock:
            gone = [name for name, state in self._states.items() if state.model == model]
            for name in gone:
                self._bytes -= self._states.pop(name).nbytes
            return len(gone)

    def clear(self) -> None:
        with self._lock:
            self._states.clear()
            self._bytes = 0
