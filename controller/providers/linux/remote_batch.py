"""Node side of apply: run a batch of steps in one round trip, reporting each as it ends.

Sent to the node and run as ``python3 -c SOURCE``; standard library of Python 3.6 and
later only, importable so tests can run it locally. Standard input is one JSON object::

    {"keepGoing": false,
     "steps": [{"script": "set -e ...", "stdin": "<base64 text>", "timeout": 60}, ...]}

Each step is its own ``sh -c SCRIPT`` (as if it had been sent alone over SSH) with its
``stdin`` text on standard input, in its own process group, killed with the group when it
runs past its ``timeout``. After each step one JSON line goes to standard output, at
once (the controller marks the step done in its journal as the line arrives)::

    {"step": 0, "exit": 0}
    {"step": 1, "exit": 2, "output": "<the end of its stderr, or of its stdout>"}
    {"step": 2, "exit": null, "timeout": true, "output": "..."}

Without ``keepGoing`` (apply) the batch stops at the first step that fails or times out:
the steps after it never run. With it (rollback) every step runs. When a line cannot be
written (the controller or its connection is gone) the batch stops there: no step runs
that nobody would hear about.
"""

# ruff: noqa: UP031
# (Python 3.6 on the node: %-formatting, type comments.)

import contextlib
import json
import os
import signal
import subprocess
import sys
from typing import Any  # noqa: F401 (used in type comments)

OUTPUT_TAIL = 2000  # characters of a failed step's output sent back


def tail(data):
    # type: (bytes) -> str
    return data.decode("utf-8", "replace").strip()[-OUTPUT_TAIL:]


def run_step(step):
    # type: (dict[str, Any]) -> dict[str, Any]
    data = step.get("stdin", "").encode("ascii")
    try:
        proc = subprocess.Popen(
            ["sh", "-c", step["script"]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a timeout kills the step and everything it started
        )
    except OSError as exc:
        return {"exit": 127, "output": "cannot start sh: %s" % exc}
    try:
        out, err = proc.communicate(data, timeout=float(step["timeout"]))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):  # already gone
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        message = "did not finish within %g s; killed" % float(step["timeout"])
        got = tail(err) or tail(out)
        return {"exit": None, "timeout": True, "output": message + (": " + got if got else "")}
    # Whatever the step left running in its session (a tool's "nohup x &") ends with
    # it: nothing a step started may outlive it, or a rollback.
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    result = {"exit": proc.returncode}  # type: dict[str, Any]
    if proc.returncode != 0:
        result["output"] = tail(err) or tail(out)
    return result


def report(line):
    # type: (dict[str, Any]) -> bool
    """Write one result line; False when nobody is reading any more."""
    try:
        sys.stdout.write(json.dumps(line, sort_keys=True) + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        return False
    return True


def main():
    # type: () -> int
    request = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    keep_going = bool(request.get("keepGoing"))
    for index, step in enumerate(request["steps"]):
        result = run_step(step)
        result["step"] = index
        if not report(result):
            # nobody is listening: run nothing more (and skip the flush at exit, which
            # would fail the same way)
            os._exit(3)
        if result["exit"] != 0 and not keep_going:
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
