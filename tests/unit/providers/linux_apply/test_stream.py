"""Reading a batch's result lines: the lines that come together are handed over together.

The SSH process is replaced by a pipe-like reader with asyncssh's ``read(n)`` contract
(whatever is buffered, waiting only when nothing is); the timing is real.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncssh
import pytest

from controller.errors import NodeError, UnreachableError
from controller.providers.linux import ssh

TARGET = ssh.SshTarget("web-1", "192.0.2.1", 22, "root", None, False, None, 3.0, 5.0)


class Reader:
    """What the node has written so far; ``read`` takes all of it, or waits for more."""

    def __init__(self) -> None:
        self.buffer = ""
        self.ended = False
        self.failure: BaseException | None = None
        self.arrived = asyncio.Event()

    def write(self, text: str) -> None:
        self.buffer += text
        self.arrived.set()

    def end(self) -> None:
        self.ended = True
        self.arrived.set()

    def fail(self, exc: BaseException) -> None:
        self.failure = exc
        self.arrived.set()

    async def read(self, n: int = -1) -> str:
        while not (self.buffer or self.ended or self.failure):
            self.arrived.clear()
            await self.arrived.wait()
        if self.buffer:
            data, self.buffer = self.buffer[:n], self.buffer[n:]
            return data
        if self.failure is not None:
            raise self.failure
        return ""


class Process:
    def __init__(self) -> None:
        self.stdout = Reader()
        self.stderr = Reader()
        self.stderr.end()

    def close(self) -> None:
        pass


def stream() -> tuple[ssh.Stream, Reader]:
    process = Process()
    opened: Any = process
    return ssh.Stream(TARGET, opened), process.stdout


async def later(delay: float, action: Any, *args: Any) -> None:
    await asyncio.sleep(delay)
    action(*args)


async def test_lines_already_there_come_together_and_a_partial_one_waits() -> None:
    lines, out = stream()
    out.write('{"step": 0}\n{"step": 1}\n{"step"')
    assert await lines.read_lines(1.0) == ['{"step": 0}\n', '{"step": 1}\n']
    out.write(": 2}\n")
    assert await lines.read_lines(1.0) == ['{"step": 2}\n']


async def test_lines_within_the_linger_come_with_the_first_and_later_ones_after() -> None:
    lines, out = stream()
    out.write("a\n")
    feeding = asyncio.gather(
        later(0.05, out.write, "b\n"), later(0.10, out.write, "c\n"), later(0.6, out.write, "d\n")
    )
    assert await lines.read_lines(1.0, linger=0.3) == ["a\n", "b\n", "c\n"]
    assert await lines.read_lines(1.0, linger=0.3) == ["d\n"]
    await feeding


async def test_without_linger_each_line_comes_as_it_arrives() -> None:
    lines, out = stream()
    out.write("a\n")
    feeding = asyncio.ensure_future(later(0.05, out.write, "b\n"))
    assert await lines.read_lines(1.0) == ["a\n"]
    assert await lines.read_lines(1.0) == ["b\n"]
    await feeding


async def test_the_end_stops_the_linger_and_an_unfinished_last_line_comes_alone() -> None:
    lines, out = stream()
    out.write("a\nb")
    out.end()
    started = asyncio.get_running_loop().time()
    assert await lines.read_lines(1.0, linger=5.0) == ["a\n", "b"]
    assert asyncio.get_running_loop().time() - started < 1.0
    assert await lines.read_lines(1.0, linger=5.0) == []


async def test_a_connection_lost_while_lingering_comes_after_the_lines_before_it() -> None:
    lines, out = stream()
    out.write("a\n")
    feeding = asyncio.ensure_future(later(0.05, out.fail, asyncssh.ConnectionLost("reset by peer")))
    assert await lines.read_lines(1.0, linger=1.0) == ["a\n"]
    with pytest.raises(UnreachableError, match="connection lost: reset by peer"):
        await lines.read_lines(1.0, linger=1.0)
    await feeding


async def test_no_first_line_within_the_timeout_is_a_node_error() -> None:
    lines, _ = stream()
    with pytest.raises(NodeError, match=r"no answer from the node within 0\.1 s"):
        await lines.read_lines(0.1, linger=1.0)
