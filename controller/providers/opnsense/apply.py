"""One OPNsense firewall's apply: a :class:`~controller.providers.base.NodeTransaction`.

The order, and why:

``snapshot()``
    One fresh bulk read. Each change is checked against it (a plan made against a
    firewall that has moved since is refused: its deletes could hit the wrong thing), an
    alias to delete must be used by no rule or alias that stays, and the rule set the
    apply would leave is checked for a self-lockout, all before any POST. On releases
    with the filter rollback API (up to 26.1, and only when rules change) a savepoint is
    taken, so that the filter apply can arm the firewall's own 60 s dead-man timer. Then
    the newest configuration backup is noted (after the savepoint, whose save makes one
    of the running configuration): ``revertBackup`` to it is the rollback on every
    release (it restores deleted objects too, at their uuids). The raw items of every
    touched object, deleted ones included, are kept to check a rollback against, and
    for each Goal a Tool resolves, the calls its rollback sends (see ``toolcalls``).
``write(journal)``
    add/set/del in dependency order: aliases (nested ones first) before the rules that
    use them; deletions the other way round, rules and host overrides before aliases,
    an alias before those its content names; two or more upserts of a kind in one bulk
    request where upstream has one (``bulk``). Each object is journaled before the
    request that carries it is sent; then ONE reconfigure/apply per subsystem touched,
    never one per object; then each goal's tool calls, in order, each journaled (its
    path and body digest) before it is sent.
``verify()``
    A fresh read, compared as a plan would: the written objects, and each goal's checks
    with its tool's check (a goal still unmet after its tool fails the verify).
``commit()``
    Only after a clean verify: cancels the dead-man timer. A controller that dies before
    this leaves the firewall to revert the rules by itself.
``rollback(snapshot)``
    From the snapshot alone (a new process can do it): ``revertBackup`` to the noted
    backup, ``revert/{revision}`` of the savepoint where there is one, the timer
    cancelled, each subsystem reloaded, the reloads among the tools' calls sent again
    and the tools' own rollback calls sent, then the touched objects are read back and
    compared with the snapshot's raw items.
"""

from __future__ import annotations

import asyncio
import contextlib
import graphlib
import ipaddress
import logging
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from controller.diagnostics import Diagnostic
from controller.errors import (
    ApiError,
    FazaiError,
    NodeError,
    UnreachableError,
    ValidationFailedError,
)
from controller.model.document import Document
from controller.model.tool import Resolution
from controller.plan.diff import Action, Observed
from controller.plan.diff import compare as compare_essences
from controller.providers.base import Change, Intent, Observation, StepJournal
from controller.providers.opnsense import (
    adoption,
    bulk,
    essence,
    goals,
    live,
    lockout,
    payload,
    references,
    toolcalls,
    validations,
)
from controller.providers.opnsense.client import OpnsenseClient
from controller.providers.opnsense.identity import alias_record, object_uuid
from controller.store.redact import is_secret_key

log = logging.getLogger(__name__)

SNAPSHOT_FORMAT = 1
# The last release with savepoint, apply/{revision}, cancelRollback and revert.
LAST_ROLLBACK_API = (26, 1)
BUILTIN_ALIAS_TYPES = {"external", "internal"}
BACKUPS = "core/backup/backups/this"
NAME_FIELD = ("metadata", "name")  # where a document is pointed at in messages


@dataclass(frozen=True)
class KindApi:
    subsystem: str  # alias, filter, unbound
    set: str
    add: str | None
    delete: str


KINDS: Mapping[str, KindApi] = {
    "FirewallAlias": KindApi(
        "alias", "firewall/alias/setItem", "firewall/alias/addItem", "firewall/alias/delItem"
    ),
    "FirewallRule": KindApi("filter", "firewall/filter/setRule", None, "firewall/filter/delRule"),
    "HostOverride": KindApi(
        "unbound", "unbound/settings/setHostOverride", None, "unbound/settings/delHostOverride"
    ),
}
SUBSYSTEM_KINDS = {k.subsystem: kind for kind, k in KINDS.items()}


# -- errors ------------------------------------------------------------------------------


class LockoutError(NodeError):
    """The apply would cut the controller off from the API; nothing was written."""

    def __init__(self, node: str, message: str, lockouts: Sequence[lockout.Lockout] = ()):
        self.lockouts = tuple(lockouts)
        super().__init__(node, message)


class AliasInUseError(NodeError):
    """An alias to delete is still used by a rule or alias that stays; nothing was
    written."""


class StalePlanError(NodeError):
    """The firewall changed since the plan; nothing was written."""

    retryable = True  # a new plan will do


class RefusedByFirewallError(ValidationFailedError):
    """The firewall refused a document's values; ``diagnostics`` pins them to file:line."""

    def __init__(
        self,
        node: str,
        message: str,
        validations: dict[str, list[str]],
        diagnostics: Sequence[Diagnostic],
        *,
        path: str = "",
    ) -> None:
        self.diagnostics = tuple(diagnostics)
        super().__init__(node, message, validations, path=path)


class RollbackError(NodeError):
    """A rollback could not be done, or left objects different from the snapshot;
    ``differences`` names them. The firewall needs a human."""

    def __init__(self, node: str, message: str, differences: Sequence[str] = ()) -> None:
        self.differences = tuple(differences)
        super().__init__(node, message)


