"""The memory budget's policy: pinned models stay, others load on demand and the least
recently used idle one goes first; a model that cannot fit is refused with ``memory``;
two requests for one unloaded model load it once. The models here are sized blocks (the
policy reads only ``memory_bytes``, ``sessions_bytes`` and ``close``); the real engines
under a budget are tested through the worker in tests/integration/native."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest
from fazai_native import errors
from fazai_native.residency import Residency
from fazai_native.types import ModelSpec

MB = 1 << 20


@dataclass
class Block:
    spec: ModelSpec
    memory_bytes: int
    kv: int = 0
    closed: bool = False

    def sessions_bytes(self) -> int:
        return self.kv

    def close(self) -> None:
        self.closed = True


@dataclass
class Loader:
    sizes: dict[str, int]
    made: list[Block] = field(default_factory=list)
    gate: threading.Event | None = None
    entered: threading.Event = field(default_factory=threading.Event)

    def __call__(self, spec: ModelSpec) -> Block:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        block = Block(spec, self.sizes[spec.name])
        self.made.append(block)
        return block


def spec(name: str, pinned: bool = False) -> ModelSpec:
    # A path that does not exist: the first estimate is 0 bytes, the measured size rules.
    return ModelSpec(name=name, path=f"/nonexistent/{name}.gguf", pinned=pinned)


def residency(budget: int | None, **sizes: int) -> tuple[Residency, Loader]:
    loader = Loader({k: v * MB for k, v in sizes.items()})
    res = Residency(budget * MB if budget else None, loader)
    res.declare(spec("brain", pinned=True))
    for name in sizes:
        if name != "brain":
            res.declare(spec(name))
    return res, loader


def loaded(res: Residency) -> set[str]:
    return {name for name, _ in res.loaded()}


def test_the_pinned_brain_loads_at_start_and_others_on_demand() -> None:
    res, loader = residency(500, brain=200, coder=150)
    res.start()
    assert loaded(res) == {"brain"}
    with res.use("coder") as model:
        assert model.memory_bytes == 150 * MB
    assert loaded(res) == {"brain", "coder"}
    stats = res.stats()
    assert stats["swaps"] == 1  # the brain's load at start is not a swap
    assert stats["models"]["coder"]["loads"] == 1
    assert stats["used_bytes"] == 350 * MB
    assert len(loader.made) == 2


def test_the_least_recently_used_idle_model_is_evicted_and_never_the_pinned_one() -> None:
    res, _ = residency(400, brain=200, coder=150, writer=150)
    res.start()
    with res.use("coder"):
        pass
    with res.use("writer") as writer:  # coder goes: brain + coder + writer > 400
        assert loaded(res) == {"brain", "writer"}
    with res.use("coder"):  # now writer is the one to go
        assert loaded(res) == {"brain", "coder"}
    assert writer.closed  # type: ignore[attr-defined]
    stats = res.stats()
    assert stats["swaps"] == 3
    assert [(e["model"], e["for"]) for e in stats["evictions"]] == [
        ("coder", "writer"),
        ("writer", "coder"),
    ]
    assert stats["models"]["brain"]["evictions"] == 0
    assert stats["last_swap_s"] is not None


def test_a_model_in_use_is_not_evicted_and_what_cannot_fit_is_refused_as_memory() -> None:
    res, _ = residency(400, brain=200, coder=150, writer=150)
    res.start()
    with res.use("coder"), pytest.raises(errors.MemoryShort) as refused, res.use("writer"):
        pass
    assert refused.value.code == "memory"
    assert refused.value.retry_after
    assert loaded(res) == {"brain", "coder"}
    with res.use("writer"):  # coder is idle now: it goes
        assert loaded(res) == {"brain", "writer"}


def test_a_model_larger_than_the_budget_left_by_pinned_ones_is_refused() -> None:
    res, loader = residency(300, brain=200, huge=150)
    res.start()
    with pytest.raises(errors.MemoryShort), res.use("huge"):
        pass
    # Its estimate was 0 (no file): it was loaded, measured, found too big and closed.
    assert loader.made[-1].closed
    assert loaded(res) == {"brain"}
    # The measured size is remembered: the next try is refused before loading.
    made = len(loader.made)
    with pytest.raises(errors.MemoryShort), res.use("huge"):
        pass
    assert len(loader.made) == made


def test_sessions_bytes_count_against_the_budget_and_are_dropped_with_their_model() -> None:
    res, _ = residency(400, brain=100, coder=150, writer=150)
    res.start()
    with res.use("coder") as coder:
        coder.kv = 20 * MB  # type: ignore[attr-defined]
    with res.use("writer"):  # 100 + 170 + 150 > 400
        pass
    stats = res.stats()
    assert stats["models"]["coder"]["sessions_dropped_bytes"] == 20 * MB
    assert stats["evictions"][0]["sessions"] == "dropped"


def test_two_requests_for_one_unloaded_model_load_it_once() -> None:
    res, loader = residency(None, brain=10, coder=10)
    res.start()
    loader.gate = threading.Event()
    loader.entered.clear()
    got: list[object] = []

    def ask() -> None:
        with res.use("coder") as model:
            got.append(model)

    first = threading.Thread(target=ask)
    first.start()
    assert loader.entered.wait(10)
    second = threading.Thread(target=ask)
    second.start()
    loader.gate.set()
    first.join(10)
    second.join(10)
    assert len(got) == 2 and got[0] is got[1]
    assert [b.spec.name for b in loader.made] == ["brain", "coder"]


def test_a_failed_load_is_mapped_and_the_next_request_tries_again() -> None:
    calls: list[str] = []

    def flaky(s: ModelSpec) -> Block:
        calls.append(s.name)
        if len(calls) == 1:
            raise ValueError("failed to load model")
        return Block(s, MB)

    res = Residency(None, flaky)
    res.declare(spec("coder"))
    with pytest.raises(errors.LoadFailed) as failed, res.use("coder"):
        pass
    assert failed.value.code == "load_failed"
    assert isinstance(failed.value.__cause__, ValueError)
    with res.use("coder"):
        pass
    assert calls == ["coder", "coder"]


def test_unknown_names_unload_in_use_and_redeclaring_a_loaded_model() -> None:
    res, _ = residency(None, brain=10, coder=10)
    res.start()
    with pytest.raises(errors.UnknownModel), res.use("nope"):
        pass
    with res.use("coder"):
        with pytest.raises(errors.Busy):
            res.unload("coder")
        with pytest.raises(errors.Busy):
            res.declare(ModelSpec(name="coder", path="/elsewhere.gguf"))
    assert res.unload("coder") is True
    assert res.unload("coder") is False
    res.declare(ModelSpec(name="coder", path="/elsewhere.gguf"))
    assert res.spec("coder").path == "/elsewhere.gguf"


def test_close_closes_every_model_and_refuses_later_requests() -> None:
    res, loader = residency(None, brain=10, coder=10)
    res.start()
    with res.use("coder"):
        pass
    res.close()
    assert all(b.closed for b in loader.made)
    with pytest.raises(errors.Internal), res.use("coder"):
        pass


def test_a_failed_load_with_a_spec_leaves_no_declaration_and_keeps_a_good_spec() -> None:
    def loader(s: ModelSpec) -> Block:
        if "bad" in s.path:
            raise ValueError("not a model")
        return Block(s, MB)

    res = Residency(None, loader)
    with pytest.raises(errors.LoadFailed):
        res.load_spec(ModelSpec(name="ghost", path="/bad/ghost.gguf"))
    assert res.names() == [] and "ghost" not in res.stats()["models"]
    with pytest.raises(errors.UnknownModel):
        res.spec("ghost")
    good = ModelSpec(name="coder", path="/good/coder.gguf")
    res.declare(good)
    with pytest.raises(errors.LoadFailed):
        res.load_spec(ModelSpec(name="coder", path="/bad/coder.gguf"))
    assert res.spec("coder") == good  # the bad spec did not replace it
    with res.use("coder") as model:
        assert model.spec == good  # type: ignore[attr-defined]


def test_a_model_that_cannot_say_its_size_is_closed_and_not_left_loading() -> None:
    made: list[Block | Sizeless] = []

    class Sizeless:
        closed = False

        @property
        def memory_bytes(self) -> int:
            raise RuntimeError("no size")

        def close(self) -> None:
            self.closed = True

    def loader(s: ModelSpec) -> Block | Sizeless:
        block: Block | Sizeless = Sizeless() if not made else Block(s, MB)
        made.append(block)
        return block

    res = Residency(None, loader)
    res.declare(spec("coder"))
    with pytest.raises(errors.LoadFailed), res.use("coder"):
        pass
    assert made[0].closed
    with res.use("coder"):  # not stuck "loading": a second try loads it
        pass
    assert res.stats()["models"]["coder"]["loading"] is False


def test_at_most_max_models_are_declared() -> None:
    from fazai_native.residency import MAX_MODELS

    calls: list[str] = []
    res = Residency(None, lambda s: calls.append(s.name) or Block(s, MB))  # type: ignore[func-returns-value]
    for i in range(MAX_MODELS):
        res.declare(spec(f"m{i}"))
    with pytest.raises(errors.BadRequest) as refused:
        res.declare(spec("one-more"))
    assert str(MAX_MODELS) in str(refused.value)
    with pytest.raises(errors.BadRequest):
        res.load_spec(spec("one-more"))
    assert calls == [] and len(res.names()) == MAX_MODELS
    res.declare(spec("m0"))  # the same again is no new declaration


def test_the_disk_is_read_outside_the_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    from fazai_native import residency as module

    res, _ = residency(None, brain=10, writer=10)
    seen: list[bool] = []

    def files_bytes(path: str) -> int:
        # Another thread must be able to take the lock while the disk is read.
        free: list[bool] = []

        def probe() -> None:
            got = res._lock.acquire(timeout=2)
            if got:
                res._lock.release()
            free.append(got)

        thread = threading.Thread(target=probe)
        thread.start()
        thread.join(5)
        seen.append(free == [True])
        return 7

    monkeypatch.setattr(module, "files_bytes", files_bytes)
    res.declare(spec("coder"))
    res.load_spec(spec("writer"))
    res.stats()
    assert seen and all(seen)
    assert res.stats()["models"]["coder"]["estimated_bytes"] == 7


def test_close_during_a_load_closes_what_it_loads_and_refuses_its_waiters() -> None:
    res, loader = residency(None, brain=10, coder=10)
    loader.gate = threading.Event()
    errs: list[BaseException] = []

    def ask() -> None:
        try:
            with res.use("coder"):
                pass
        except errors.WorkerError as exc:
            errs.append(exc)

    first = threading.Thread(target=ask)
    first.start()
    assert loader.entered.wait(10)
    second = threading.Thread(target=ask)
    second.start()
    closer = threading.Thread(target=res.close)
    closer.start()
    closer.join(5)
    assert not closer.is_alive()  # close does not wait for a load that may never end
    loader.gate.set()
    first.join(10)
    second.join(10)
    assert len(errs) == 2 and all(isinstance(e, errors.Internal) for e in errs)
    assert [b.closed for b in loader.made] == [True]
    assert res.loaded() == []
