"""The Linux provider: one round trip per node for all facts, over the node's kept SSH
connection when one is kept (see :mod:`~controller.providers.linux.pool`)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from controller.errors import FactsError
from controller.model import probes
from controller.model.document import Document
from controller.providers.base import Observation, Part, Probed
from controller.providers.linux import essence, pool, ssh
from controller.providers.linux.ownership import OWNERSHIP
from controller.source.tree import SourceTree

if TYPE_CHECKING:
    import asyncssh

    from controller.providers.base import Change
    from controller.providers.linux.apply import LinuxTransaction


SSH_PORT = 22


@cache
def facts_command() -> str:
    source = resources.files("controller.providers.linux").joinpath("remote_facts.py").read_text()
    # -I -S: no user site, no .pth processing; the script needs only the standard library.
    return "python3 -I -S -c " + shlex.quote(source)


def check_budget(command_timeout: float) -> float:
    """The seconds a node may spend on Goal checks in one fact read: the node's command
    timeout less room for the other facts and the round trip (a quarter of it, at least
    15 s), and at least 1 s. The checks' own timeouts may add up to more; those the budget leaves no
    time for fail as not run, rather than the whole read timing out."""
    return max(1.0, min(command_timeout - 15, 0.75 * command_timeout))


class LinuxProvider:
    platform = "linux"
    ownership = OWNERSHIP
    # Its transactions can write their steps again and say what that changed
    # (LinuxTransaction.reapply): what the agent's verification needs.
    reapplies = True

    def machine_key(self, spec: Mapping[str, Any]) -> str | None:
        """``ADDRESS:PORT``: SSH's port spelled out, brackets and case dropped."""
        address = spec.get("address")
        if not isinstance(address, str) or not address:
            return None
        host = address.strip().lower().removeprefix("[").removesuffix("]")
        return f"{host}:{spec.get('port') or SSH_PORT}"

    async def observe(
        self,
        node: Document,
        resources: Sequence[Document],
        tree: SourceTree,
        connection: asyncssh.SSHClientConnection | None = None,
    ) -> Observation:
        """``connection``: read over this one (verify's new login), not the kept one."""
        request = essence.FactRequest()
        readers = {doc: essence.prepare(doc, tree, request) for doc in resources}
        answer = await self.gather(node, request, connection)
        # Linux objects cannot be listed exhaustively (every file?), so none is unmanaged.
        return Observation({doc: read(answer) for doc, read in readers.items()})

    async def observe_many(self, node: Document, parts: Sequence[Part]) -> list[Observation]:
        """One fact request holding what every part needs (its file and nft entries are
        positional, its package/user/sysctl/service names are sets), one SSH round trip,
        then each part's readers take their share of the answer."""
        request = essence.FactRequest()
        readers = [{doc: essence.prepare(doc, tree, request) for doc in res} for res, tree in parts]
        answer = await self.gather(node, request)
        return [Observation({doc: read(answer) for doc, read in part.items()}) for part in readers]

    async def gather(
        self,
        node: Document,
        request: essence.FactRequest,
        connection: asyncssh.SSHClientConnection | None = None,
    ) -> Mapping[str, Any]:
        target = ssh.SshTarget.from_node(node)
        request.check_budget = check_budget(target.command_timeout)
        request.watchdog = target.command_timeout
        if connection is None:
            result = await pool.read(target, facts_command(), request.to_json())
        else:
            result = await ssh.run(connection, target, facts_command(), request.to_json())
        stderr = str(result.stderr or "").strip()
        if result.exit_status == 127:
            raise FactsError(
                node.name, "python3 is not installed on the node; FazAI reads facts with it"
            )
        if result.exit_status != 0:
            raise FactsError(
                node.name, f"fact gathering failed (exit {result.exit_status}): {stderr[-500:]}"
            )
        try:
            answer: Mapping[str, Any] = json.loads(str(result.stdout))
        except ValueError as exc:
            raise FactsError(node.name, "fact gathering printed no valid JSON") from exc
        return answer

    async def probe(self, node: Document, argv: Sequence[str], timeout: float, keep: int) -> Probed:
        """Run one read-only probe (it must pass the allow-list) in a fact read; its exit
        status and the first ``keep`` characters of its standard output (unmasked: the
        caller masks them before anyone sees them)."""
        refused = probes.refusal(list(argv))
        if refused is not None:
            raise ValueError(f"not a read-only probe: {refused}")
        request = essence.FactRequest()
        request.checks.append({"argv": list(argv), "timeout": timeout, "keepOutput": keep})
        answer = await self.gather(node, request)
        answers = answer.get("checks") or [{}]
        got = answers[0] if isinstance(answers, list) and answers else {}
        if "error" in got:
            return Probed(None, "", str(got["error"]))
        if got.get("timed_out"):
            return Probed(None, str(got.get("output", "")), f"timed out after {timeout:g}s")
        code = got.get("exit")
        return Probed(
            code if isinstance(code, int) else None,
            str(got.get("output", "")),
            None,
            bool(got.get("truncated")),
        )

    def transaction(
        self,
        node: Document,
        changes: Sequence[Change],
        resources: Sequence[Document],
        tree: SourceTree,
        owned: Mapping[tuple[str, str], str] | None = None,
    ) -> LinuxTransaction:
        """The apply of ``changes`` on ``node``. ``resources`` are all the node's documents
        (verify reads them; the persisted sysctl file holds every Sysctl among them);
        ``owned`` maps (kind, name) to the recorded key of owned objects, for deletes that
        have no document any more."""
        from controller.providers.linux.apply import LinuxTransaction  # apply imports us

        return LinuxTransaction.build(node, changes, resources, tree, owned)


PROVIDER = LinuxProvider()
