"""The memory budget: which declared models are loaded, and which go to make room.

Pinned models (the brain) load at :meth:`Residency.start` and are never evicted. Others
load when a request names them; when the new one does not fit, the least recently used
unpinned models that no request is using are evicted (closed, their sessions dropped
with them) until it does. If it cannot fit even then, :class:`~fazai_native.errors.
MemoryShort` (protocol code ``memory``, retryable: the models in use will finish).

Before a model's first load its size is estimated from its files on disk (llama.cpp
maps the GGUF file; its context and compute buffers come on top); after a load the
model's own ``memory_bytes`` is known and used from then on, and the budget is checked
again with it. Sessions' KV bytes count against the budget too.

Thread-safe: one lock guards the table; loading, closing and reading the disk (the
estimate) happen outside it, so a request for a loaded model never waits for another
model's load or a slow disk, and two requests for the same unloaded model load it once
(the second waits for the first's load). A ``load`` with a spec declares the model only
if it loads: a failed one leaves the table as it was (a new name undeclared, an old
name's good spec kept). At most :data:`MAX_MODELS` models are declared."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fazai_native import errors
from fazai_native.types import ModelSpec

MAX_MODELS = 64  # declared models: each costs a table entry, stats and a slot gate


class Loaded(Protocol):
    """What the residency holds of a loaded model (an Engine or an Embedder)."""

    @property
    def memory_bytes(self) -> int: ...

    def close(self) -> None: ...


Loader = Callable[[ModelSpec], Loaded]


def sessions_bytes(model: Loaded) -> int:
    """KV bytes the model's sessions hold (0 for a model without sessions)."""
    measure = getattr(model, "sessions_bytes", None)
    return int(measure()) if callable(measure) else 0


def sessions_count(model: Loaded) -> tuple[int, int | None]:
    """How many sessions the model keeps, and the bytes they may hold (None: unknown)."""
    store = getattr(model, "sessions", None)
    if store is None or not hasattr(store, "__len__"):
        return 0, None
    return len(store), getattr(store, "capacity_bytes", None)


def files_bytes(path: str) -> int:
    """The bytes of a model's file, or of every file in its folder."""
    target = Path(path)
    try:
        if target.is_dir():
            return sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
        return target.stat().st_size
    except OSError:
        return 0


@dataclass
class _Entry:
    spec: ModelSpec
    model: Loaded | None = None
    loading: bool = False
    load_error: errors.WorkerError | None = None
    in_use: int = 0
    last_used: float = 0.0
    known_bytes: int | None = None  # memory_bytes measured at its last load
    loads: int = 0
    load_s: float = 0.0
    last_load_s: float | None = None
    evictions: int = 0
    sessions_dropped_bytes: int = 0
    reserved: int = 0  # bytes counted for it while it loads
    files: int = 0  # its files' bytes, read from disk at its declaration (not under the lock)
    provisional: bool = False  # declared by a load that has not succeeded yet: not visible

    def estimate(self) -> int:
        if self.known_bytes is not None:
            return self.known_bytes
        return self.files


@dataclass
class Eviction:
    model: str
    at: float  # time.time()
    memory_bytes: int
    sessions_bytes: int  # the KV bytes of the sessions dropped with it
    for_model: str


@dataclass
class _Totals:
    swaps: int = 0  # loads a request caused (not the pinned models' at start)
    swap_s: float = 0.0
    last_swap_s: float | None = None
    evictions: list[Eviction] = field(default_factory=list)


