"""The worker under test: a real ``python -m fazai_native`` process on a real Unix
socket, started with a config, and a small blocking client with timeouts on everything."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 120.0
IO_TIMEOUT_S = 60.0

# Small and single-threaded: five people share two cores.
SMOLLM2 = {"path": "embedded:smollm2-135m", "n_ctx": 512, "n_threads": 1}
GEMMA3 = {"path": "embedded:gemma3-270m", "n_ctx": 512, "n_threads": 1}
LONG = "Count from one to one thousand, in words, one number per line:\n"


def generate(
    rid: str, model: str = "brain", *, max_tokens: int = 4, **fields: Any
) -> dict[str, Any]:
    """A generate frame: a short prompt unless ``prompt`` or ``messages`` is given."""
    if "messages" not in fields:
        fields.setdefault("prompt", "The capital of France is")
    fields.setdefault("params", {"max_tokens": max_tokens})
    return {"op": "generate", "id": rid, "model": model, **fields}


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[str]
    path: str
    stderr_file: Path
    ready_line: str = ""

    def stderr(self) -> str:
        return self.stderr_file.read_text(errors="replace")

    def client(self) -> Client:
        return Client.connect(self.path)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise


def launch(
    path: str,
    workdir: Path,
    models: list[dict[str, Any]] | None = None,
    budget: int | None = None,
    queue: int | None = None,
    extra: tuple[str, ...] = (),
) -> subprocess.Popen[str]:
    config = workdir / f"config-{time.monotonic_ns()}.json"
    config.write_text(json.dumps({"memory_budget": budget, "models": models or []}))
    argv = [sys.executable, "-m", "fazai_native", "--socket", path, "--config", str(config)]
    if queue is not None:
        argv += ["--queue", str(queue)]
    argv += extra
    stderr = open(workdir / "worker.stderr", "a")  # noqa: SIM115 (the child holds it)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    try:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    finally:
        stderr.close()


def wait_ready(proc: subprocess.Popen[str], timeout: float = READY_TIMEOUT_S) -> str:
    """The worker's first stdout line, once it prints one (or it exits)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the worker printed no ready line in time")
        readable, _, _ = select.select([proc.stdout], [], [], left)
        if readable:
            return proc.stdout.readline().strip()


@contextlib.contextmanager
def running_worker(
    workdir: Path,
    models: list[dict[str, Any]] | None = None,
    budget: int | None = None,
    queue: int | None = None,
    name: str = "w.sock",
    extra: tuple[str, ...] = (),
) -> Iterator[WorkerProcess]:
    path = str(workdir / name)
    proc = launch(path, workdir, models, budget, queue, extra)
    worker = WorkerProcess(proc, path, workdir / "worker.stderr")
    try:
        worker.ready_line = wait_ready(proc)
        assert worker.ready_line == f"ready {path}", worker.stderr()
        yield worker
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


@dataclass
class Client:
    sock: socket.socket
    buffer: bytes = b""
    held: list[dict[str, Any]] = field(default_factory=list)  # frames read for other ids

    @classmethod
    def connect(cls, path: str) -> Client:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(IO_TIMEOUT_S)
        sock.connect(path)
        return cls(sock)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def send(self, frame: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(frame).encode() + b"\n")

    def recv(self) -> dict[str, Any] | None:
        """The next frame, or None when the worker closed the connection."""
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        frame: dict[str, Any] = json.loads(line)
        return frame

    def next_for(self, rid: str) -> dict[str, Any]:
        for i, frame in enumerate(self.held):
            if frame.get("id") == rid:
                return self.held.pop(i)
        while True:
            frame = self.recv()
            assert frame is not None, f"the worker closed the connection before answering {rid}"
            if frame.get("id") == rid:
                return frame
            self.held.append(frame)

    def final(self, rid: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The token frames, then the final frame, of request ``rid``."""
        tokens = []
        while True:
            frame = self.next_for(rid)
            if frame["event"] != "token":
                return tokens, frame
            tokens.append(frame)

    def call(self, frame: dict[str, Any]) -> dict[str, Any]:
        self.send(frame)
        return self.final(frame["id"])[1]

    def stats(self) -> dict[str, Any]:
        answer = self.call({"op": "stats", "id": f"stats-{time.monotonic_ns()}"})
        assert answer["event"] == "result", answer
        result: dict[str, Any] = answer["result"]
        return result
