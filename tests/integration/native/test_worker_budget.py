"""The memory budget through the real worker with both shipped models: the brain
(SmolLM2, pinned) stays loaded; the executor (Gemma 3) loads on demand; a third model
(SmolLM2 again under another name) evicts the least recently used one, its sessions
dropped with it; a model that cannot fit while another is busy is refused ``memory``;
every on-demand load is counted and timed as a swap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workerkit import GEMMA3, LONG, SMOLLM2, Client, running_worker

MODELS = [
    {"name": "brain", "role": "brain", "pinned": True, **SMOLLM2},
    {"name": "executor", "role": "executor", **GEMMA3},
    {"name": "coder", "role": "executor", **SMOLLM2},
]
SESSION_ROOM = 16 << 20  # a 512-token context's sessions are a few MB at most


def ask(client: Client, rid: str, model: str, max_tokens: int = 3, **fields: Any) -> dict[str, Any]:
    done = client.call(
        {
            "op": "generate",
            "id": rid,
            "model": model,
            "prompt": "The capital of France is",
            "params": {"max_tokens": max_tokens},
            **fields,
        }
    )
    assert done["event"] == "done", done
    return done


def measured_sizes(workdir: Path) -> dict[str, int]:
    """Each model's memory_bytes, as a worker without a budget measures them."""
    with running_worker(workdir, models=MODELS, name="m.sock") as worker, worker.client() as c:
        for name in ("executor", "coder"):
            loaded = c.call({"op": "load", "id": f"load-{name}", "model": name})
            assert loaded["event"] == "result", loaded
        models = c.stats()["models"]
    return {name: models[name]["memory_bytes"] for name in models}


def test_the_budget_keeps_the_brain_and_alternates_the_others(tmp_path: Path) -> None:
    sizes = measured_sizes(tmp_path)
    assert sizes["executor"] > sizes["coder"] > 0
    # Room for the brain and one other (with its sessions), never for all three.
    budget = sizes["brain"] + sizes["executor"] + SESSION_ROOM
    assert budget < sum(sizes.values())
    with (
        running_worker(tmp_path, models=MODELS, budget=budget) as worker,
        worker.client() as client,
    ):
        stats = client.stats()
        assert stats["budget_bytes"] == budget
        assert [n for n, m in stats["models"].items() if m["loaded"]] == ["brain"]

        ask(client, "e1", "executor")
        stats = client.stats()
        assert stats["models"]["executor"]["loaded"] and stats["swaps"] == 1
        executor_swap = stats["last_swap_s"]

        ask(client, "c1", "coder", session="coder-s")  # the executor must go
        stats = client.stats()
        assert not stats["models"]["executor"]["loaded"]
        assert stats["models"]["coder"]["loaded"] and stats["models"]["brain"]["loaded"]
        assert stats["models"]["coder"]["sessions_bytes"] > 0
        # Under the budget, a model's sessions may hold an eighth of it.
        assert stats["models"]["coder"]["sessions_capacity_bytes"] == budget // 8
        assert stats["swaps"] == 2
        coder_swap = stats["last_swap_s"]
        assert stats["evictions"][-1]["model"] == "executor"
        assert stats["evictions"][-1]["for"] == "coder"

        ask(client, "b1", "brain")  # the brain serves without a swap
        ask(client, "e2", "executor")  # now the coder goes, its session with it
        stats = client.stats()
        assert stats["swaps"] == 3
        assert not stats["models"]["coder"]["loaded"]
        eviction = stats["evictions"][-1]
        assert eviction["model"] == "coder" and eviction["sessions"] == "dropped"
        assert eviction["sessions_dropped_bytes"] > 0
        assert stats["models"]["coder"]["sessions_dropped_bytes"] > 0
        assert all(e["model"] != "brain" for e in stats["evictions"])
        assert stats["used_bytes"] <= budget
        assert stats["swap_s_total"] > 0

        # The executor busy: the coder cannot evict it, and is refused, retryable.
        client.send(
            {
                "op": "generate",
                "id": "busy-exec",
                "model": "executor",
                "prompt": LONG,
                "params": {"max_tokens": 400},
            }
        )
        assert client.next_for("busy-exec")["event"] == "token"
        client.send({"op": "generate", "id": "c2", "model": "coder", "prompt": "x", "params": {}})
        refused = client.next_for("c2")
        assert refused["event"] == "error" and refused["code"] == "memory", refused
        assert refused["retry_after"] > 0
        client.send({"op": "abort", "id": "a", "target": "busy-exec"})
        _, done = client.final("busy-exec")
        assert done["finish_reason"] == "abort"
    print(
        f"\nswap: executor (gemma3-270m) {executor_swap:.3f} s, coder (smollm2) {coder_swap:.3f} s"
    )
    print(f"sizes: {sizes}, budget {budget}")