# -- the plan of writes ------------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    """One API write: the change it makes, and what is sent."""

    change: Change
    kind: str
    name: str  # the change's name (metadata.name)
    action: str  # create, update, delete
    path: str
    body: Mapping[str, Any]
    uuid: str | None  # None: an alias created with addItem
    alias: str = ""  # the alias name, for aliases
    # what an alias's content names (as written, or as the firewall has it for a delete):
    # the order of writes among aliases
    nested: frozenset[str] = frozenset()

    @property
    def subsystem(self) -> str:
        return KINDS[self.kind].subsystem


@dataclass(frozen=True)
class Batch:
    """Consecutive upserts of one kind sent in one bulk request (see ``bulk``)."""

    kind: str
    path: str
    body: Mapping[str, Any]
    writes: tuple[Write, ...]
    creates: int  # how many of them the firewall does not have yet


Send = Write | Batch


def _sorted_aliases(writes: list[Write], reverse: bool) -> list[Write]:
    """Aliases a nested alias names go first (last when ``reverse``, for deletions)."""
    by_name = {w.alias: w for w in writes}
    graph = {w.alias: {n for n in w.nested if n in by_name and n != w.alias} for w in writes}
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError:
        order = sorted(by_name)  # the firewall refuses the cycle itself
    ordered = [by_name[n] for n in order]
    return list(reversed(ordered)) if reverse else ordered


# -- the transaction ---------------------------------------------------------------------


