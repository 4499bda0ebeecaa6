#!/usr/bin/env python3
"""The model gateway (``fazai model serve``) against llama-cpp-python's own server
(``python -m llama_cpp.server``): same model file (the embedded SmolLM2-135M-Instruct),
same context, same threads, same prompts, same run, both real processes on loopback,
both driven over HTTP by the same streaming client.

Measured, for each server:

* one request at a time: time to first token (TTFT) and tokens/s after the first, the
  median of ``--runs`` (each run's prompt starts with its own number, so neither server
  finds the previous prompt's prefix in its KV cache);
* two sessions at once (two different prompts sent together): each one's TTFT. The
  question is whether one waits for the other's whole answer (llama_cpp.server: one
  global lock) or not (the worker: ``slots`` contexts over one loaded model);
* the gateway only: a session's second iteration (the first prompt, its answer and a
  new question) against the same prompt cold (no session).

    python bench/gateway_vs_llama_server.py [--runs 5] [--max-tokens 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

SYSTEM = (
    "You are the planning model of a GitOps controller for firewalls and Linux servers. "
    "Answer briefly and precisely. "
) * 6
QUESTION = "List three things to check before opening port 443 on a firewall."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_llama_server(model: str, threads: int, ctx: int) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            model,
            "--n_ctx",
            str(ctx),
            "--n_threads",
            str(threads),
            "--n_threads_batch",
            str(threads),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            # Its default (True) cancels a stream in flight when another request arrives:
            # the first of two sessions would get nothing. Off, the second waits instead.
            "--interrupt_requests",
            "False",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # polling another process's readiness: it prints nothing we can wait on
    proc.kill()
    raise SystemExit("llama_cpp.server did not start")


def start_gateway(
    folder: Path, threads: int, ctx: int, slots: int
) -> tuple[subprocess.Popen[str], str]:
    config = folder / "fazai.yaml"
    config.write_text(
        "apiVersion: fazai.dev/v1alpha1\nkind: ControllerConfig\n"
        f"sources: [{{name: bench, url: {folder}}}]\n"
        f"models:\n  worker: {{socket: {folder / 'm.sock'}}}\n"
        "  backends:\n    - {name: smollm2, role: brain, local: {embedded: smollm2-135m}, "
        f"contextSize: {ctx}, threads: {threads}, slots: {slots}}}\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from controller.cli import run; run()",
            "model",
            "serve",
            "--config",
            str(config),
            "--listen",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"fazai model serve did not start: {line!r}")
    return proc, line.split()[-1]


async def one(
    http: httpx.AsyncClient,
    url: str,
    messages: list[dict[str, str]],
    max_tokens: int,
    session: str | None = None,
) -> dict[str, Any]:
    """One streamed chat completion: TTFT, tokens/s after the first, pieces, total."""
    body: dict[str, Any] = {
        "model": "smollm2",
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    headers = {"X-Session-Id": session} if session else {}
    started = time.perf_counter()
    first = last = 0.0
    pieces = 0
    text: list[str] = []
    async with http.stream("POST", f"{url}/chat/completions", json=body, headers=headers) as got:
        got.raise_for_status()
        async for line in got.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            choices = chunk.get("choices") or []
            if choices and (choices[0].get("delta") or {}).get("content"):
                text.append(choices[0]["delta"]["content"])
                now = time.perf_counter()
                pieces += 1
                first = first or now
                last = now
    total = time.perf_counter() - started
    rate = (pieces - 1) / (last - first) if pieces > 1 and last > first else 0.0
    return {
        "ttft": first - started if first else total,
        "rate": rate,
        "pieces": pieces,
        "total": total,
        "text": "".join(text),
    }


def ask(run: int, question: str = QUESTION) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": f"Run {run}. {SYSTEM}"},
        {"role": "user", "content": question},
    ]


async def measure(urls: dict[str, str], runs: int, max_tokens: int) -> dict[str, Any]:
    results: dict[str, Any] = {name: {"solo": []} for name in urls}
    async with httpx.AsyncClient(timeout=600) as http:
        for url in urls.values():  # warm-up: the first request loads and pages in
            await one(http, url, ask(-1), 8)
        for run in range(runs):  # interleaved, so a noisy neighbour hits both alike
            for name, url in urls.items():
                results[name]["solo"].append(await one(http, url, ask(run), max_tokens))
        for name, url in urls.items():
            pair = await asyncio.gather(
                one(http, url, ask(1000, "Describe a firewall alias."), max_tokens),
                one(http, url, ask(2000, "Describe a Linux sysctl."), max_tokens),
            )
            results[name]["pair"] = pair
        gateway = urls.get("fazai gateway")
        if gateway is not None:
            history = ask(4000)
            said = await one(http, gateway, history, max_tokens, session="bench-agent")
            history = [
                *history,
                {"role": "assistant", "content": said["text"]},
                {"role": "user", "content": "And port 22?"},
            ]
            # The same second-iteration prompt, without a session (nothing reused) and
            # then in the session that holds the first iteration.
            cold = await one(http, gateway, history, max_tokens)
            warm = await one(http, gateway, history, max_tokens, session="bench-agent")
            results["fazai gateway"]["session"] = {"cold": cold, "second": warm}
    return results


def median(values: list[dict[str, Any]], key: str) -> float:
    return statistics.median(v[key] for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ctx", type=int, default=1024)
    parser.add_argument("--slots", type=int, default=2, help="the worker's contexts")
    args = parser.parse_args()
    from fazai_native import catalog

    model = catalog.resolve("embedded:smollm2-135m")
    with tempfile.TemporaryDirectory(prefix="fazai-bench-") as folder:
        procs = []
        try:
            llama, llama_url = start_llama_server(model, args.threads, args.ctx)
            procs.append(llama)
            gateway, gateway_url = start_gateway(Path(folder), args.threads, args.ctx, args.slots)
            procs.append(gateway)
            urls = {"llama_cpp.server": llama_url, "fazai gateway": gateway_url}
            results = asyncio.run(measure(urls, args.runs, args.max_tokens))
        finally:
            for proc in procs:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print(
        f"SmolLM2-135M-Instruct Q4_1, n_ctx {args.ctx}, {args.threads} thread(s), "
        f"max_tokens {args.max_tokens}, median of {args.runs}; worker slots {args.slots}"
    )
    print(
        f"{'server':<18} {'TTFT s':>8} {'tok/s':>7} | "
        "two at once: TTFT a, b  (total a, b; pieces a, b)"
    )
    for name, found in results.items():
        a, b = found["pair"]
        print(
            f"{name:<18} {median(found['solo'], 'ttft'):>8.3f} "
            f"{median(found['solo'], 'rate'):>7.1f} | {a['ttft']:.3f}, {b['ttft']:.3f}  "
            f"({a['total']:.2f}, {b['total']:.2f}; {a['pieces']:.0f}, {b['pieces']:.0f})"
        )
    session = results["fazai gateway"].get("session")
    if session:
        cold, second = session["cold"]["ttft"], session["second"]["ttft"]
        print(
            f"gateway session: cold TTFT {cold:.3f} s, second iteration {second:.3f} s "
            f"({100 * second / cold:.0f}% of cold)"
        )


if __name__ == "__main__":
    main()
