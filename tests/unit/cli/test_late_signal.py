"""A signal that comes after apply's run has returned must not cut off what follows (the
node lines the user needs): it is noted, and the exit is still 130."""

from __future__ import annotations

import subprocess
import sys

LATE = """
import asyncio, os, signal, sys
from controller import signals

async def work(stop):
    return "done"

result, stopped = signals.run(work, lambda line: print(line, flush=True), defer_after=True)
os.kill(os.getpid(), signal.SIGTERM)
os.kill(os.getpid(), signal.SIGINT)
print("node lines shown", result, stopped, signals.late(), flush=True)
"""


def test_a_signal_after_the_run_is_deferred_until_the_output_is_shown() -> None:
    done = subprocess.run([sys.executable, "-c", LATE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "interrupted: the run has ended" in done.stdout
    assert "node lines shown done False True" in done.stdout
