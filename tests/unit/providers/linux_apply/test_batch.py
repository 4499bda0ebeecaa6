"""Batches: the node-side runner (run here, locally, as the node runs it) and the
controller's cutting, request and masking of a batch."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from controller.providers.linux import batch
from controller.providers.linux.operations import Step, write_file_script
from controller.providers.linux.ssh import SshTarget


def runner(request: dict[str, Any], timeout: float = 60) -> tuple[int, list[dict[str, Any]], str]:
    """Run remote_batch.py as the node does; (exit code, result lines, stderr)."""
    done = subprocess.run(
        ["sh", "-c", batch.runner_command()],
        input=json.dumps(request).encode(),
        capture_output=True,
        timeout=timeout,
    )
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    return done.returncode, lines, done.stderr.decode()


def step(script: str, stdin: bytes = b"", timeout: float = 30) -> dict[str, Any]:
    return {"script": script, "stdin": base64.b64encode(stdin).decode(), "timeout": timeout}


def test_runs_in_order_stops_at_the_first_failure_and_says_which(tmp_path: Path) -> None:
    target = tmp_path / "a.conf"
    steps = [
        step(write_file_script(str(target), "0640", None, None, False, tag="tbatch"), b"hello\n"),
        step(f"echo one >> {tmp_path}/log"),
        step(f"echo two >> {tmp_path}/log; echo 'no such thing' >&2; exit 3"),
        step(f"echo three >> {tmp_path}/log"),
    ]
    code, lines, _ = runner({"steps": steps})
    assert code == 0
    assert lines == [
        {"step": 0, "exit": 0},
        {"step": 1, "exit": 0},
        {"step": 2, "exit": 3, "output": "no such thing"},
    ]
    assert target.read_bytes() == b"hello\n"
    assert oct(target.stat().st_mode & 0o777) == "0o640"
    assert (tmp_path / "log").read_text() == "one\ntwo\n"  # the fourth step never ran


def test_keep_going_runs_every_step(tmp_path: Path) -> None:
    steps = [step("exit 1"), step(f"touch {tmp_path}/ran"), step("echo out; exit 2")]
    code, lines, _ = runner({"keepGoing": True, "steps": steps})
    assert code == 0
    assert [(x["step"], x["exit"]) for x in lines] == [(0, 1), (1, 0), (2, 2)]
    assert lines[2]["output"] == "out"  # stdout when the step said nothing on stderr
    assert (tmp_path / "ran").exists()


def test_each_step_gets_its_own_stdin_and_none_reads_another_s(tmp_path: Path) -> None:
    steps = [
        step(f"base64 -d > {tmp_path}/one", b"first\n"),
        step(f"cat > {tmp_path}/empty"),
        step(f"base64 -d > {tmp_path}/two", b"second\n"),
    ]
    code, lines, _ = runner({"steps": steps})
    assert code == 0 and [x["exit"] for x in lines] == [0, 0, 0]
    assert (tmp_path / "one").read_text() == "first\n"
    assert (tmp_path / "empty").read_text() == ""
    assert (tmp_path / "two").read_text() == "second\n"


def test_a_step_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    # the child writes its pid and would touch a file after 3 s, unless killed
    script = f"(sleep 3; touch {tmp_path}/late) & echo $! > {tmp_path}/pid; wait"
    started = time.monotonic()
    code, lines, _ = runner({"steps": [step(script, timeout=0.5), step(f"touch {tmp_path}/next")]})
    assert time.monotonic() - started < 3
    assert code == 0
    assert lines[0]["exit"] is None and lines[0]["timeout"] is True
    assert "did not finish within 0.5 s" in lines[0]["output"]
    assert not (tmp_path / "next").exists()
    time.sleep(3)
    assert not (tmp_path / "late").exists()  # the whole process group went


def test_nobody_reading_any_more_stops_the_batch(tmp_path: Path) -> None:
    """The connection is gone (the controller killed): the step running ends, no other
    starts, since nobody would hear of it."""
    steps = [step(f"sleep 0.3; touch {tmp_path}/first"), step(f"touch {tmp_path}/second")]
    proc = subprocess.Popen(
        ["sh", "-c", batch.runner_command()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps({"steps": steps}).encode())
    proc.stdin.close()
    proc.stdout.close()
    assert proc.wait(timeout=30) == 3
    assert (tmp_path / "first").exists()
    assert not (tmp_path / "second").exists()


def fake_step(name: str, stdin: str = "", script: str = "true", **kw: Any) -> Step:
    return Step("File", name, "update", script, stdin, **kw)


def test_split_keeps_order_and_bounds_each_batch() -> None:
    steps = [fake_step(str(i), "x" * 40, script="s" * 10) for i in range(10)]  # 50 bytes each
    parts = batch.split(steps, limit=120)
    assert [[s.name for s in p] for p in parts] == [
        ["0", "1"],
        ["2", "3"],
        ["4", "5"],
        ["6", "7"],
        ["8", "9"],
    ]
    big = fake_step("big", "x" * 500)
    parts = batch.split([steps[0], big, steps[1]], limit=120)
    assert [[s.name for s in p] for p in parts] == [["0"], ["big"], ["1"]]
    assert batch.split([]) == []
    assert len(batch.split(steps)) == 1  # the default limit holds a whole transaction


def test_request_carries_scripts_data_and_per_step_timeouts() -> None:
    target = SshTarget("n", "10.0.0.1", 22, "root", None, True, None, 10, 45)
    slow = Step("Package", "p", "create", "apt-get install -y x", slow=True)
    accounts = Step("User", "u", "rollback", "base64 -d | python3 -I -S -c @remote_snapshot.py@")
    data = json.loads(batch.request([fake_step("f", "aGk="), slow, accounts], target, False))
    assert data["keepGoing"] is False
    assert [s["timeout"] for s in data["steps"]] == [45, batch.PACKAGE_TIMEOUT, 45]
    assert data["steps"][0] == {"script": "true", "stdin": "aGk=", "timeout": 45}
    # the node-side helper is spliced in for its marker, as for a step sent alone
    assert "@remote_snapshot.py@" not in data["steps"][2]["script"]
    assert "def main" in data["steps"][2]["script"]


@pytest.mark.parametrize(
    ("sensitive", "expected"),
    [
        (True, "cannot write ***: line ***; hash *** rest"),
        # not sensitive: the file's own lines are worth showing; hashes never are
        (False, "cannot write s3cr3t-token: line password = hunter2!; hash *** rest"),
    ],
)
def test_failure_output_is_masked(sensitive: bool, expected: str) -> None:
    content = b"password = hunter2!\n  s3cr3t-token\nab\n"
    step = fake_step("f", base64.b64encode(content).decode(), sensitive=sensitive)
    text = (
        "cannot write s3cr3t-token: line password = hunter2!; "
        "hash $6$saltsalt$abcdefghijklmnop rest"
    )
    assert batch.mask(text, step) == expected


def test_masking_hides_the_encoded_data_and_every_line_of_it() -> None:
    content = b"api_key = AKIAEXAMPLE\nsecond line here\nab\n"
    encoded = base64.b64encode(content).decode()
    secret = fake_step("f", encoded, sensitive=True)
    text = f"echo {encoded} | base64 -d: api_key = AKIAEXAMPLE / second line here / ab"
    assert batch.mask(text, secret) == "echo *** | base64 -d: *** / *** / ab"


def test_nothing_a_step_started_outlives_it_not_even_past_setsid(tmp_path: Path) -> None:
    # A tool's "nohup x &" stays in the step's group; "setsid x &" leaves it, and is
    # reparented to the runner (a child subreaper), which ends it with the step.
    marker = tmp_path / "alive"
    script = (
        f"setsid sh -c 'sleep 2; touch {marker}' </dev/null >/dev/null 2>&1 & "
        f"nohup sh -c 'sleep 2; touch {marker}' </dev/null >/dev/null 2>&1 & "
        "sleep 0.5"  # time for setsid to leave the group before the step ends
    )
    contained = {**step(script), "contain": True}
    code, lines, _ = runner({"keepGoing": False, "steps": [contained]})
    assert code == 0 and lines == [{"step": 0, "exit": 0}]
    import time

    time.sleep(3)
    assert not marker.exists()


def test_other_steps_keep_the_daemons_they_start(tmp_path: Path) -> None:
    # A package step's daemon (it leaves the step's session) is not a tool's leftover.
    marker = tmp_path / "daemon-ran"
    script = f"setsid sh -c 'sleep 1; touch {marker}' </dev/null >/dev/null 2>&1 & sleep 0.3"
    code, lines, _ = runner({"keepGoing": False, "steps": [step(script)]})
    assert code == 0 and lines == [{"step": 0, "exit": 0}]
    import time

    time.sleep(2)
    assert marker.exists()
