"""The session store: bounded by bytes, least recently used evicted first."""

from __future__ import annotations

import pytest
from fazai_native.sessions import TOKEN_BYTES, SessionState, SessionStore


def state(kv_bytes: int, tokens: int = 2) -> SessionState:
    return SessionState(tokens=tuple(range(tokens)), kv=b"k" * kv_bytes)


def test_a_state_counts_its_kv_and_its_token_ids() -> None:
    assert state(100, tokens=5).nbytes == 100 + 5 * TOKEN_BYTES


def test_the_least_recently_used_goes_first_when_bytes_run_short() -> None:
    store = SessionStore(capacity_bytes=300)
    store.put("a", state(92))
    store.put("b", state(92))
    store.put("c", state(92))
    assert store.get("a") is not None  # "a" is now the most recently used
    store.put("d", state(92))
    assert store.sessions() == ["c", "a", "d"]
    assert store.bytes_used == 300 and store.evictions == 1


def test_replacing_a_session_frees_its_old_bytes() -> None:
    store = SessionStore(capacity_bytes=1000)
    store.put("a", state(500))
    store.put("a", state(100))
    assert store.bytes_used == 108 and len(store) == 1


def test_a_state_larger_than_the_capacity_is_not_kept_and_its_stale_one_goes() -> None:
    store = SessionStore(capacity_bytes=100)
    store.put("a", state(50))
    store.put("b", state(40))
    assert not store.put("a", state(200))
    assert "a" not in store and store.sessions() == ["b"]
    assert store.bytes_used == 48


def test_drop_says_whether_there_was_a_state() -> None:
    store = SessionStore(capacity_bytes=100)
    store.put("a", state(10))
    assert store.drop("a") and not store.drop("a")
    assert store.bytes_used == 0


def test_a_negative_capacity_is_refused() -> None:
    with pytest.raises(ValueError):
        SessionStore(-1)


def test_a_model_unloading_drops_only_its_own_states() -> None:
    store = SessionStore(capacity_bytes=1000)
    store.put("a", SessionState(tokens=(1,), kv=b"x", model="m1"))
    store.put("b", SessionState(tokens=(1,), kv=b"x", model="m2"))
    assert store.drop_model("m1") == 1
    assert store.sessions() == ["b"] and store.bytes_used == 5
