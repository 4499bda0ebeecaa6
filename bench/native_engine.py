"""The worker's engine against raw llama-cpp-python, in one process, same model, same prompt.

Measures: generation tokens/s through ``Engine.generate`` vs ``Llama.create_completion``
(greedy, the same prompt, runs alternated); time to first token cold vs a session's second
request (in the slot that holds it, and restored from its bytes into another slot); KV
bytes per session token; abort latency during a prompt's evaluation and between tokens.

    .venv/bin/python bench/native_engine.py [--model smollm2|gemma3] [--threads N] [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import llama_cpp
from fazai_native.engine import Engine
from fazai_native.protocol import Sampling
from fazai_native.shipped import gemma3_path, smollm2_path
from fazai_native.types import GenerateRequest, GenerateResult, ModelSpec

NOTES = "Firewall notes. " + " ".join(
    f"Rule {i} allows tcp port {(i * 37) % 9000 + 1000} from the office network." for i in range(24)
)
COUNT = "1, 2, 3, 4,"


def generate(
    engine: Engine, abort: threading.Event | None = None, **fields: object
) -> GenerateResult:
    return engine.generate(
        GenerateRequest(model="m", **fields),  # type: ignore[arg-type]
        abort=abort or threading.Event(),
        emit=lambda text, index: None,
    )


def stamp_and_set(abort: threading.Event, stamps: list[float]) -> None:
    stamps.append(time.monotonic())
    abort.set()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=("smollm2", "gemma3"), default="smollm2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    path = smollm2_path() if args.model == "smollm2" else gemma3_path()
    spec = ModelSpec(name="m", path=path, n_ctx=1024, n_threads=args.threads, slots=2)
    engine = Engine(spec)
    raw = llama_cpp.Llama(
        model_path=path,
        n_ctx=1024,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    print(f"model {args.model}, threads {args.threads}, memory_bytes {engine.memory_bytes}")

    # Tokens/s: the same greedy generation, alternated, best of runs (a shared machine).
    engine_rates, raw_rates = [], []
    for _ in range(args.runs):
        result = generate(engine, prompt=COUNT, sampling=Sampling(max_tokens=args.tokens))
        decode = result.total_s - result.ttft_s
        engine_rates.append((result.completion_tokens - 1) / decode)
        raw.reset()  # type: ignore[no-untyped-call]
        first: list[float] = []
        started = time.monotonic()
        count = 0
        for _chunk in raw.create_completion(
            COUNT,
            max_tokens=args.tokens,
            temperature=0.0,
            top_k=40,
            top_p=0.95,
            min_p=0.05,
            repeat_penalty=1.0,
            stream=True,
        ):
            count += 1
            if not first:
                first.append(time.monotonic())
        raw_rates.append((count - 1) / (time.monotonic() - first[0]))
        del started
    best_engine, best_raw = max(engine_rates), max(raw_rates)
    print(
        f"tokens/s engine {best_engine:.1f} (median {statistics.median(engine_rates):.1f}), "
        f"raw create_completion {best_raw:.1f} (median {statistics.median(raw_rates):.1f}): "
        f"{100 * best_engine / best_raw:.0f}%"
    )

    # Sessions: TTFT cold vs second iteration, and the KV bytes per token.
    first_turn = generate(engine, prompt=NOTES, session="s", sampling=Sampling(max_tokens=8))
    state = engine.sessions.get("s")
    assert state is not None
    print(
        f"session state: {len(state.tokens)} tokens, {len(state.kv)} KV bytes, "
        f"{len(state.kv) / len(state.tokens):.0f} bytes/token"
    )
    follow = NOTES + first_turn.text + " Which rule allows port 1074?"
    cold = generate(engine, prompt=follow, sampling=Sampling(max_tokens=8))
    warm = generate(engine, prompt=follow, session="s", sampling=Sampling(max_tokens=8))
    print(
        f"ttft cold {cold.ttft_s * 1000:.0f} ms ({cold.prompt_tokens} tokens), session in "
        f"its slot {warm.ttft_s * 1000:.0f} ms ({warm.cached_tokens} cached): "
        f"{100 * warm.ttft_s / cold.ttft_s:.1f}%; same text {warm.text == cold.text}"
    )
    # Another session in each slot, so "s" must be restored from its bytes.
    generate(engine, prompt="a b", session="o1", sampling=Sampling(max_tokens=2))
    generate(engine, prompt="c d", session="o2", sampling=Sampling(max_tokens=2))
    again = follow + warm.text + " And port 1111?"
    cold = generate(engine, prompt=again, sampling=Sampling(max_tokens=8))
    restored = generate(engine, prompt=again, session="s", sampling=Sampling(max_tokens=8))
    print(
        f"ttft cold {cold.ttft_s * 1000:.0f} ms, session restored into another slot "
        f"{restored.ttft_s * 1000:.0f} ms ({restored.cached_tokens} cached): "
        f"{100 * restored.ttft_s / cold.ttft_s:.1f}%; same text {restored.text == cold.text}"
    )

    # Abort latency during the prompt (set from another thread 50 ms in).
    latencies = []
    for _ in range(args.runs):
        abort = threading.Event()
        set_at: list[float] = []
        timer = threading.Timer(0.05, stamp_and_set, (abort, set_at))
        timer.start()
        result = generate(engine, abort=abort, prompt=NOTES * 2, sampling=Sampling(max_tokens=4))
        latencies.append(time.monotonic() - set_at[0])
        timer.join()
        assert result.finish_reason == "abort"
    print(f"abort during prompt evaluation: {max(latencies) * 1000:.1f} ms worst of {args.runs}")
    latencies = []
    for _ in range(args.runs):
        abort = threading.Event()
        set_at = []
        timer = threading.Timer(0.3, stamp_and_set, (abort, set_at))
        timer.start()
        result = generate(engine, abort=abort, prompt=COUNT, sampling=Sampling(max_tokens=200))
        latencies.append(time.monotonic() - set_at[0])
        timer.join()
        assert result.finish_reason == "abort" and result.completion_tokens > 0
    print(f"abort between tokens: {max(latencies) * 1000:.1f} ms worst of {args.runs}")
    engine.close()
    raw.close()


if __name__ == "__main__":
    main()
