"""Apply on a Linux node: a :class:`~controller.providers.base.NodeTransaction`.

``snapshot()`` reads the previous state of every object in one SSH round trip;
``write()`` computes every step first (a change that cannot be made safely is refused
before anything is sent), journals every step of a batch as an intent, then sends the
whole batch in one round trip (:mod:`~controller.providers.linux.batch`): the node runs
the steps in order, stops at the first failure, and reports each step as it ends, so the
journal marks it done (or failed, with its masked output) as it happens (the intents of a
batch in one journal commit, the steps reported together in one more); ``rollback()``
needs only the snapshot: it reads the node again, restores whatever differs in one batch
(in reverse order, so it is idempotent and can finish the work of an interrupted
rollback), checks the result, and raises :class:`RollbackIncompleteError` naming
everything it could not put back.

Inside ``async with`` the transaction keeps one SSH connection for snapshot, write and
rollback, taken on first use (the node's kept one, see :mod:`~.pool`); a connection that
failed is dropped and the next phase takes a new one. A snapshot whose reused connection
turns out lost reads once more over a new one (nothing was written); a write is never
sent twice. Verify always reads over a new connection, a new login: the node must still
accept one after the change (that connection is kept for the node's next reads).
Outside ``async with``, each phase takes its own.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import asyncssh

from controller.errors import FactsError, NodeError, UnreachableError
from controller.model.document import Document
from controller.model.tool import resolution_of
from controller.providers.base import Change, Intent, Observation, StepJournal
from controller.providers.linux import batch, checks, essence, operations, pool, ssh
from controller.providers.linux import snapshot as snapshots
from controller.providers.linux.operations import OperationError, Step, Target
from controller.source.tree import SourceTree

ACTIONS = ("create", "update", "delete")


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


class OutsideChangeError(NodeError):
    """The write changed something outside its objects (another nft table)."""


class RollbackIncompleteError(NodeError):
    """Rollback restored what it could; ``problems`` lists what is not as it was."""

    def __init__(self, node: str, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(node, "rollback incomplete: " + "; ".join(self.problems))


def _targets(
    node: Document,
    changes: Sequence[Change],
    tree: SourceTree,
    owned: Mapping[tuple[str, str], str],
) -> list[Target]:
    out: list[Target] = []
    limit = checks.max_file_bytes(node)
    for change in changes:
        if change.action not in ACTIONS:
            continue
        doc = change.document
        if doc is None:
            out.append(_prune(node.name, change, owned))
            continue
        spec = doc.spec
        kind = doc.kind
        key = _instance_key(kind, spec)
        data = None
        if kind == "File" and spec.get("state", "present") == "present":
            data = essence.desired_file_bytes(doc, tree)
            # Validate measured the source when it was planned; a directory source is
            # read only now, and may have grown since: what is sent is what counts.
            if len(data) > limit:
                raise ApplyRefusedError(
                    node.name,
                    f"File/{doc.name}: the file is {len(data)} bytes; Node/{node.name} takes "
                    f"files of at most {limit} bytes (its spec.maxFileBytes)",
                )
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
    if kind == "Goal":
        return f"goal {spec.get('resolvedBy', {}).get('tool', '')}"
    raise ApplyRefusedError("-", f"{kind}: not a Linux kind")


def _kept(targets: Sequence[Target]) -> list[Target]:
    """What the tools of goal targets list to snapshot, as targets of their own kinds
    (read before the write and restored by a rollback, never written forward); files
    are kept as sensitive: a tool's files may hold anything, so their content goes to
    the escrow, not the journal."""
    taken = {(t.kind, t.key) for t in targets}
    out: list[Target] = []
    for target in targets:
        resolution = resolution_of(target.spec) if target.kind == "Goal" else None
        if resolution is None:
            continue
        kept = resolution.snapshot
        wanted = [
            *(Target("File", target.name, p, "update", {}, sensitive=True) for p in kept.paths),
            *(Target("Package", target.name, p, "update", {}) for p in kept.packages),
            *(Target("User", target.name, u, "update", {"groups": []}) for u in kept.users),
            *(Target("Service", target.name, u, "update", {}) for u in kept.services),
        ]
        for one in wanted:
            if (one.kind, one.key) not in taken:
                taken.add((one.kind, one.key))
                out.append(one)
    return out


def _not_restorable(kept: Sequence[Target], answer: Mapping[str, Any]) -> list[str]:
    """A tool's snapshot paths that a rollback could not put back byte for byte: only
    regular files (or nothing yet) are; a directory or a symlink is refused before
    anything is written, rather than claimed restored."""
    out = []
    for target in kept:
        if target.kind != "File":
            continue
        fact = answer.get("files", {}).get(target.key) or {}
        kind = fact.get("type")
        if fact.get("exists") and kind != "file":
            out.append(
                f"Goal/{target.name}: its tool's snapshot lists {target.key}, a {kind}: "
                "only regular files can be restored byte for byte; list the files in it"
            )
    return out


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
        self._holding = False  # inside ``async with``: keep one connection for all phases
        self._held: pool.Lease | None = None
        self._releases = contextlib.AsyncExitStack()  # gives the held lease back
        self._reused = False  # the last connection taken was made before this transaction

    async def __aenter__(self) -> LinuxTransaction:
        self._holding = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._holding = False
        await self._drop()

    @classmethod
    def build(
        cls,
        node: Document,
        changes: Sequence[Change],
        resources: Sequence[Document],
        tree: SourceTree,
        owned: Mapping[tuple[str, str], str] | None = None,
    ) -> LinuxTransaction:
        return cls(node, _targets(node, changes, tree, owned or {}), resources, tree)

    # -- NodeTransaction ---------------------------------------------------------------

    async def snapshot(self) -> Mapping[str, Any]:
        kept = _kept(self.targets)
        snapshotted = [*self.targets, *kept]
        request = {**snapshots.request_for(snapshotted), "maxContent": self._max_content()}
        first = self._held is None
        try:
            answer = await self._read(request)
        except UnreachableError:
            if not (first and self._reused):
                raise
            # The kept connection was lost since its last use (the node rebooted, its sshd
            # restarted): nothing was sent yet, read over a new one.
            answer = await self._read(request)
        taken = snapshots.build(self.node.name, snapshotted, answer)
        problems = snapshots.errors(taken) + _not_restorable(kept, answer)
        if problems:
            # Without the previous state there is no rollback: touch nothing.
            raise FactsError(self.node.name, "cannot snapshot: " + "; ".join(problems))
        self._answer, self._snapshot = answer, taken
        self._steps = None
        return taken

    def steps(self) -> list[Step]:
        """Every step write() will send, computed from the snapshot (take it first)."""
        if self._answer is None or self._snapshot is None:
            raise RuntimeError("take the snapshot first")
        if self._steps is None:
            try:
                self._steps = operations.forward_steps(
                    self.targets,
                    self._answer,
                    self._sysctl_values(),
                    tag=snapshots.tag_of(self._snapshot),
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
        async with self._connection() as connection:
            for part in batch.split(steps):
                await self._write_batch(connection, part, journal)
            await self._check_other_tables(connection)

    async def reapply(self, journal: StepJournal) -> list[str]:
        """Send the same steps once more and read back every object the snapshot holds:
        those the second write changed (empty: the write is idempotent)."""
        kept = _kept(self.targets)
        snapshotted = [*self.targets, *kept]
        request = {**snapshots.request_for(snapshotted), "maxContent": self._max_content()}
        first = await self._read(request)
        async with self._connection() as connection:
            for part in batch.split(self.steps()):
                await self._write_batch(connection, part, journal)
        second = await self._read(request)
        changed = []
        for section in ("packages", "files", "users", "sysctls", "nft", "services"):
            before, after = first.get(section, {}), second.get(section, {})
            for key in sorted(set(before) | set(after)):
                if before.get(key) != after.get(key):
                    changed.append(f"{section[:-1] if section != 'nft' else 'nft table'} {key}")
        return changed

    async def _check_other_tables(self, connection: asyncssh.SSHClientConnection) -> None:
        """An nft load runs in the node's whole ruleset: if a table this transaction does
        not manage changed, fail, so that the engine rolls back (which restores it)."""
        assert self._snapshot is not None
        record = next(
            (o for o in self._snapshot["objects"] if o["key"] == operations.RULESET_KEY
             and o["kind"] == "NftTable"),
            None,
        )  # fmt: skip
        if record is None:
            return
        answer = await self._gather(connection, {"nftRuleset": True})
        changed = operations.ruleset_changes(record["before"], answer.get("nftRuleset"))
        if changed:
            raise OutsideChangeError(
                self.node.name,
                "nft tables this transaction does not manage changed: " + "; ".join(changed),
            )

    async def verify(self) -> Observation:
        if self.tree is None:
            raise RuntimeError("verify needs the desired state's source tree")
        from controller.providers.linux.provider import PROVIDER

        # Over a new connection, not the held one: a change that stops the node taking new
        # SSH connections (its sshd configuration, a firewall table) fails verify here,
        # and the rollback still goes through the connection held since the snapshot.
        async with pool.new_login(self._ssh) as connection:
            return await PROVIDER.observe(self.node, self.resources, self.tree, connection)

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
        held = self._held is not None or self._reused
        try:
            problems, after = await self._restore(objects)
        except NodeError:
            if not held:
                raise
            # The connection held since the snapshot (or a kept one) may be what failed (it
            # was dropped): once more over a new one. Restoring is idempotent: it reads the
            # node first.
            problems, after = await self._restore(objects)
        for step in after.steps:
            if step.kind == "Goal":
                continue  # a tool's rollback script: run once, nothing to compare
            message = f"{step.kind}/{step.name}: still differs from the snapshot after rollback"
            if not any(p.startswith(f"{step.kind}/{step.name}:") for p in problems):
                problems.append(message)
        problems += [p for p in after.problems if p not in problems]
        if problems:
            raise RollbackIncompleteError(self.node.name, problems)

    # -- internals ---------------------------------------------------------------------

    async def _restore(
        self, objects: Sequence[Mapping[str, Any]]
    ) -> tuple[list[str], operations.RollbackPlan]:
        """Read the node, restore in one batch whatever differs from the snapshot, read
        it back: (the problems met, what still differs)."""
        request = {**snapshots.request_from_objects(objects), "maxContent": self._max_content()}
        problems: list[str] = []

        def restored(outcomes: Sequence[batch.Outcome]) -> None:
            # The batch keeps going after a failure: every other object is still worth
            # restoring.
            for outcome in outcomes:
                if not outcome.ok:
                    step = outcome.step
                    problems.append(
                        f"{step.kind}/{step.name}: restoring failed ({outcome.describe()})"
                    )

        async with self._connection() as connection:
            current = await self._gather(connection, request)
            plan = operations.rollback_steps(objects, current)
            problems += plan.problems
            for part in batch.split(plan.steps):
                await batch.run(connection, self._ssh, part, keep_going=True, on_results=restored)
            # Read back: anything still different is reported, not assumed restored.
            after = operations.rollback_steps(objects, await self._gather(connection, request))
        return problems, after

    async def _write_batch(
        self, connection: asyncssh.SSHClientConnection, steps: Sequence[Step], journal: StepJournal
    ) -> None:
        """Journal every step of the batch, then send it; steps are marked as the node
        reports them, those reported together in one commit. Raises StepFailedError at the
        first failed step (the ones before it were made, the ones after it were not run)
        and NodeError when the node stops answering (the steps not reported may or may not
        have been made)."""
        # Write-ahead: every intent is on disk, in one commit, before any of these steps
        # can reach the node.
        ids = journal.intend_many([Intent(s.kind, s.name, s.action, s.payload()) for s in steps])
        reported = 0
        failure: batch.Outcome | None = None

        def record(outcomes: Sequence[batch.Outcome]) -> None:
            nonlocal reported, failure
            reported += len(outcomes)
            made = [ids[o.index] for o in outcomes if o.ok]
            if made:
                journal.done_many(made)
            for outcome in outcomes:
                if outcome.ok:
                    continue
                failure = outcome
                rest = len(steps) - outcome.index - 1
                tail = f"; the {rest} step(s) after it in its batch were not run" if rest else ""
                journal.failed(ids[outcome.index], outcome.describe() + tail)

        try:
            await batch.run(connection, self._ssh, steps, keep_going=False, on_results=record)
        except NodeError as exc:
            if failure is None and reported < len(steps):
                rest = len(steps) - reported - 1
                tail = (
                    f" (nor whether the {rest} step(s) after it in its batch were)" if rest else ""
                )
                journal.failed(
                    ids[reported], f"{exc.message}; it may or may not have been made{tail}"
                )
            raise
        if failure is not None:
            raise StepFailedError(self.node.name, failure.step, failure.exit_status, failure.output)

    async def _read(self, request: Mapping[str, Any]) -> Mapping[str, Any]:
        async with self._connection() as connection:
            return await self._gather(connection, request)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncssh.SSHClientConnection]:
        if not self._holding:
            async with pool.connection(self._ssh) as lease:
                self._reused = lease.reused
                try:
                    yield lease.connection
                except StepFailedError:
                    raise
                except BaseException:
                    lease.discard()
                    raise
            return
        if self._held is None:
            self._held = await self._releases.enter_async_context(pool.connection(self._ssh))
            self._reused = self._held.reused
        try:
            yield self._held.connection
        except StepFailedError:
            raise  # the node answered; the connection is as good as before
        except BaseException:
            # After any other failure the connection may be dead or mid-command: nobody
            # uses it again, and a later phase (the rollback) takes a new one.
            await self._drop(discard=True)
            raise

    async def _drop(self, discard: bool = False) -> None:
        held, self._held = self._held, None
        if held is not None:
            if discard:
                held.discard()
            await self._releases.aclose()

    def _max_content(self) -> int:
        # At least the default: a file written under an earlier, higher setting must
        # still be snapshotted to be changed or put back.
        return max(checks.max_file_bytes(self.node), checks.DEFAULT_MAX_FILE_BYTES)

    def _sysctl_values(self) -> dict[str, str] | None:
        if not any(t.kind == "Sysctl" for t in self.targets):
            return None
        values = {
            str(doc.spec["key"]).replace("/", "."): essence.normalize_sysctl(doc.spec["value"])
            for doc in self.resources
            if doc.kind == "Sysctl" and doc.spec.get("state", "present") == "present"
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


def _output(result: asyncssh.SSHCompletedProcess) -> str:
    text = (str(result.stderr or "").strip() or str(result.stdout or "").strip())[-1000:]
    return text or "(no output)"