class OpnsenseTransaction:
    """One node's apply (see the module docstring). ``client`` must be open (inside its
    ``async with``) for the transaction's whole life; ``OpnsenseProvider.transaction``
    opens one.

    ``controller_address`` is the address the firewall sees the controller's API traffic
    come from; by default the Node's ``controllerAddress`` if it has one, else the local
    address of a connection to the API. ``controller_interfaces`` restricts the
    anti-lockout check to the interfaces that traffic may arrive on (default: every one).
    """

    def __init__(
        self,
        node: Document,
        changes: Sequence[Change],
        client: OpnsenseClient,
        *,
        controller_address: str | None = None,
        controller_interfaces: Sequence[str] | None = None,
    ) -> None:
        self.node = node
        self.changes = tuple(changes)
        self.client = client
        address = controller_address or node.spec.get("controllerAddress")
        self.controller_address = str(address) if address else None
        interfaces = controller_interfaces or node.spec.get("controllerInterfaces")
        self.controller_interfaces = tuple(interfaces) if interfaces else None
        self._firewall: live.LiveFirewall | None = None
        self._writes: list[Write] = []
        self._snapshot: dict[str, Any] | None = None
        self._armed: str | None = None  # the savepoint whose dead-man timer was armed
        self._verified = False
        self._verified_read: live.LiveFirewall | None = None
        self._created: dict[str, str] = {}  # alias name -> the uuid addItem answered
        self._tools: list[tuple[str, Resolution]] = []  # (goal, its tool), in change order

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def touched_subsystems(self) -> list[str]:
        order = ["alias", "filter", "unbound"]
        used = {
            KINDS[c.kind].subsystem
            for c in self.changes
            if c.action != Action.NOOP and c.kind in KINDS
        }
        return [s for s in order if s in used]

    # -- snapshot ------------------------------------------------------------------------

    async def snapshot(self) -> Mapping[str, Any]:
        for change in self.changes:
            if change.kind not in KINDS and change.kind != toolcalls.KIND:
                raise NodeError(self.name, f"{change.kind}/{change.name}: not an OPNsense kind")
        self._tools = [
            (c.name, toolcalls.resolution_for(self.name, c))
            for c in self.changes
            if c.kind == toolcalls.KIND and c.action != Action.NOOP
        ]
        # Rules and aliases always (the lockout and alias-in-use checks read them); host
        # overrides only when one changes; the goals' checks and their tools' checks.
        kinds = {"FirewallAlias", "FirewallRule"} | {
            c.kind for c in self.changes if c.kind in KINDS
        }
        firewall = await live.read(self.client, kinds, goals.paths(self._goal_documents()))
        self._firewall = firewall
        self._check_not_stale(firewall)
        self._writes = self._plan_writes(firewall)
        self._check_aliases_unused(firewall)
        # The lockout check reads the socket but sends nothing: still before any POST.
        await self._check_lockout(firewall)
        savepoint = None
        listing: Any = None
        if firewall.version <= LAST_ROLLBACK_API and "filter" in self.touched_subsystems:
            savepoint, listing = await self._savepoint()
        # One listing serves both: noted after the savepoint, whose save copies the
        # running configuration into a backup, the newest is that copy (and cannot be
        # the one a small backup count just pruned).
        if listing is None:
            listing = await self.client.get(BACKUPS)
        backup = self._newest_backup(listing)
        objects = [self._object_snapshot(firewall, w) for w in self._writes]
        tools = [toolcalls.record(goal, resolution) for goal, resolution in self._tools]
        self._snapshot = {
            "format": SNAPSHOT_FORMAT,
            "platform": "opnsense",
            "node": self.name,
            "firmware": firewall.version_text,
            "backup": backup,
            "savepoint": savepoint,
            "subsystems": sorted({w.subsystem for w in self._writes}),
            "objects": objects,
            "tools": tools,
            # A tool's rollback body may hold a secret: sealed in the journal, not masked.
            "escrow": toolcalls.secret_fields(tools),
        }
        return self._snapshot

    def _goal_documents(self) -> list[Document]:
        return [c.document for c in self.changes if c.kind == toolcalls.KIND and c.document]

    def _check_not_stale(self, firewall: live.LiveFirewall) -> None:
        """Refuse when an object differs from what the plan saw: the plan's changes were
        computed against another firewall, and acting on them could undo someone's work
        or delete the wrong thing."""
        moved = []
        for change in self.changes:
            if change.kind == toolcalls.KIND and change.document is not None:
                now = goals.observe(change.document, firewall.checks).live
            else:
                now = _live_essence(change.kind, self._find(firewall, change)[1])
            if now != (dict(change.observed.live) if change.observed.live is not None else None):
                moved.append(f"{change.kind}/{change.name}")
        if moved:
            raise StalePlanError(
                self.name,
                "the firewall changed since the plan for "
                + ", ".join(moved)
                + "; nothing was written: plan again",
            )

    def _check_aliases_unused(self, firewall: live.LiveFirewall) -> None:
        """Refuse, before any POST, to delete an alias that a rule or alias staying on the
        firewall still uses (the plan checked the documents; the firewall may have moved,
        and the firewall itself would refuse the delete half-way through)."""
        deleted = [w for w in self._writes if w.kind == "FirewallAlias" and w.action == "delete"]
        if not deleted:
            return
        planned: dict[references.Key, Document | None] = {
            _key(w): (None if w.action == "delete" else w.change.document) for w in self._writes
        }
        holders = references.holders_after(firewall, planned)
        problems = [
            references.in_use_message(w.alias, users)
            for w in deleted
            if (users := references.users_of(w.alias, _key(w), holders))
        ]
        if problems:
            raise AliasInUseError(
                self.name, "; ".join(problems) + "; nothing was written: plan again"
            )

    def _find(
        self, firewall: live.LiveFirewall, change: Change
    ) -> tuple[str | None, Mapping[str, Any] | None]:
        """The live (uuid, raw item) a change concerns, (None, None) when absent."""
        if change.kind == "FirewallAlias":
            wanted, expected = _alias_name(change), _owned_uuid(change)
            for uuid, item in firewall.of("FirewallAlias").items():
                if str(item.get("name")) == wanted:
                    # A prune reaches only the alias FazAI created: one made since under
                    # the same name is another object.
                    return (uuid, item) if expected in (None, uuid) else (None, None)
            return None, None
        items = firewall.of(change.kind)
        uuid = _target_uuid(self.name, change, items)
        return uuid, items.get(uuid)

    def _plan_writes(self, firewall: live.LiveFirewall) -> list[Write]:
        ups: dict[str, list[Write]] = {k: [] for k in KINDS}
        downs: dict[str, list[Write]] = {k: [] for k in KINDS}
        for change in self.changes:
            if change.action == Action.NOOP or change.kind not in KINDS:
                continue  # a goal writes no object: its tool's calls come after
            api = KINDS[change.kind]
            uuid, item = self._find(firewall, change)
            alias = _alias_name(change) if change.kind == "FirewallAlias" else ""
            if change.action == Action.DELETE:
                if uuid is None or item is None:
                    raise StalePlanError(self.name, f"{change.kind}/{change.name} is gone")
                if change.kind == "FirewallAlias" and essence.one(item.get("type")) in (
                    BUILTIN_ALIAS_TYPES
                ):
                    raise NodeError(self.name, f"refusing to delete built-in alias {alias!r}")
                nested = references.live_alias_uses(item) if alias else frozenset()
                downs[change.kind].append(
                    Write(
                        change,
                        change.kind,
                        change.name,
                        "delete",
                        f"{api.delete}/{uuid}",
                        {},
                        uuid,
                        alias,
                        nested,
                    )
                )
                continue
            if change.document is None:
                raise NodeError(self.name, f"{change.kind}/{change.name}: no document to apply")
            spec = change.document.spec
            if spec.get("state", "present") != "present":
                raise NodeError(
                    self.name,
                    f"{change.kind}/{change.name}: the document says state: absent; "
                    f"refusing to {change.action} it",
                )
            if change.kind == "FirewallAlias":
                body = payload.alias(spec)
                if uuid is None:
                    path, target = str(api.add), None
                else:
                    path, target = f"{api.set}/{uuid}", uuid
            else:
                body = (
                    payload.rule(spec)
                    if change.kind == "FirewallRule"
                    else (payload.host_override(spec))
                )
                path, target = f"{api.set}/{uuid}", uuid
            nested = references.alias_uses(spec) if alias else frozenset()
            ups[change.kind].append(
                Write(
                    change,
                    change.kind,
                    change.name,
                    str(change.action),
                    path,
                    body,
                    target,
                    alias,
                    nested,
                )
            )
        ordered = _sorted_aliases(ups["FirewallAlias"], reverse=False)
        ordered += ups["FirewallRule"] + ups["HostOverride"]
        ordered += downs["FirewallRule"] + downs["HostOverride"]
        ordered += _sorted_aliases(downs["FirewallAlias"], reverse=True)
        return ordered

    def _object_snapshot(self, firewall: live.LiveFirewall, write: Write) -> dict[str, Any]:
        _, item = self._find(firewall, write.change)
        return {
            "kind": write.kind,
            "name": write.name,
            "alias": write.alias,
            "uuid": write.uuid,
            "before": _clean(item) if item is not None else None,
        }

    def _newest_backup(self, answer: Any) -> str:
        items = answer.get("items") if isinstance(answer, Mapping) else None
        if not isinstance(items, list) or not items:
            raise NodeError(self.name, "the firewall lists no configuration backup to roll back to")

        def when(item: Any) -> float:
            try:
                return float(item.get("time", 0)) if isinstance(item, Mapping) else 0.0
            except (TypeError, ValueError):
                return 0.0

        newest = max(items, key=when)
        backup_id = str(newest.get("id", "")) if isinstance(newest, Mapping) else ""
        if not backup_id:
            raise NodeError(self.name, "the firewall's newest configuration backup has no id")
        return backup_id

    async def _savepoint(self) -> tuple[str | None, Any]:
        """(the savepoint's revision, None when its timer would restore nothing; the
        backup listing made after it)."""
        answer = await self.client.post("firewall/filter/savepoint")
        revision = str(answer.get("revision", "")) if isinstance(answer, Mapping) else ""
        listing = await self.client.get(BACKUPS)
        if not revision:
            log.warning("%s: savepoint answered no revision; no dead-man timer", self.name)
            return None, listing
        # Upstream bug (core issue 10721): the revision may match no backup, and then the
        # timer and revert/{revision} silently restore nothing. Better to know.
        times = (
            {str(i.get("time")) for i in listing.get("items", []) if isinstance(i, Mapping)}
            if isinstance(listing, Mapping)
            else set()
        )
        if revision not in times:
            log.warning(
                "%s: savepoint %s matches no backup; the firewall's rollback timer would "
                "restore nothing, so FazAI relies on its own rollback only",
                self.name,
                revision,
            )
            return None, listing
        return revision, listing

    # -- anti-lockout --------------------------------------------------------------------

    async def _check_lockout(self, firewall: live.LiveFirewall) -> None:
        rule_or_alias = {w.kind for w in self._writes} & {"FirewallRule", "FirewallAlias"}
        if not rule_or_alias:
            return  # host overrides alone never reload the filter
        path = await self.management_path()
        before_rules, before_aliases = _rule_set(firewall, self.name, [])
        after_rules, after_aliases = _rule_set(firewall, self.name, self._writes)
        found = lockout.find_lockouts(
            after_rules,
            after_aliases,
            path,
            before=before_rules,
            aliases_before=before_aliases,
            interfaces=self.controller_interfaces,
        )
        if found:
            details = "; ".join(f.describe(path) for f in found)
            raise LockoutError(
                self.name,
                f"refusing to apply, nothing was written: {details}. Add a pass rule for "
                "this path that is evaluated first, or set controllerAddress on the Node if "
                "the firewall sees the controller under another address",
                found,
            )

    async def management_path(self) -> lockout.ManagementPath:
        """The controller's path to the API: the local and remote ends of a TCP connection
        to it (routing picks the same source address as the API client's), or the Node's
        ``controllerAddress`` as the source."""
        url = httpx.URL(self.client.target.url)
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        if _proxied(url) and self.controller_address is None:
            raise LockoutError(
                self.name,
                f"refusing to apply: the API is reached through a proxy, so the address the "
                f"firewall sees is unknown; set controllerAddress on the Node {self.name}",
            )
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), self.client.target.timeout
            )
        except (OSError, TimeoutError) as exc:
            raise UnreachableError(self.name, f"cannot connect to {host}:{port}: {exc}") from exc
        try:
            local = writer.get_extra_info("sockname")
            remote = writer.get_extra_info("peername")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        destination = ipaddress.ip_address(str(remote[0]).split("%")[0])
        source_text = self.controller_address or str(local[0]).split("%")[0]
        try:
            source = ipaddress.ip_address(source_text)
        except ValueError as exc:
            raise LockoutError(
                self.name, f"controllerAddress {source_text!r} is not an IP address"
            ) from exc
        # An IPv4-mapped IPv6 socket address is the IPv4 address the firewall sees.
        if isinstance(destination, ipaddress.IPv6Address) and destination.ipv4_mapped:
            destination = destination.ipv4_mapped
        if isinstance(source, ipaddress.IPv6Address) and source.ipv4_mapped:
            source = source.ipv4_mapped
        return lockout.ManagementPath(source, destination, int(port))

    # -- write ---------------------------------------------------------------------------

    async def write(self, journal: StepJournal) -> None:
        if self._snapshot is None or self._firewall is None:
            raise RuntimeError("OpnsenseTransaction.write() before snapshot()")
        reloads = self._reloads()
        sends = self._sends(self._firewall)
        # Every call this transaction makes is known now: all intended in one journal
        # commit, before the first of them is sent. A batch journals each of its objects.
        calls = [
            Intent(w.kind, w.name, w.action, _post_payload(w, send))
            for send in sends
            for w in _members(send)
        ]
        calls += [Intent("OPNsense", sub, "reconfigure", {"path": path}) for sub, path in reloads]
        calls += [i for goal, tool in self._tools for i in toolcalls.intents(goal, tool)]
        steps = journal.intend_many(calls)
        writes = len(self._writes)
        # Steps the firewall answered for are marked done in one commit when the writes
        # are over (or before a failure is recorded): a crash before that leaves them
        # intended, which the rollback from the snapshot covers.
        made: list[int] = []
        at = 0
        try:
            for send in sends:
                if isinstance(send, Batch):
                    mine = steps[at : at + len(send.writes)]
                    made += await self._post_batch(send, mine, journal)
                    at += len(send.writes)
                else:
                    await self._post(send, steps[at], journal)
                    made.append(steps[at])
                    at += 1
        finally:
            journal.done_many(made)
        after = writes + len(reloads)
        await self._apply(journal, reloads, steps[writes:after])
        await self._run_tools(journal, steps[after:])

    async def _run_tools(self, journal: StepJournal, steps: Sequence[int]) -> None:
        """Each goal's tool calls, in order, each already intended as its step."""
        made: list[int] = []
        at = 0
        try:
            for goal, resolution in self._tools:
                for index, call in enumerate(resolution.apply.calls, 1):
                    step = steps[at]
                    try:
                        await toolcalls.send(
                            self.client, self.name, goal, resolution.tool, index, call
                        )
                    except toolcalls.ToolCallError as exc:
                        journal.failed(step, exc.message)
                        raise
                    made.append(step)
                    at += 1
        finally:
            journal.done_many(made)

    # -- bulk ----------------------------------------------------------------------------

    def _sends(self, firewall: live.LiveFirewall) -> list[Send]:
        """The writes in order, each run of upserts of one kind that a bulk endpoint takes
        as one batch."""
        out: list[Send] = []
        i = 0
        while i < len(self._writes):
            first = self._writes[i]
            j = i
            while (
                j < len(self._writes)
                and self._writes[j].kind == first.kind
                and (self._writes[j].action == "delete") == (first.action == "delete")
            ):
                j += 1
            run = self._writes[i:j]
            if first.action == "delete" or len(run) < bulk.BULK_MIN:
                out += run
            elif first.kind == "FirewallAlias":
                out += self._alias_batch(firewall, run)
            elif first.kind == "FirewallRule" and firewall.version >= bulk.RULE_UPLOAD_SINCE:
                out += self._rule_batches(firewall, run)
            else:
                out += run
            i = j
        return out

    def _alias_batch(self, firewall: live.LiveFirewall, run: list[Write]) -> list[Send]:
        # The import matches by name: every create must name no alias on the firewall and
        # every update the alias at its uuid, or the per-object calls keep their checks.
        names = {str(i.get("name")): u for u, i in firewall.of("FirewallAlias").items()}
        for w in run:
            if str(w.body["alias"].get("name")) != w.alias:
                return list(run)
            if (w.uuid is None and w.alias in names) or (
                w.uuid is not None and names.get(w.alias) != w.uuid
            ):
                return list(run)
        body = bulk.alias_import_body([(w.alias, w.body["alias"]) for w in run])
        creates = sum(w.uuid is None for w in run)
        return [Batch("FirewallAlias", bulk.ALIAS_IMPORT, body, tuple(run), creates)]

    def _rule_batches(self, firewall: live.LiveFirewall, run: list[Write]) -> list[Send]:
        """Runs of rules that carry the same fields (the CSV has one header) as batches."""
        out: list[Send] = []
        live_rules = firewall.of("FirewallRule")
        i = 0
        while i < len(run):
            keys = list(run[i].body["rule"])
            j = i
            while j < len(run) and list(run[j].body["rule"]) == keys:
                j += 1
            group = run[i:j]
            payload = (
                bulk.rules_csv([(str(w.uuid), w.body["rule"]) for w in group])
                if len(group) >= bulk.BULK_MIN
                else None
            )
            if payload is None:
                out += group
            else:
                creates = sum(str(w.uuid) not in live_rules for w in group)
                batch = Batch("FirewallRule", bulk.RULE_UPLOAD, {"payload": payload}, tuple(group),
                              creates)  # fmt: skip
                out.append(batch)
            i = j
        return out

    async def _post_batch(
        self, batch: Batch, steps: Sequence[int], journal: StepJournal
    ) -> list[int]:
        """Send one batch; the steps done. Any refusal fails the whole batch: a rule
        upload may have saved the rows it did not refuse, which the rollback undoes."""
        try:
            answer = await self.client.post(batch.path, batch.body)
            if batch.kind == "FirewallAlias":
                names = [w.alias for w in batch.writes]
                refusals = bulk.alias_import_result(self.name, answer, names, batch.creates)
            else:
                uuids = [str(w.uuid) for w in batch.writes]
                refusals = bulk.rule_upload_result(self.name, answer, uuids, batch.creates)
        except FazaiError as exc:
            text = exc.message if isinstance(exc, NodeError) else str(exc)
            for step in steps:
                journal.failed(step, text)
            raise
        if not refusals:
            return list(steps)
        if batch.kind == "FirewallRule" and all(r.index is None for r in refusals):
            # Only rules already on the firewall fail its validation: upstream then saves
            # nothing, and setRule validates the rule it is given alone.
            return await self._one_by_one(batch, steps, journal, refusals)
        error = self._refused_batch(batch, refusals)
        for step in steps:
            journal.failed(step, error.message)
        raise error

    async def _one_by_one(
        self,
        batch: Batch,
        steps: Sequence[int],
        journal: StepJournal,
        refusals: Sequence[bulk.Refusal],
    ) -> list[int]:
        reasons = "; ".join(f"{r.field}: {r.message}" for r in refusals[:3])
        log.warning(
            "%s: %s refused because of rules already on the firewall (%s); sending the "
            "%d rules one by one",
            self.name, batch.path, reasons, len(batch.writes),
        )  # fmt: skip
        for step in steps:
            journal.failed(
                step, f"refused in bulk because of other rules ({reasons}); resent one by one"
            )
        again = journal.intend_many(
            [Intent(w.kind, w.name, w.action, _post_payload(w, w)) for w in batch.writes]
        )
        made: list[int] = []
        try:
            for write, step in zip(batch.writes, again, strict=True):
                await self._post(write, step, journal)
                made.append(step)
        finally:
            journal.done_many(made)
        return []

    def _refused_batch(
        self, batch: Batch, refusals: Sequence[bulk.Refusal]
    ) -> RefusedByFirewallError:
        """One error naming every refused document (file:line of each field)."""
        wrapper = "alias" if batch.kind == "FirewallAlias" else "rule"
        per: dict[int, dict[str, list[str]]] = {}
        others: list[str] = []
        for r in refusals:
            if r.index is None:
                others.append(f"a {batch.kind} already on the firewall fails its validation: "
                              f"{r.field}: {r.message}")  # fmt: skip
            else:
                per.setdefault(r.index, {}).setdefault(f"{wrapper}.{r.field}", []).append(r.message)
        lines: list[str] = []
        found: list[Diagnostic] = []
        merged: dict[str, list[str]] = {}
        for index, fields in sorted(per.items()):
            write = batch.writes[index]
            document = write.change.document
            exc = ValidationFailedError(self.name, "refused", fields, path=batch.path)
            pinned = validations.diagnostics(document, exc) if document is not None else []
            found += pinned
            lines += [str(d) for d in pinned] or [
                f"{write.kind}/{write.name}: {k}: {' '.join(v)}" for k, v in fields.items()
            ]
            merged.update({f"{write.kind}/{write.name}: {k}": v for k, v in fields.items()})
        lines += others
        return RefusedByFirewallError(
            self.name,
            "the firewall refused a change; rolling back:\n" + "\n".join(lines),
            merged,
            found,
            path=batch.path,
        )

    async def _post(self, write: Write, step: int, journal: StepJournal) -> None:
        try:
            answer = await self.client.post(write.path, write.body)
            _expect_result(self.name, write, answer)
        except ValidationFailedError as exc:
            error = self._refused(write, exc)
            journal.failed(step, error.message)
            raise error from exc
        except FazaiError as exc:
            journal.failed(step, exc.message if isinstance(exc, NodeError) else str(exc))
            raise
        if write.kind == "FirewallAlias" and write.uuid is None and isinstance(answer, Mapping):
            # addItem answers the new alias's uuid: the inventory records it with the name.
            self._created[write.alias] = str(answer.get("uuid") or "")

    def platform_ids(self) -> Mapping[tuple[str, str], str]:
        """The object each change wrote: a rule's or host override's uuid; an alias's name
        and uuid (the one addItem answered, else the one verify read under its name)."""
        out: dict[tuple[str, str], str] = {}
        for write in self._writes:
            if write.action == "delete":
                continue
            if write.kind != "FirewallAlias":
                out[(write.kind, write.name)] = str(write.uuid)
                continue
            uuid = write.uuid or self._created.get(write.alias) or self._verified_uuid(write)
            out[(write.kind, write.name)] = alias_record(write.alias, uuid or "")
        return out

    def _verified_uuid(self, write: Write) -> str:
        if self._verified_read is None:
            return ""
        for uuid, item in self._verified_read.of("FirewallAlias").items():
            if str(item.get("name")) == write.alias:
                return uuid
        return ""

    def _refused(self, write: Write, exc: ValidationFailedError) -> RefusedByFirewallError:
        document = write.change.document
        found = validations.diagnostics(document, exc) if document is not None else []
        lines = [str(d) for d in found] or [f"{write.kind}/{write.name}: {exc.message}"]
        return RefusedByFirewallError(
            self.name,
            "the firewall refused a change; rolling back:\n" + "\n".join(lines),
            exc.validations,
            found,
            path=exc.path,
        )

    def _reloads(self) -> list[tuple[str, str]]:
        """One reload per subsystem touched, as (subsystem, path). With a savepoint the
        filter goes first with apply/{revision}: up to 26.1 an alias reconfigure reloads the
        filter too, and it must not make the new rules live before the dead-man timer is
        armed."""
        subsystems = sorted({w.subsystem for w in self._writes})
        savepoint = self._snapshot.get("savepoint") if self._snapshot else None
        calls: list[tuple[str, str]] = []
        if "filter" in subsystems and savepoint:
            calls.append(("filter", f"firewall/filter/apply/{savepoint}"))
        if "alias" in subsystems:
            calls.append(("alias", "firewall/alias/reconfigure"))
        if "filter" in subsystems and not savepoint:
            calls.append(("filter", "firewall/filter/apply"))
        if "unbound" in subsystems:
            calls.append(("unbound", "unbound/service/reconfigure"))
        return calls

    async def _apply(
        self, journal: StepJournal, reloads: Sequence[tuple[str, str]], steps: Sequence[int]
    ) -> None:
        """The reloads, each already intended as its step."""
        made: list[int] = []
        try:
            for (_, path), step in zip(reloads, steps, strict=True):
                try:
                    answer = await self.client.post(path)
                    _expect_status(self.name, path, answer)
                except FazaiError as exc:
                    journal.failed(step, exc.message if isinstance(exc, NodeError) else str(exc))
                    raise
                if path.startswith("firewall/filter/apply/"):
                    self._armed = path.rsplit("/", 1)[1]
                made.append(step)
        finally:
            journal.done_many(made)

    # -- verify and commit ---------------------------------------------------------------

    async def verify(self) -> Observation:
        from controller.providers.opnsense.provider import compare, kinds_for

        documents = [c.document for c in self.changes if c.document is not None]
        objects = [d for d in documents if not goals.is_goal(d)]
        # What the changed documents need, as a plan reads them; a rule's aliases too;
        # the goals' checks and their tools' (a goal alone needs no object type).
        kinds = kinds_for(objects) if objects else set()
        kinds |= {c.kind for c in self.changes if c.kind in KINDS}
        if "FirewallRule" in kinds:
            kinds.add("FirewallAlias")
        firewall = await live.read(self.client, kinds, goals.paths(documents))
        self._verified_read = firewall
        observation = compare(self.name, documents, firewall)
        resources: dict[Document, Observed] = dict(observation.resources)
        for change in self.changes:
            if change.document is None:
                # A prune: the object must be gone. A stand-in document carries it.
                _, item = self._find(firewall, change)
                stand_in = Document(change.kind, change.name, {})
                resources[stand_in] = Observed(None, _live_essence(change.kind, item))
        self._verified = all(compare_essences(o)[0] is Action.NOOP for o in resources.values())
        return Observation(resources, observation.unmanaged)

    async def commit(self) -> None:
        if not self._verified:
            raise NodeError(self.name, "refusing to commit: the apply was not verified")
        if self._armed is None:
            return
        path = f"firewall/filter/cancelRollback/{self._armed}"
        answer = await self.client.post(path)
        status = str(answer.get("status", "")) if isinstance(answer, Mapping) else ""
        if "error" in status.lower():
            # The timer is not ours (another one ran) or it already fired: the rules may
            # be reverted, or be reverted soon. The engine must roll back.
            raise ApiError(
                self.name,
                f"POST /api/{path}: the firewall's rollback timer could not be cancelled "
                f"({status.strip()!r}); the rules may have been reverted",
                path=path,
            )
        self._armed = None

    # -- rollback ------------------------------------------------------------------------

    async def rollback(self, snapshot: Mapping[str, Any]) -> None:
        if snapshot.get("format") != SNAPSHOT_FORMAT or snapshot.get("platform") != "opnsense":
            raise RollbackError(self.name, "the snapshot is not an OPNsense snapshot FazAI knows")
        if snapshot.get("node") != self.name:
            raise RollbackError(self.name, f"the snapshot belongs to node {snapshot.get('node')!r}")
        backup = str(snapshot.get("backup") or "")
        path = f"core/backup/revertBackup/{backup}"
        answer = await self.client.post(path)
        status = str(answer.get("status", "")) if isinstance(answer, Mapping) else ""
        if status != "reverted":
            raise RollbackError(
                self.name, f"POST /api/{path} answered {status!r}: backup {backup} not restored"
            )
        savepoint = snapshot.get("savepoint")
        problems: list[str] = []
        if savepoint:
            revert = f"firewall/filter/revert/{savepoint}"
            answer = await self.client.post(revert)
            status = str(answer.get("status", "")) if isinstance(answer, Mapping) else ""
            if status.strip().lower() != "ok":
                problems.append(f"{revert} answered {status.strip()!r}")
            # Stop the dead-man timer now that the rules are back: left running, it
            # would block the next apply's timer (flock) until it fires.
            with contextlib.suppress(ApiError):
                await self.client.post(f"firewall/filter/cancelRollback/{savepoint}")
        self._armed = None
        subsystems = [s for s in ("alias", "filter", "unbound") if s in snapshot["subsystems"]]
        reloaded: set[str] = set()
        for subsystem in subsystems:
            reload = {
                "alias": "firewall/alias/reconfigure",
                "filter": "firewall/filter/apply",
                "unbound": "unbound/service/reconfigure",
            }[subsystem]
            answer = await self.client.post(reload)
            _expect_status(self.name, reload, answer)
            reloaded.add(reload)
        problems += await self._undo_tools(snapshot, reloaded)
        problems += await self._differences(snapshot)
        if problems:
            raise RollbackError(
                self.name,
                "the rollback left the firewall different from the snapshot: "
                + "; ".join(problems),
                problems,
            )

    async def _undo_tools(self, snapshot: Mapping[str, Any], reloaded: set[str]) -> list[str]:
        """After the revert: the reloads the tools' calls made, sent again (what they made
        live is now the restored configuration; each once, none the objects' reloads just
        sent), then each tool's own rollback calls; what failed, for the RollbackError."""
        problems: list[str] = []
        for entry in snapshot.get("tools", []):
            label = f"{toolcalls.KIND}/{entry.get('goal')}: Tool/{entry.get('tool')}"
            for part in ("reloads", "rollback"):
                for call in toolcalls.stored_calls(entry, part):
                    if part == "reloads":
                        if call.path in reloaded:
                            continue
                        reloaded.add(call.path)
                    if not goals.plain_path(call.path):
                        problems.append(f"{label}: {call.path!r} is not a plain API path, not sent")
                        continue
                    if toolcalls.holds_mask(call.body):
                        # A secret the escrow could not open reads as masked: sending
                        # "***" would set it on the firewall.
                        problems.append(
                            f"{label}: POST /api/{call.path} not sent: its body holds a "
                            "secret the journal's escrow could not open"
                        )
                        continue
                    try:
                        answer = await self.client.post(call.path, dict(call.body))
                    except FazaiError as exc:
                        text = exc.message if isinstance(exc, NodeError) else str(exc)
                        problems.append(f"{label}: POST /api/{call.path} failed: {text}")
                        continue
                    why = toolcalls.failure(answer)
                    if why is not None:
                        problems.append(f"{label}: POST /api/{call.path}: {why}")
        return problems

    async def _differences(self, snapshot: Mapping[str, Any]) -> list[str]:
        objects = list(snapshot.get("objects", []))
        kinds = {str(o["kind"]) for o in objects}
        if not kinds:
            return []
        firewall = await live.read(self.client, kinds)
        found = []
        for entry in objects:
            kind, before = str(entry["kind"]), entry.get("before")
            label = f"{kind}/{entry['name']}"
            items = firewall.of(kind)
            now: Mapping[str, Any] | None
            if entry.get("uuid"):
                now = items.get(str(entry["uuid"]))
            else:
                now = next(
                    (i for i in items.values() if str(i.get("name")) == entry.get("alias")), None
                )
            if before is None and now is not None:
                found.append(f"{label} still exists")
            elif before is not None and now is None:
                found.append(f"{label} is missing")
            elif before is not None and now is not None and _clean(now) != before:
                found.append(f"{label} differs from its snapshot")
        return found


