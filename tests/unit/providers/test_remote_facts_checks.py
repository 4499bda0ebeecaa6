"""Goal checks as the node runs them: real programs, run by remote_facts.py on this machine.

run_check and checks are called directly (the script is importable); the last tests run
the whole script as a node does, through the provider's own command line.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import tokenize
from pathlib import Path

import pytest

from controller.providers.linux import remote_facts
from controller.providers.linux.provider import check_budget
from controller.providers.linux.remote_facts import CHECK_ENV, CHECK_OUTPUT, checks, run_check
from tests.unit.providers.test_remote_facts import gather


def test_exit_status_and_output_come_back() -> None:
    assert run_check({"argv": ["true"]}) == {"exit": 0, "stdout": "", "truncated": False}
    assert run_check({"argv": ["false"]})["exit"] == 1
    assert run_check({"argv": ["echo", "a b", "c"]})["stdout"] == "a b c\n"


def test_runs_without_a_shell_in_a_fixed_environment() -> None:
    # No shell: a metacharacter is an argument like any other.
    assert run_check({"argv": ["echo", "$HOME;", "`id`"]})["stdout"] == "$HOME; `id`\n"
    env = run_check({"argv": ["env"]})["stdout"].splitlines()
    assert dict(line.split("=", 1) for line in env) == CHECK_ENV
    assert run_check({"argv": ["pwd"]})["stdout"] == "/\n"
    # Standard input is /dev/null: a program reading it ends at once instead of waiting.
    started = time.monotonic()
    assert run_check({"argv": ["cat"], "timeout": 5}) == {
        "exit": 0,
        "stdout": "",
        "truncated": False,
    }
    assert time.monotonic() - started < 2


def test_missing_and_unrunnable_programs_are_errors(tmp_path: Path) -> None:
    assert run_check({"argv": ["no-such-program-x"]}) == {
        "error": "no such program: no-such-program-x"
    }
    plain = tmp_path / "not-executable"
    plain.write_text("#!/bin/sh\nexit 0\n")
    plain.chmod(0o644)
    assert run_check({"argv": [str(plain)]}) == {"error": f"permission denied: {plain}"}
    assert "error" in run_check({"argv": []})


def test_a_timeout_kills_the_program_promptly() -> None:
    started = time.monotonic()
    answer = run_check({"argv": ["sleep", "30"], "timeout": 1})
    assert answer == {"timed_out": True, "timeout": 1}
    assert time.monotonic() - started < 2.5


def _gone(pid: int) -> bool:
    """Not running: no such process, or a zombie waiting for its (new) parent."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _wait_gone(pid: int, within: float = 3.0) -> bool:
    until = time.monotonic() + within
    while time.monotonic() < until:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return _gone(pid)


# A program that starts a grandchild (which holds the pipes open), writes the
# grandchild's pid to a file, then either hangs or exits at once. Only the test runs an
# interpreter: it calls run_check directly, past the controller's program rules.
SPAWN = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen(['sleep', '300'])\n"
    "open(sys.argv[1], 'w').write(str(child.pid))\n"
    "print('started', flush=True)\n"
    "if sys.argv[2] == 'hang':\n"
    "    time.sleep(300)\n"
)


def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild"
    started = time.monotonic()
    answer = run_check({"argv": [sys.executable, "-c", SPAWN, str(pid_file), "hang"], "timeout": 1})
    assert answer == {"timed_out": True, "timeout": 1}
    assert time.monotonic() - started < 2.5
    assert _wait_gone(int(pid_file.read_text()))


def test_what_a_check_leaves_running_is_killed_and_does_not_hold_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild"
    started = time.monotonic()
    answer = run_check(
        {"argv": [sys.executable, "-c", SPAWN, str(pid_file), "exit"], "timeout": 10}
    )
    # The program's own exit, as soon as it exits: the grandchild holding the pipe open
    # neither delays the answer nor turns it into a timeout.
    assert answer == {"exit": 0, "stdout": "started\n", "truncated": False}
    assert time.monotonic() - started < 3
    assert _wait_gone(int(pid_file.read_text()))