class Residency:
    """The loaded models under a memory budget (``None``: no limit)."""

    RECENT_EVICTIONS = 16

    def __init__(self, budget_bytes: int | None, loader: Loader) -> None:
        if budget_bytes is not None and (isinstance(budget_bytes, bool) or budget_bytes <= 0):
            raise ValueError("the memory budget must be a positive number of bytes or None")
        self.budget = budget_bytes
        self._loader = loader
        self._lock = threading.Condition()
        self._entries: dict[str, _Entry] = {}
        self._totals = _Totals()
        self._closed = False

    # -- declarations -------------------------------------------------------------

    def declare(self, spec: ModelSpec) -> None:
        """Declare (or re-declare, while not loaded) a model."""
        files = files_bytes(spec.path)  # the disk, before the lock: it may be slow
        with self._lock:
            entry = self._entries.get(spec.name)
            if entry is None or entry.provisional:
                while entry is not None and entry.loading:
                    self._lock.wait()
                    entry = self._entries.get(spec.name)
                if entry is None:
                    self._check_room_for_one()
                    self._entries[spec.name] = _Entry(spec, files=files)
                    return
                entry.provisional = False
            if entry.spec == spec:
                return
            if entry.model is not None or entry.loading:
                raise errors.Busy(
                    f"model {spec.name!r} is loaded with another spec: unload it first"
                )
            entry.spec = spec
            entry.known_bytes = None
            entry.files = files

    def _check_room_for_one(self) -> None:
        if len(self._entries) >= MAX_MODELS:
            raise errors.BadRequest(
                f"spec: at most {MAX_MODELS} models may be declared in one worker"
            )

    def spec(self, name: str) -> ModelSpec:
        with self._lock:
            return self._entry(name).spec

    def names(self) -> list[str]:
        with self._lock:
            return [n for n, e in self._entries.items() if not e.provisional]

    def _entry(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None or entry.provisional:
            raise errors.UnknownModel(f"no model named {name!r} is declared")
        return entry

    # -- loading ------------------------------------------------------------------

    def start(self) -> None:
        """Load the pinned models. Raises MemoryShort/LoadFailed if one cannot be."""
        for name in self.names():
            if self.spec(name).pinned:
                self._ensure(name, on_demand=False)

    @contextlib.contextmanager
    def use(self, name: str) -> Iterator[Loaded]:
        """The model, loaded if it is not, and kept from eviction while the block runs."""
        model = self._ensure(name, on_demand=True, hold=True)
        try:
            yield model
        finally:
            with self._lock:
                entry = self._entries[name]
                entry.in_use -= 1
                entry.last_used = time.monotonic()
                self._lock.notify_all()

    def load(self, name: str) -> dict[str, Any]:
        """Load ``name`` now (a ``load`` op): what it cost."""
        with self._lock:
            entry = self._entry(name)
            already = entry.model is not None
            pinned = entry.spec.pinned
        self._ensure(name, on_demand=not pinned)
        return self._cost(name, already)

    def load_spec(self, spec: ModelSpec) -> dict[str, Any]:
        """Declare ``spec`` and load it (a ``load`` op with a spec), as one step: if the
        load fails, the declaration is undone (a new name is forgotten; a name declared
        before keeps its old spec), so a bad spec never replaces a good one."""
        files = files_bytes(spec.path)  # the disk, before the lock
        with self._lock:
            entry = self._entries.get(spec.name)
            already = (
                entry is not None
                and not entry.provisional
                and entry.spec == spec
                and entry.model is not None
            )
        self._ensure(spec.name, on_demand=not spec.pinned, declare=(spec, files))
        return self._cost(spec.name, already)

    def _cost(self, name: str, already: bool) -> dict[str, Any]:
        with self._lock:
            entry = self._entry(name)
            return {
                "model": name,
                "already_loaded": already,
                "memory_bytes": entry.known_bytes,
                "load_s": None if already else entry.last_load_s,
            }

    def _wait_loaded(self, name: str) -> _Entry:
        """Under the lock: the entry once no load of it is under way, refusing if the
        residency closed meanwhile (nothing may be loaded into a closing worker)."""
        while True:
            if self._closed:
                raise errors.Internal("the worker is shutting down")
            entry = self._entry(name)  # again after each wait: it may have gone
            if not entry.loading:
                return entry
            self._lock.wait()

    def _declare_for_load(self, spec: ModelSpec, files: int) -> tuple[_Entry, Any]:
        """Under the lock: the entry ``spec`` loads into, and how to undo it on failure."""
        while True:
            if self._closed:
                raise errors.Internal("the worker is shutting down")
            entry = self._entries.get(spec.name)
            if entry is None or not entry.loading:
                break
            self._lock.wait()
        if entry is None:
            self._check_room_for_one()
            entry = _Entry(spec, files=files, provisional=True)
            self._entries[spec.name] = entry
            return entry, None
        if entry.spec == spec:
            return entry, ("keep",)
        if entry.model is not None:
            raise errors.Busy(f"model {spec.name!r} is loaded with another spec: unload it first")
        undo = (entry.spec, entry.known_bytes, entry.files, entry.provisional)
        entry.spec, entry.known_bytes, entry.files = spec, None, files
        return entry, undo

    def _undo_declare(self, entry: _Entry, undo: Any) -> None:
        """Under the lock: a load with a spec failed; put the table back."""
        if undo is None:
            if self._entries.get(entry.spec.name) is entry:
                del self._entries[entry.spec.name]
        elif undo != ("keep",):
            entry.spec, entry.known_bytes, entry.files, entry.provisional = undo

    def _ensure(
        self,
        name: str,
        *,
        on_demand: bool,
        hold: bool = False,
        declare: tuple[ModelSpec, int] | None = None,
    ) -> Loaded:
        victims: list[tuple[_Entry, Loaded]] = []
        undo: Any = ("keep",)
        with self._lock:
            if declare is not None:
                entry, undo = self._declare_for_load(*declare)
            else:
                entry = self._wait_loaded(name)
            if entry.model is not None:
                entry.last_used = time.monotonic()
                if hold:
                    entry.in_use += 1
                return entry.model
            need = entry.estimate()
            try:
                victims = self._make_room(need, entry)
            except errors.WorkerError:
                self._undo_declare(entry, undo)
                raise
            entry.loading = True
            entry.reserved = need
            spec = entry.spec
        model: Loaded | None = None
        try:
            self._close_all(victims)
            began = time.monotonic()
            try:
                model = self._loader(spec)
            except errors.WorkerError:
                raise
            except Exception as exc:  # llama.cpp's and onnxruntime's failures vary
                raise errors.LoadFailed(f"model {name!r} could not be loaded: {exc}") from exc
            took = time.monotonic() - began
            try:
                measured = int(model.memory_bytes)
            except Exception as exc:  # a model that cannot say its size is not kept
                raise errors.LoadFailed(f"model {name!r} could not be measured: {exc}") from exc
        except BaseException:
            if model is not None:
                with contextlib.suppress(Exception):
                    model.close()
            with self._lock:
                entry.loading = False
                entry.reserved = 0
                self._undo_declare(entry, undo)
                self._lock.notify_all()
            raise
        late: list[tuple[_Entry, Loaded]] = []
        refused: errors.WorkerError | None = None
        with self._lock:
            entry.loading = False
            entry.reserved = 0
            entry.known_bytes = measured
            if self._closed:
                refused = errors.Internal("the worker is shutting down")
            else:
                try:
                    # The estimate may have been short: measured, it must still fit.
                    late = self._make_room(entry.known_bytes, entry)
                except errors.MemoryShort as exc:
                    refused = exc
            if refused is None:
                entry.provisional = False
                entry.model = model
                entry.loads += 1
                entry.load_s += took
                entry.last_load_s = took
                entry.last_used = time.monotonic()
                if hold:
                    entry.in_use += 1
                if on_demand:
                    self._totals.swaps += 1
                    self._totals.swap_s += took
                    self._totals.last_swap_s = took
            else:
                self._undo_declare(entry, undo)
            self._lock.notify_all()
        self._close_all(late)
        if refused is not None:
            model.close()
            raise refused
        return model

    def _used(self) -> int:
        total = 0
        for entry in self._entries.values():
            if entry.model is not None:
                total += (entry.known_bytes or 0) + sessions_bytes(entry.model)
            total += entry.reserved
        return total

    def _make_room(self, need: int, for_entry: _Entry) -> list[tuple[_Entry, Loaded]]:
        """Under the lock: take out (LRU first) the idle unpinned models that must go for
        ``need`` more bytes to fit; the caller closes them outside the lock. Takes out
        none if even all of them would not be enough."""
        if self.budget is None:
            return []
        used = self._used()
        if used + need <= self.budget:
            return []
        candidates = sorted(
            (
                e
                for e in self._entries.values()
                if e is not for_entry and e.model is not None and not e.spec.pinned and not e.in_use
            ),
            key=lambda e: e.last_used,
        )
        chosen: list[_Entry] = []
        for candidate in candidates:
            if used + need <= self.budget:
                break
            assert candidate.model is not None
            used -= (candidate.known_bytes or 0) + sessions_bytes(candidate.model)
            chosen.append(candidate)
        if used + need > self.budget:
            raise errors.MemoryShort(
                f"model {for_entry.spec.name!r} needs about {need} bytes; the budget is "
                f"{self.budget} and {used} stay in use by pinned or busy models",
                retry_after=1.0,
            )
        out: list[tuple[_Entry, Loaded]] = []
        for victim in chosen:
            assert victim.model is not None
            dropped = sessions_bytes(victim.model)
            self._totals.evictions.append(
                Eviction(
                    victim.spec.name,
                    time.time(),
                    victim.known_bytes or 0,
                    dropped,
                    for_entry.spec.name,
                )
            )
            del self._totals.evictions[: -self.RECENT_EVICTIONS]
            victim.evictions += 1
            victim.sessions_dropped_bytes += dropped
            out.append((victim, victim.model))
            victim.model = None
        return out

    @staticmethod
    def _close_all(victims: list[tuple[_Entry, Loaded]]) -> None:
        for _, model in victims:
            model.close()

    # -- unloading ----------------------------------------------------------------

    def unload(self, name: str) -> bool:
        """Unload ``name`` (an ``unload`` op, pinned or not). False if it was not loaded;
        Busy while a request uses it."""
        with self._lock:
            entry = self._entry(name)
            while entry.loading:
                self._lock.wait()
                entry = self._entry(name)  # a failed load with a spec may have undone it
            if entry.model is None:
                return False
            if entry.in_use:
                raise errors.Busy(
                    f"model {name!r} is in use by {entry.in_use} request(s)", retry_after=1.0
                )
            model, entry.model = entry.model, None
        model.close()
        return True

    def loaded(self) -> list[tuple[str, Loaded]]:
        """The loaded models now (for a session drop or a sweep)."""
        with self._lock:
            return [(n, e.model) for n, e in self._entries.items() if e.model is not None]

    def close(self) -> None:
        """Close every loaded model; later requests are refused. A load under way is not
        waited for (it may never end): it sees the residency closed and closes its model."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            models = [e.model for e in self._entries.values() if e.model is not None]
            for entry in self._entries.values():
                entry.model = None
        for model in models:
            model.close()

    # -- stats --------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self._lock:
            models = {}
            for name, entry in self._entries.items():
                if entry.provisional:
                    continue
                loaded = entry.model is not None
                count, capacity = sessions_count(entry.model) if entry.model else (0, None)
                models[name] = {
                    "kind": entry.spec.kind,
                    "role": entry.spec.role,
                    "pinned": entry.spec.pinned,
                    "loaded": loaded,
                    "loading": entry.loading,
                    "in_use": entry.in_use,
                    "memory_bytes": entry.known_bytes if loaded else 0,
                    "sessions": count,
                    "sessions_bytes": sessions_bytes(entry.model) if entry.model else 0,
                    "sessions_capacity_bytes": capacity,
                    "estimated_bytes": entry.estimate(),
                    "loads": entry.loads,
                    "load_s_total": round(entry.load_s, 4),
                    "last_load_s": entry.last_load_s,
                    "evictions": entry.evictions,
                    "sessions_dropped_bytes": entry.sessions_dropped_bytes,
                }
            return {
                "budget_bytes": self.budget,
                "used_bytes": self._used(),
                "swaps": self._totals.swaps,
                "swap_s_total": round(self._totals.swap_s, 4),
                "last_swap_s": self._totals.last_swap_s,
                "evictions": [
                    {
                        "model": e.model,
                        "at": e.at,
                        "memory_bytes": e.memory_bytes,
                        "sessions_dropped_bytes": e.sessions_bytes,
                        "for": e.for_model,
                        "sessions": "dropped",
                    }
                    for e in self._totals.evictions
                ],
                "models": models,
            }
