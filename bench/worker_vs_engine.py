"""Tokens/s through the worker's socket vs the same engine in-process vs raw
llama-cpp-python, same model, same prompt, same run (interleaved rounds); and the time of
an on-demand load (a swap) of each embedded model, as the worker's stats time it.

    .venv/bin/python bench/worker_vs_engine.py [--rounds 3] [--tokens 200] [--threads 1]

Generation rate = (completion tokens - 1) / (time of the last token - time of the first),
measured where the tokens arrive (the client for the worker, the emit callback
in-process), so the prompt is out of it and the socket's cost is in it."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from fazai_native import catalog
from fazai_native.engine import Engine
from fazai_native.protocol import Sampling
from fazai_native.types import GenerateRequest, ModelSpec

PROMPT = "Count from one to one thousand, in words, one number per line:\n"


def rate(stamps: list[float]) -> float:
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0


def in_process(engine: Engine, tokens: int) -> tuple[float, int]:
    stamps: list[float] = []
    request = GenerateRequest(model="m", prompt=PROMPT, sampling=Sampling(max_tokens=tokens))
    engine.generate(
        request, abort=threading.Event(), emit=lambda _p, _i: stamps.append(time.monotonic())
    )
    return rate(stamps), len(stamps)


def raw_llama(llama: Any, tokens: int) -> tuple[float, int]:
    stamps = []
    for _ in llama.create_completion(PROMPT, max_tokens=tokens, temperature=0.0, stream=True):
        stamps.append(time.monotonic())
    llama.reset()
    return rate(stamps), len(stamps)


def through_socket(path: str, tokens: int, rid: str) -> tuple[float, int]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(120)
    sock.connect(path)
    frame = {
        "op": "generate",
        "id": rid,
        "model": "m",
        "prompt": PROMPT,
        "params": {"max_tokens": tokens},
    }
    sock.sendall(json.dumps(frame).encode() + b"\n")
    stamps: list[float] = []
    buffer = b""
    with sock:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("the worker closed the connection")
            buffer += chunk
            now = time.monotonic()
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                reply = json.loads(line)
                if reply["event"] == "token":
                    stamps.append(now)
                else:
                    assert reply["event"] == "done", reply
                    return rate(stamps), len(stamps)


def call(path: str, frame: dict[str, Any]) -> dict[str, Any]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(120)
    sock.connect(path)
    with sock:
        sock.sendall(json.dumps(frame).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            data += sock.recv(1 << 20)
    return dict(json.loads(data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import llama_cpp

    path = catalog.resolve("smollm2-135m")
    spec = ModelSpec(name="m", path=path, n_ctx=1024, n_threads=args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    sock_path = str(workdir / "w.sock")
    config = workdir / "config.json"
    models = [
        {"name": "m", "path": path, "n_ctx": 1024, "n_threads": args.threads, "pinned": True},
        {"name": "gemma", "path": "embedded:gemma3-270m", "n_ctx": 1024, "n_threads": args.threads},
        {"name": "smol", "path": "embedded:smollm2-135m", "n_ctx": 1024, "n_threads": args.threads},
    ]
    config.write_text(json.dumps({"memory_budget": None, "models": models}))
    worker = subprocess.Popen(
        [sys.executable, "-m", "fazai_native", "--socket", sock_path, "--config", str(config)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().startswith("ready"), "the worker did not start"
        engine = Engine(spec)
        llama = llama_cpp.Llama(model_path=path, n_ctx=1024, n_threads=args.threads, verbose=False)
        got: dict[str, list[float]] = {"raw": [], "engine": [], "socket": []}
        counts: dict[str, set[int]] = {k: set() for k in got}
        for i in range(args.rounds + 1):  # round 0 warms up, not counted
            for name, run in (
                ("raw", lambda: raw_llama(llama, args.tokens)),
                ("engine", lambda: in_process(engine, args.tokens)),
                ("socket", lambda: through_socket(sock_path, args.tokens, "r")),
            ):
                value, n = run()
                if i:
                    got[name].append(value)
                    counts[name].add(n)
        engine.close()
        llama.close()
        swaps = {}
        for name in ("gemma", "smol"):
            for attempt in range(3):  # load, unload, load again: the file is in the page cache
                loaded = call(sock_path, {"op": "load", "id": f"l{attempt}", "model": name})
                swaps.setdefault(name, []).append(loaded["result"]["load_s"])
                call(sock_path, {"op": "unload", "id": f"u{attempt}", "model": name})
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    median = {k: statistics.median(v) for k, v in got.items()}
    print(f"smollm2-135m, {args.threads} thread(s), {args.tokens} tokens, {args.rounds} rounds")
    for name, value in median.items():
        rounds = ", ".join(f"{x:.1f}" for x in got[name])
        print(f"  {name:7s} {value:7.1f} tok/s  (rounds: {rounds}; tokens {sorted(counts[name])})")
    best = {k: max(v) for k, v in got.items()}
    for label, figure in (("median", median), ("best", best)):
        print(
            f"  {label}: socket/engine {figure['socket'] / figure['engine']:.3f},"
            f" socket/raw {figure['socket'] / figure['raw']:.3f}"
        )
    for name, times in swaps.items():
        print(f"  load {name}: {', '.join(f'{t:.3f} s' for t in times)}")


if __name__ == "__main__":
    main()