def test_output_is_capped_and_the_program_runs_to_its_end() -> None:
    answer = run_check({"argv": ["head", "-c", "200000", "/dev/zero"]})
    assert answer["exit"] == 0 and answer["truncated"] is True
    assert len(answer["stdout"].encode()) == CHECK_OUTPUT
    # Far more than a pipe holds, on both pipes: read and discarded, never blocking it.
    noisy = (
        "import sys\nsys.stdout.write('x' * 3000000)\nsys.stderr.write('e' * 3000000)\n"
        "sys.exit(4)\n"
    )
    answer = run_check({"argv": [sys.executable, "-c", noisy], "timeout": 10})
    assert (answer["exit"], answer["truncated"], len(answer["stdout"])) == (4, True, CHECK_OUTPUT)
    exact = run_check({"argv": ["head", "-c", str(CHECK_OUTPUT), "/dev/zero"]})
    assert exact["truncated"] is False and len(exact["stdout"]) == CHECK_OUTPUT


def test_output_that_is_not_utf8_is_replaced() -> None:
    assert run_check({"argv": ["printf", "\\377ok"]})["stdout"] == "\ufffdok"


def test_checks_run_in_order_within_the_budget() -> None:
    answers = checks([{"argv": ["true"]}, {"argv": ["false"]}, {"argv": ["echo", "x"]}], 10)
    assert [a["exit"] for a in answers] == [0, 1, 0]


def test_a_spent_budget_stops_the_rest() -> None:
    started = time.monotonic()
    answers = checks(
        [
            {"argv": ["sleep", "5"], "timeout": 10},
            {"argv": ["true"]},
            {"argv": ["true"]},
        ],
        1,
    )
    assert time.monotonic() - started < 2.5
    first, *rest = answers
    # The first gets what was left of the budget, not its own 10 s, and says so.
    assert first["timed_out"] is True and first["budget"] is True and first["timeout"] <= 1
    assert rest == [{"error": "not run: the node's check time budget (1s) is spent"}] * 2


def test_the_budget_counts_from_the_start_of_the_read() -> None:
    answers = checks([{"argv": ["true"]}], 5, started=time.monotonic() - 6)
    assert answers == [{"error": "not run: the node's check time budget (5s) is spent"}]


def test_the_node_judges_the_output_and_never_sends_it() -> None:
    item = {
        "argv": ["printf", "ready\\nTOKEN=s3cr3t-9f8e\\n"],
        "contains": "TOKEN=",
        "matches": "^TOKEN=[a-z0-9-]+$",
    }
    (answer,) = remote_facts.checks([item], 5)
    assert answer == {"exit": 0, "contains": True, "matches": True, "truncated": False}
    (missed,) = remote_facts.checks([{**item, "contains": "absent", "matches": "^ready$x"}], 5)
    assert missed == {"exit": 0, "contains": False, "matches": False, "truncated": False}
    assert "s3cr3t" not in json.dumps([answer, missed])
    (bad,) = remote_facts.checks([{**item, "matches": "("}], 5)
    assert bad == {"error": "this node's Python cannot compile the expected pattern"}


def test_the_fact_read_answers_checks_only_when_asked() -> None:
    answer = gather(
        {
            "checks": [{"argv": ["test", "-d", "/etc"]}, {"argv": ["test", "-e", "/nonexistent"]}],
            "check_budget": 5,
        }
    )
    assert answer["checks"] == [{"exit": 0, "truncated": False}, {"exit": 1, "truncated": False}]
    assert "checks" not in gather({"users": ["root"]})