# -- helpers -----------------------------------------------------------------------------


def _key(write: Write) -> references.Key:
    if write.kind == "FirewallAlias":
        return references.alias_key(write.uuid, write.alias)
    return (write.kind, str(write.uuid))


def _members(send: Send) -> tuple[Write, ...]:
    return send.writes if isinstance(send, Batch) else (send,)


def _post_payload(write: Write, send: Send) -> dict[str, Any]:
    """What the journal records for one object: its own fields, and the request that
    carries them (its own, or the batch's)."""
    return {"method": "POST", "path": send.path, "body": dict(write.body)}


def _target_uuid(node: str, change: Change, items: Mapping[str, Any]) -> str:
    """The rule's or host override's uuid: the existing object the plan adopted, the one
    the document names with ``spec.adopt.uuid`` (or a prune's owned ``spec.uuid``), the
    one the inventory records for it while it exists, else the one FazAI derives."""
    spec = change.document.spec if change.document is not None else {}
    named = adoption.pruned(spec) or adoption.explicit(spec)
    owned = adoption.recorded(spec, node)
    if named is None and owned is not None and owned in items:
        named = owned  # the object the inventory owns for it, as the plan bound it
    return change.observed.adopt or named or object_uuid(node, change.kind, change.name)


def _owned_uuid(change: Change) -> str | None:
    """The uuid a pruned alias had when FazAI recorded it (None: any alias of its name)."""
    spec = change.document.spec if change.document is not None else {}
    uuid = spec.get("uuid") or adoption.explicit(spec)  # or the one a document adopts
    return str(uuid) if uuid else None


