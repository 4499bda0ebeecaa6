"""``fazai model`` as a person runs it: a real ``fazai`` process reading fazai.yaml's
``models:`` section, starting the real worker with the embedded SmolLM2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CONFIG = """\
apiVersion: fazai.dev/v1alpha1
kind: ControllerConfig
sources:
  - name: site
    url: {repo}
models:
  worker:
    socket: {socket}
  backends:
    - name: tiny
      role: brain
      local: {{embedded: smollm2-135m}}
      contextSize: 1024
      threads: 1
"""


def fazai(*args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "fazai.yaml"
    path.write_text(CONFIG.format(repo=tmp_path, socket=tmp_path / "run" / "m.sock"))
    return path


def test_chat_one_prompt_streams_the_answer(config: Path) -> None:
    done = fazai("model", "chat", "Say hello.", "--max-tokens", "12", cwd=config.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert "tiny" in done.stderr and "tok/s" in done.stderr  # who answered, how fast
    # The worker it started is gone with it, and so is its socket.
    assert not (config.parent / "run" / "m.sock").exists()


def test_list_names_the_declared_models(config: Path) -> None:
    done = fazai("model", "list", "--output", "json", cwd=config.parent)
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert listed["models"][0]["name"] == "tiny" and listed["worker"] is False


def test_stats_without_a_worker_is_trouble(config: Path) -> None:
    done = fazai("model", "stats", cwd=config.parent)
    assert done.returncode == 2
    assert "is a worker running?" in done.stderr


def test_a_bad_models_section_is_trouble_with_its_line(config: Path) -> None:
    config.write_text(config.read_text().replace("threads: 1", "threads: 0"))
    done = fazai("model", "chat", "hi", cwd=config.parent)
    assert done.returncode == 2
    assert "fazai.yaml:" in done.stderr and "threads" in done.stderr


def test_worker_runs_in_the_foreground_and_serves_stats(config: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    socket = config.parent / "run" / "m.sock"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from controller.cli import run; run()", "model", "worker"],
        cwd=config.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the worker's own "ready PATH"
        assert line.startswith("ready"), proc.stderr.read() if proc.stderr else ""
        stats = fazai("model", "stats", cwd=config.parent)
        assert stats.returncode == 0, stats.stderr
        assert json.loads(stats.stdout)["models"]["tiny"]["pinned"] is True
        listed = fazai("model", "list", "--output", "json", cwd=config.parent)
        assert json.loads(listed.stdout)["models"][0]["state"] == "loaded"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0
    deadline = time.monotonic() + 5
    while socket.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the worker removes its socket as it exits
    assert not socket.exists()


class Pipe:
    """What a child writes on one pipe, read as it comes, with a deadline on every wait."""

    def __init__(self, stream: object) -> None:
        self.fd = stream.fileno()  # type: ignore[attr-defined]
        self.text = ""

    def until(self, wanted: str, start: int = 0, timeout: float = 120) -> int:
        import select

        deadline = time.monotonic() + timeout
        while (found := self.text.find(wanted, start)) < 0:
            left = deadline - time.monotonic()
            assert left > 0, f"no {wanted!r} in {self.text[-500:]!r}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                data = os.read(self.fd, 65536)
                assert data, f"the pipe closed before {wanted!r}: {self.text[-500:]!r}"
                self.text += data.decode(errors="replace")
        return found + len(wanted)


def test_ctrl_c_aborts_the_answer_and_the_chat_goes_on(config: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from controller.cli import run; run()",
            "model",
            "chat",
            "--max-tokens",
            "800",
        ],
        cwd=config.parent,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    out, err = Pipe(proc.stdout), Pipe(proc.stderr)
    try:
        at = out.until("> ")
        proc.stdin.write(b"Count from one to five hundred, in words.\n")
        proc.stdin.flush()
        out.until(" ", at)  # tokens are coming
        proc.send_signal(signal.SIGINT)
        err.until("aborted")
        at = out.until("> ", at)
        proc.stdin.write(b"Say hello.\n")
        proc.stdin.flush()
        err.until("tok/s")  # answered, by the same worker: the model stayed
        out.until("> ", at)
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_chat_that_no_backend_answers_is_trouble(tmp_path: Path) -> None:
    import socket as sockets

    with sockets.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "fazai.yaml"
    config.write_text(
        "apiVersion: fazai.dev/v1alpha1\nkind: ControllerConfig\n"
        f"sources: [{{name: site, url: {tmp_path}}}]\n"
        "models:\n  backends:\n    - name: remote\n      role: brain\n"
        f"      endpoint: {{url: 'http://127.0.0.1:{port}/v1', model: m, maxRetries: 0}}\n"
    )
    done = fazai("model", "chat", "hi", cwd=tmp_path)
    assert done.returncode == 2
    assert "no backend could answer for brain" in done.stderr
