"""Apply on a Linux node: a :class:`~controller.providers.base.NodeTransaction`.

``snapshot()`` reads the previous state of every object in one SSH round trip;
``write()`` computes every step first (a change that cannot be made safely is refused
before anything is sent), then runs them over one connection, journaling each intent
before sending it and stopping at the first failure; ``rollback()`` needs only the
snapshot: it reads the node again, restores whatever differs (in reverse order, so it is
idempotent and can finish the work of an interrupted rollback), checks the result, and
raises :class:`RollbackIncompleteError` naming everything it could not put back.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import asyncssh

from controller.errors import FactsError, NodeError
from controller.model.document import Document
from controller.providers.base import Change, Observation, StepJournal
from controller.providers.linux import essence, operations, ssh
from controller.providers.linux import snapshot as snapshots
from controller.providers.linux.operations import OperationError, Step, Target
from controller.source.tree import SourceTree

ACTIONS = ("create", "update", "delete")
# apt-get waits up to 120 s for the dpkg lock, then downloads and unpacks.
PACKAGE_TIMEOUT = 900.0


class ApplyRefusedError(NodeError):
    """The transaction cannot be carried out safely; nothing was sent to the node."""


class StepFailedError(NodeError):
    """A step exited non-zero; the steps before it were made, the ones after were not."""

    def __init__(self, node: str, step: Step, exit_status: int | None, output: str) -> None:
        self.step = step
        self.exit_status = exit_status
        self.output = output
        super().__init__(
            node, f"{step.kind}/{step.name} ({step.action}) failed (exit {exit_status}): {output}"
        )


class RollbackIncompleteError(NodeError):
    """Rollback restored what it could; ``problems`` lists what is not as it was."""

    def __init__(self, node: str, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(node, "rollback incomplete: " + "; ".join(self.problems))


def _targets(
    node: str,
    changes: Sequence[Change],
    tree: SourceTree,
    owned: Mapping[tuple[str, str], str],
) -> list[Target]:
    out: list[Target] = []
    for change in changes:
        if change.action not in ACTIONS:
            continue
        doc = change.document
        if doc is None:
            out.append(_prune(node, change, owned))
            continue
        spec = doc.spec
        kind = doc.kind
        key = _instance_key(kind, spec)
        data = None
        if kind == "File" and spec.get("state", "present") == "present":
            data = essence.desired_file_bytes(doc, tree)
        out.append(Target(kind, doc.name, key, change.action, spec, data,
                          bool(spec.get("sensitive"))))  # fmt: skip
    return out


def _instance_key(kind: str, spec: Mapping[str, Any]) -> str:
    """The object on the node, as the kinds module keys it (Sysctl keys with dots)."""
    if kind == "File":
        return str(spec["path"])
    if kind == "Sysctl":
        return str(spec["key"]).replace("/", ".")
    if kind == "NftTable":
        return f"{spec['family']} {spec['name']}"
    if kind in ("Package", "User", "Service"):
        return str(spec["name"])
    raise ApplyRefusedError("-", f"{kind}: not a Linux kind")


def _prune(node: str, change: Change, owned: Mapping[tuple[str, str], str]) -> Target:
    """A delete with no document: only an object FazAI owns, by the key it recorded."""
    key = owned.get((change.kind, change.name))
    if change.action != "delete" or key is None:
        raise ApplyRefusedError(
            node,
            f"{change.kind}/{change.name}: no document and no owned object recorded; "
            "refusing to guess what to delete",
        )
    spec: dict[str, Any] = {"state": "absent"}
    if change.kind == "NftTable":
        spec["family"], spec["name"] = key.split(" ", 1)
    # Files deleted without a document might hold secrets: keep them out of the journal.
    return Target(change.kind, change.name, key, "delete", spec, sensitive=True)


class LinuxTransaction:
    """One node's apply. Build it with ``LinuxProvider.transaction``; for a rollback of a
    stored snapshot in a new process, ``LinuxTransaction(node)`` is enough."""

    def __init__(
        self,
        node: Document,
        targets: Sequence[Target] = (),
        resources: Sequence[Document] = (),
        tree: SourceTree | None = None,
    ) -> None:
        self.node = node
        self.targets = list(targets)
        self.resources = list(resources)
        self.tree = tree
        self._ssh = ssh.SshTarget.from_node(node)
        self._snapshot: dict[str, Any] | None = None
        self._answer: Mapping[str, Any] | None = None
        self._steps: list[Step] | None = None

    # The engine holds every transaction in ``async with``; SSH connections are opened per
    # phase (snapshot, write, verify, rollback), so there is nothing to hold open here.
    async def __aenter__(self) -> LinuxTransaction:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    @classmethod
    def build(
        cls,
        node: Document,
        changes: Sequence[Change],
        resources: Sequence[Document],
        tree: SourceTree,
        owned: Mapping[tuple[str, str], str] | None = None,
    ) -> LinuxTransaction:
        return cls(node, _targets(node.name, changes, tree, owned or {}), resources, tree)

    # -- NodeTransaction ---------------------------------------------------------------

    async def snapshot(self) -> Mapping[str, Any]:
        request = snapshots.request_for(self.targets)
        async with await ssh.connect(self._ssh) as connection:
            answer = await self._gather(connection, request)
        taken = snapshots.build(self.node.name, self.targets, answer)
        problems = snapshots.errors(taken)
        if problems:
            # Without the previous state there is no rollback: touch nothing.
            raise FactsError(self.node.name, "cannot snapshot: " + "; ".join(problems))
        self._answer, self._snapshot = answer, taken
        self._steps = None
        return taken

    def steps(self) -> list[Step]:
        """Every step write() will send, computed from the snapshot (take it first)."""
        if self._answer is None:
            raise RuntimeError("take the snapshot first")
        if self._steps is None:
            try:
                self._steps = operations.forward_steps(
                    self.targets, self._answer, self._sysctl_values()
                )
            except OperationError as exc:
                raise ApplyRefusedError(self.node.name, str(exc)) from exc
        return self._steps

    async def write(self, journal: StepJournal) -> None:
        if self._answer is None:
            await self.snapshot()
        steps = self.steps()
        if not steps:
            return
        async with await ssh.connect(self._ssh) as connection:
            for step in steps:
                step_id = journal.intend(step.kind, step.name, step.action, step.payload())
                try:
                    result = await self._run(connection, step)
                except NodeError as exc:
                    # The connection dropped (or timed out) with the step sent: whether it
                    # landed is unknown; rollback works from the snapshot either way.
                    journal.failed(step_id, f"{exc.message}; it may or may not have been made")
                    raise
                if result.exit_status != 0:
                    output = _output(result)
                    journal.failed(step_id, f"exit {result.exit_status}: {output}")
                    raise StepFailedError(self.node.name, step, result.exit_status, output)
                journal.done(step_id)

    async def verify(self) -> Observation:
        if self.tree is None:
            raise RuntimeError("verify needs the desired state's source tree")
        from controller.providers.linux.provider import PROVIDER

        return await PROVIDER.observe(self.node, self.resources, self.tree)

    async def commit(self) -> None:
        # Every step is already final on the node (atomic renames, nft transactions);
        # nothing is staged that a commit would have to publish.
        return None

    async def rollback(self, snapshot: Mapping[str, Any]) -> None:
        objects = snapshots.objects_of(snapshot)
        if snapshot.get("node") != self.node.name:
            raise ValueError(f"snapshot of {snapshot.get('node')!r}, not of {self.node.name!r}")
        if not objects:
            return
        request = snapshots.request_from_objects(objects)
        problems: list[str] = []
        async with await ssh.connect(self._ssh) as connection:
            current = await self._gather(connection, request)
            plan = operations.rollback_steps(objects, current)
            problems += plan.problems
            for step in plan.steps:
                # Keep going after a failure: every other object is still worth restoring.
                result = await self._run(connection, step)
                if result.exit_status != 0:
                    problems.append(
                        f"{step.kind}/{step.name}: restoring failed (exit "
                        f"{result.exit_status}): {_output(result)}"
                    )
            # Read back: anything still different is reported, not assumed restored.
            after = operations.rollback_steps(objects, await self._gather(connection, request))
        for step in after.steps:
            message = f"{step.kind}/{step.name}: still differs from the snapshot after rollback"
            if not any(p.startswith(f"{step.kind}/{step.name}:") for p in problems):
                problems.append(message)
        problems += [p for p in after.problems if p not in problems]
        if problems:
            raise RollbackIncompleteError(self.node.name, problems)

    # -- internals ---------------------------------------------------------------------

    def _sysctl_values(self) -> dict[str, str] | None:
        if not any(t.kind == "Sysctl" for t in self.targets):
            return None
        values = {
            str(doc.spec["key"]).replace("/", "."): essence.normalize_sysctl(doc.spec["value"])
            for doc in self.resources
            if doc.kind == "Sysctl"
        }
        # a changed Sysctl is in the file even when the caller passed no resources
        for target in self.targets:
            if target.kind == "Sysctl" and target.present:
                values[target.key] = essence.normalize_sysctl(target.spec["value"])
            elif target.kind == "Sysctl":
                values.pop(target.key, None)
        return values

    async def _gather(
        self, connection: asyncssh.SSHClientConnection, request: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        result = await ssh.run(
            connection, self._ssh, snapshots.gather_command(), json.dumps(request)
        )
        if result.exit_status == 127:
            raise FactsError(self.node.name, "python3 is not installed on the node")
        if result.exit_status != 0:
            raise FactsError(self.node.name, f"snapshot read failed: {_output(result)}")
        try:
            answer: Mapping[str, Any] = json.loads(str(result.stdout))
        except ValueError as exc:
            raise FactsError(self.node.name, "snapshot read printed no valid JSON") from exc
        return answer

    async def _run(
        self, connection: asyncssh.SSHClientConnection, step: Step
    ) -> asyncssh.SSHCompletedProcess:
        target = self._ssh
        if step.slow:
            timeout = max(target.command_timeout, PACKAGE_TIMEOUT)
            target = dataclasses.replace(target, command_timeout=timeout)
        # sh -c: the script is POSIX sh whatever the login shell of the SSH user is
        command = "sh -c " + shlex.quote(snapshots.expand(step.script))
        return await ssh.run(connection, target, command, step.stdin or None)


def _output(result: asyncssh.SSHCompletedProcess) -> str:
    text = (str(result.stderr or "").strip() or str(result.stdout or "").strip())[-1000:]
    return text or "(no output)"