def _alias_name(change: Change) -> str:
    if change.document is not None:
        return str(change.document.spec["name"])
    live_side = change.observed.live
    if live_side is not None and live_side.get("name"):
        return str(live_side["name"])
    return change.name


def _live_essence(kind: str, item: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if item is None:
        return None
    reader = {
        "FirewallAlias": essence.live_alias,
        "FirewallRule": essence.live_rule,
        "HostOverride": essence.live_host,
    }[kind]
    return reader(item)


def _clean(item: Mapping[str, Any]) -> dict[str, Any]:
    """A raw item without the fields that hold secrets (URL alias credentials): snapshots
    are stored, and must hold none."""
    return {k: v for k, v in item.items() if not is_secret_key(str(k))}


def _proxied(url: httpx.URL) -> bool:
    """Whether httpx (which honours the proxy environment) would go through a proxy."""
    proxies = urllib.request.getproxies()
    if not any(k in proxies for k in (url.scheme, "all")):
        return False
    return not urllib.request.proxy_bypass(url.host)


def _expect_result(node: str, write: Write, answer: Any) -> None:
    result = str(answer.get("result", "")) if isinstance(answer, Mapping) else ""
    wanted = "deleted" if write.action == "delete" else "saved"
    if result != wanted:
        raise ApiError(
            node,
            f"POST /api/{write.path}: {write.kind}/{write.name}: the firewall answered "
            f"{result or answer!r} instead of {wanted!r}",
            path=write.path,
        )


def _expect_status(node: str, path: str, answer: Any) -> None:
    status = str(answer.get("status", "")) if isinstance(answer, Mapping) else ""
    if status.strip().lower() != "ok":
        raise ApiError(node, f"POST /api/{path} answered {status.strip()!r}", path=path)


def _rule_set(
    firewall: live.LiveFirewall, node: str, writes: Iterable[Write]
) -> tuple[list[lockout.Rule], dict[str, lockout.Alias]]:
    """The rules and aliases as the firewall has them, with ``writes`` applied."""
    aliases = {
        str(item.get("name")): _alias(essence.live_alias(item))
        for item in firewall.of("FirewallAlias").values()
    }
    rules: dict[str, lockout.Rule] = {}
    for uuid, item in firewall.of("FirewallRule").items():
        description = str(item.get("description") or "")
        rules[uuid] = lockout.Rule(
            uuid,
            essence.live_rule(item),
            f"rule {uuid}" + (f" ({description!r})" if description else "") + " on the firewall",
            interfacenot=essence.flag(item.get("interfacenot")),
            statetype=essence.one(item.get("statetype")),
        )
    highest = max((r.sequence for r in rules.values()), default=1)
    for write in writes:
        document = write.change.document
        if write.kind == "FirewallAlias":
            if write.action == "delete":
                aliases.pop(write.alias, None)
            elif document is not None:
                aliases[write.alias] = _alias(essence.desired_alias(document.spec))
        elif write.kind == "FirewallRule" and write.uuid is not None:
            if write.action == "delete":
                rules.pop(write.uuid, None)
                continue
            if document is None:
                continue
            fields = essence.desired_rule(document.spec)
            previous = rules.get(write.uuid)
            if "sequence" not in fields:
                # What the firewall will give it: the sequence it has, else its default
                # (1 up to 25.1, the highest plus 100 from 25.7).
                if previous is not None:
                    fields["sequence"] = str(previous.sequence)
                elif firewall.version < (25, 7):
                    fields["sequence"] = "1"
                else:
                    highest += 100
                    fields["sequence"] = str(highest)
            rules[write.uuid] = lockout.Rule(
                write.uuid,
                fields,
                f"{document.subject} ({document.location(NAME_FIELD)})",
                changed=True,
                # FazAI sends neither field: the firewall keeps what it had.
                interfacenot=previous.interfacenot if previous else False,
                statetype=previous.statetype if previous else "",
            )
    return list(rules.values()), aliases


def _alias(view: Mapping[str, Any]) -> lockout.Alias:
    return lockout.Alias(
        str(view["name"]),
        str(view["type"]),
        tuple(str(c) for c in view.get("content", [])),
        bool(view.get("enabled", True)),
    )
