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


def become_subreaper():
    # type: () -> None
    """Orphans of a step (a child that left its session with setsid, a daemon it
    forked) come back to this process instead of init, so they end with the step."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass  # not Linux, or no prctl: the process-group kill below still runs


def children(parent):
    # type: (int) -> list[int]
    found = []  # type: list[int]
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as handle:
                stat = handle.read().decode("ascii", "replace")
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[1] == str(parent):
            found.append(int(name))
    return found


def end_orphans(kept):
    # type: (set[int]) -> None
    """Kill whatever a finished step left behind that escaped its process group (it
    was reparented here: see become_subreaper), and reap it; ``kept``: orphans that
    were here before the step (a daemon an earlier package step started), left be."""
    me = os.getpid()
    for _ in range(20):  # an orphan may fork again while being killed
        left = [pid for pid in children(me) if pid not in kept]
        if not left:
            return
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for _pid in left:
            with contextlib.suppress(OSError):
                os.waitpid(-1, 0)


def run_step(step):
    # type: (dict[str, Any]) -> dict[str, Any]
    """Run one step. With ``contain`` (a tool's script: it may do anything) nothing it
    started outlives it: its process group is killed when it ends, and whatever left the
    group (setsid) with it. Other steps keep what they start (a package's daemon)."""
    data = step.get("stdin", "").encode("ascii")
    contain = bool(step.get("contain"))
    kept = set(children(os.getpid())) if contain else set()  # type: set[int]
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
        if contain:
            end_orphans(kept)
        message = "did not finish within %g s; killed" % float(step["timeout"])
        got = tail(err) or tail(out)
        return {"exit": None, "timeout": True, "output": message + (": " + got if got else "")}
    if contain:
        # Whatever the tool left running in its session ("nohup x &") or outside it
        # ("setsid x &") ends with it: nothing it started may outlive it, or a rollback.
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        end_orphans(kept)
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
    become_subreaper()
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