def test_the_script_stays_runnable_on_old_pythons() -> None:
    # It runs on the node's python3 (3.6 and later): no f-strings, no walrus, no
    # built-in generics in code that runs.
    source = Path(remote_facts.__file__).read_text()
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    fstrings = [
        t.start[0]
        for t in tokens
        if t.type == getattr(tokenize, "FSTRING_START", None)
        or (t.type == tokenize.STRING and "f" in t.string.split(t.string[-1])[0].lower())
    ]
    assert fstrings == []
    assert not any(t.type == tokenize.OP and t.string == ":=" for t in tokens)


@pytest.mark.parametrize(
    ("timeout", "budget"), [(60, 45), (100, 75), (30, 15), (20, 5), (10, 1), (4, 1), (1, 1)]
)
def test_the_check_budget_leaves_room_in_the_command_timeout(timeout: float, budget: float) -> None:
    assert check_budget(timeout) == budget
    assert check_budget(timeout) < timeout or timeout <= 1


def test_a_pattern_that_backtracks_for_ever_fails_its_check_in_time() -> None:
    item = {"argv": ["printf", "a" * 40], "matches": "^(a|a)*b$"}
    started = time.monotonic()
    (answer,) = remote_facts.checks([item], 2)
    assert answer == {"error": "matching the expected pattern ran out of the check time budget"}
    assert time.monotonic() - started < 10


def test_the_watchdog_ends_the_read_and_the_check_running_then(tmp_path: Path) -> None:
    fifo = tmp_path / "never"
    os.mkfifo(fifo)
    request = {
        # A check that blocks (a FIFO nobody writes), then a budget far past the watchdog.
        "checks": [{"argv": ["cat", str(fifo)], "timeout": 30}],
        "check_budget": 30,
        "watchdog": 1,
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, remote_facts.__file__],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 124 and result.stdout == ""
    assert time.monotonic() - started < 8
    # Nothing of the check is left: no process still has the FIFO open for reading.
    leftovers = subprocess.run(["pgrep", "-f", f"cat {fifo}"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""


def test_a_check_dies_with_a_fact_process_killed_outright(tmp_path: Path) -> None:
    fifo = tmp_path / "never"
    os.mkfifo(fifo)
    request = {"checks": [{"argv": ["cat", str(fifo)], "timeout": 30}], "check_budget": 30}
    facts = subprocess.Popen(
        [sys.executable, remote_facts.__file__],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert facts.stdin is not None
    facts.stdin.write(json.dumps(request).encode())
    facts.stdin.close()

    def running() -> str:
        found = subprocess.run(["pgrep", "-f", f"cat {fifo}"], capture_output=True, text=True)
        return found.stdout.strip()

    deadline = time.monotonic() + 10
    while not running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running()
    facts.kill()  # SIGKILL: no handler, no cleanup of its own runs
    facts.wait()
    deadline = time.monotonic() + 5
    while running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running() == ""


def test_a_check_that_explodes_in_memory_fails_alone() -> None:
    # 2 GiB: over a check's address-space limit (1 GiB), under this machine's memory.
    grow = [sys.executable, "-c", "x = bytearray(2 * 1024 ** 3)"]
    answer = run_check({"argv": grow, "timeout": 20})
    assert answer.get("exit") not in (0, None)


def test_the_search_child_dies_with_a_fact_process_killed_outright(tmp_path: Path) -> None:
    script = tmp_path / "search.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(remote_facts.__file__).parent)!r})\n"
        "import remote_facts\n"
        "remote_facts.search_within('^(a+)+$', 'a' * 40 + 'b', 60)\n"
    )
    facts = subprocess.Popen([sys.executable, str(script)])

    def searching() -> list[str]:
        found = subprocess.run(["pgrep", "-f", str(script)], capture_output=True, text=True)
        return [p for p in found.stdout.split() if p != str(facts.pid)]

    deadline = time.monotonic() + 10
    while not searching() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert searching()
    facts.kill()
    facts.wait()
    deadline = time.monotonic() + 5
    while searching() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert searching() == []
