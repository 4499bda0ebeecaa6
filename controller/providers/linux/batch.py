"""Steps sent to a node in batches: one SSH exec runs many steps, each reported as it ends.

A batch is one run of ``remote_batch.py`` on the node: the steps' scripts and their
standard input travel as JSON on its standard input (never on a command line, where
``ps`` on the node would show them), and one result line per step comes back as soon as
the step ends, so the caller can journal it as done while later steps still run; result
lines that come within ``REPORT_LINGER`` of each other (fast steps, a busy controller) are
handed over together, so that one journal commit marks them all. A
forward batch stops at its first failing step; a rollback batch (``keep_going``) runs
every step. What the node prints for a failed step is masked before it goes anywhere:
the data a sensitive step carried, and anything shaped like a password hash.

Batches are cut by payload size (``MAX_BATCH_BYTES``), so a transaction writing many
large files still sends bounded requests; the caller journals each batch's steps before
sending it.
"""

from __future__ import annotations

import base64
import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

import asyncssh

from controller.errors import NodeError
from controller.hashes import mask_hashes
from controller.providers.linux import snapshot as snapshots
from controller.providers.linux import ssh
from controller.providers.linux.operations import Step
from controller.store.redact import MASK

# apt-get waits up to 120 s for the dpkg lock, then downloads and unpacks.
PACKAGE_TIMEOUT = 900.0
# On top of a step's own timeout (which the node enforces): the time for its result line
# to come back, and for the runner to start and read its request before the first step.
GRACE = 30.0
MAX_BATCH_BYTES = 32 * 1024 * 1024
# How long a reported step waits for the reports that follow it, so that the journal marks
# them done in one commit (an fsync each) rather than one by one. The node does not wait
# for it; only the journal's done marks and their events come up to this much later.
REPORT_LINGER = 0.2
_MIN_SECRET = 4  # shorter lines of a secret are too common to mask in a message


@dataclass(frozen=True)
class Outcome:
    """How one step of a batch ended, as the node reported it (output already masked)."""

    index: int
    step: Step
    exit_status: int | None  # None: killed at its timeout
    output: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def describe(self) -> str:
        if self.timed_out:
            return self.output
        return f"exit {self.exit_status}: {self.output or '(no output)'}"


class BatchError(NodeError):
    """The runner on the node misbehaved (no python3, a malformed answer, an early end)."""


@cache
def runner_command() -> str:
    source = resources.files("controller.providers.linux").joinpath("remote_batch.py").read_text()
    # -I -S: no user site or .pth files on the node; the runner is standard library only
    return "python3 -I -S -c " + shlex.quote(source)


def step_timeout(step: Step, target: ssh.SshTarget) -> float:
    if step.timeout is not None:
        return float(step.timeout)
    return max(target.command_timeout, PACKAGE_TIMEOUT) if step.slow else target.command_timeout


def split(steps: Sequence[Step], limit: int = MAX_BATCH_BYTES) -> list[list[Step]]:
    """Consecutive batches of at most ``limit`` bytes of script and data (a bigger single
    step goes alone), in order."""
    out: list[list[Step]] = []
    size = 0
    for step in steps:
        weight = len(step.script) + len(step.stdin)
        if not out or (size + weight > limit and out[-1]):
            out.append([])
            size = 0
        out[-1].append(step)
        size += weight
    return out


def request(steps: Sequence[Step], target: ssh.SshTarget, keep_going: bool) -> str:
    return json.dumps(
        {
            "keepGoing": keep_going,
            "steps": [
                {
                    "script": snapshots.expand(step.script),
                    "stdin": step.stdin,
                    "timeout": step_timeout(step, target),
                    # A tool's script: nothing it starts may outlive it (remote_batch).
                    **({"contain": True} if step.contain else {}),
                }
                for step in steps
            ],
        }
    )


def mask(text: str, step: Step) -> str:
    """``text`` without the data a sensitive step carried, nor password hashes."""
    if step.sensitive and step.stdin:
        secrets = {step.stdin}
        try:
            decoded = base64.b64decode(step.stdin).decode("utf-8", "replace")
        except ValueError:
            decoded = ""
        secrets.update(line.strip() for line in decoded.splitlines())
        # The bare values too (a tool's secret param, which its script may print), and
        # as the shell quoted them.
        secrets.update(step.masks)
        secrets.update(shlex.quote(value) for value in step.masks)
        for secret in sorted(secrets, key=len, reverse=True):
            if len(secret) >= _MIN_SECRET:
                text = text.replace(secret, MASK)
    return mask_hashes(text)


async def run(
    connection: asyncssh.SSHClientConnection,
    target: ssh.SshTarget,
    steps: Sequence[Step],
    *,
    keep_going: bool,
    on_results: Callable[[Sequence[Outcome]], None],
) -> None:
    """Run ``steps`` as one batch; ``on_results`` gets the outcomes in order, as the node
    reports them: those that come within ``REPORT_LINGER`` of the first at once (so the
    journal marks them in one commit). Returns when the
    runner has ended: after every step, or (without ``keep_going``) after the first
    failure. Raises NodeError when the node stops answering (the steps not yet reported may
    or may not have been made) and BatchError when the runner ends without reporting a
    step it should have run."""
    if not steps:
        return
    payload = request(steps, target, keep_going)
    stream = await ssh.start(connection, target, runner_command(), payload)
    expected = 0
    stopped = False  # at a failed step, without keep_going
    try:
        while expected < len(steps) and not stopped:
            step = steps[expected]
            lines = await stream.read_lines(step_timeout(step, target) + GRACE, REPORT_LINGER)
            if not lines:
                break
            outcomes: list[Outcome] = []
            problem: BatchError | None = None
            for line in lines:
                if expected == len(steps):
                    problem = BatchError(target.node, "the batch runner reported an extra step")
                    break
                try:
                    outcome = _parse(target.node, line, expected, steps[expected])
                except BatchError as exc:
                    problem = exc
                    break
                outcomes.append(outcome)
                expected += 1
                if not outcome.ok and not keep_going:
                    stopped = True
                    break
            if outcomes:
                on_results(outcomes)  # what was reported is journaled, even before a problem
            if problem is not None:
                raise problem
        status, stderr = await stream.finish(GRACE)
    finally:
        stream.close()
    ended = expected == len(steps) or stopped
    if status == 127 and expected == 0:
        raise BatchError(target.node, "python3 is not installed on the node; apply needs it")
    if not ended or status != 0:
        reason = mask_hashes(stderr.strip()[-500:]) or f"exit {status}"
        raise BatchError(
            target.node,
            f"the batch runner ended after {expected} of {len(steps)} steps: {reason}",
        )


def _parse(node: str, line: str, index: int, step: Step) -> Outcome:
    try:
        data = json.loads(line)
        if data["step"] != index:
            raise ValueError(f"step {data['step']} reported where {index} was expected")
        status = data["exit"]
        output = str(data.get("output", ""))
    except (ValueError, KeyError, TypeError) as exc:
        raise BatchError(node, f"the batch runner answered something unexpected: {exc}") from exc
    return Outcome(
        index,
        step,
        None if status is None else int(status),
        mask(output, step)[-1000:],
        bool(data.get("timeout")),
    )
