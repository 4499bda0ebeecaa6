"""A Tool's API calls in an OPNsense transaction: what is journaled, what is sent, and
what the snapshot keeps to undo them.

A goal's tool runs after the objects' writes and reloads: each call is a POST through
the production client, intended in the journal before it is sent. The journal holds the
call's path and the sha256 of its body, never the body (a tool's params may be secrets).
A call the firewall refuses (an HTTP error, ``result: failed`` with or without its
validations, a ``status`` that says it failed) raises :class:`ToolCallError`, and the
engine rolls the node back.

The rollback is the transaction's own (``revertBackup`` to the noted backup restores
every setting a call saved); what a restore of config.xml does not undo is what a call
made live, so the snapshot keeps, for each tool, the reloads among its calls (action
``reconfigure``, ``apply``, ``reload`` or ``restart``), sent again after the revert, and
the tool's own ``rollback.calls``, sent last. The snapshot is JSON, and it must do alone:
a new process rolls back from the journaled copy. Bodies there may hold secrets under
secret-named keys: those are named for the escrow, which seals them instead of masking.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from controller.errors import FazaiError, NodeError, ValidationFailedError
from controller.model.tool import ApiCall, Resolution, resolution_of
from controller.providers.base import Change, Intent
from controller.providers.opnsense.client import OpnsenseClient
from controller.providers.opnsense.goals import plain_path
from controller.store.redact import MASK, is_secret_key

KIND = "Goal"
# The actions whose call brings saved configuration live: replayed after a revert.
RELOAD_ACTIONS = frozenset({"reconfigure", "apply", "reload", "restart"})


class ToolCallError(NodeError):
    """A tool's call was refused or failed; the node is rolled back. ``validations``
    holds the firewall's field messages when its validation refused the body."""

    retryable = False  # the same call meets the same refusal

    def __init__(
        self,
        node: str,
        message: str,
        *,
        path: str = "",
        validations: Mapping[str, list[str]] | None = None,
    ) -> None:
        self.path = path
        self.validations = dict(validations or {})
        super().__init__(node, message)


def resolution_for(node: str, change: Change) -> Resolution:
    """The OPNsense tool that makes ``change``'s goal so; NodeError when it has none."""
    spec = change.document.spec if change.document is not None else {}
    resolution = resolution_of(spec)
    if resolution is None or resolution.platform != "opnsense" or not resolution.apply.calls:
        raise NodeError(node, f"{KIND}/{change.name}: no OPNsense tool resolves it")
    for call in (*resolution.apply.calls, *_rollback_calls(resolution)):
        if not plain_path(call.path):
            raise NodeError(
                node, f"{KIND}/{change.name}: Tool/{resolution.tool}: {call.path!r} is not a "
                "plain API path; nothing was written",
            )  # fmt: skip
    return resolution


def _rollback_calls(resolution: Resolution) -> tuple[ApiCall, ...]:
    return resolution.rollback.calls if resolution.rollback is not None else ()


def digest(body: Mapping[str, Any]) -> str:
    """The sha256 of a body as sent (canonical JSON): the journal's record of it."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def intents(goal: str, resolution: Resolution) -> list[Intent]:
    return [
        Intent(
            KIND,
            goal,
            "update",
            {
                "tool": resolution.tool,
                "call": index,
                "method": "POST",
                "path": call.path,
                "bodySha256": digest(call.body),
            },
        )
        for index, call in enumerate(resolution.apply.calls, 1)
    ]


def is_reload(path: str) -> bool:
    segments = path.split("/")
    return len(segments) >= 3 and segments[2].lower() in RELOAD_ACTIONS


def record(goal: str, resolution: Resolution) -> dict[str, Any]:
    """The snapshot's entry for one goal's tool: what its rollback sends."""

    def calls(found: Iterable[ApiCall]) -> list[dict[str, Any]]:
        return [{"path": c.path, "body": json.loads(json.dumps(c.body))} for c in found]

    return {
        "goal": goal,
        "tool": resolution.tool,
        "reloads": calls(c for c in resolution.apply.calls if is_reload(c.path)),
        "rollback": calls(_rollback_calls(resolution)),
    }


def secret_fields(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The secret-named keys in the records' bodies: the escrow seals their values, so
    that a rollback from the journal sends them as they were."""

    def keys(value: Any) -> Iterator[str]:
        if isinstance(value, Mapping):
            for key, item in value.items():
                if is_secret_key(str(key)):
                    yield str(key)
                yield from keys(item)
        elif isinstance(value, list):
            for item in value:
                yield from keys(item)

    return sorted({k for r in records for c in (*r["reloads"], *r["rollback"]) for k in keys(c)})


def failure(answer: Any) -> str | None:
    """Why an answer the client passed still says the call failed; None when it did not.
    Service controllers answer ``{"status": "failed"}`` with HTTP 200."""
    if not isinstance(answer, Mapping):
        return None
    status = str(answer.get("status", "")).strip().lower()
    if "fail" in status or "error" in status:
        return f"the firewall answered status {status!r}"
    return None


async def send(
    client: OpnsenseClient, node: str, goal: str, tool: str, index: int, call: ApiCall
) -> None:
    """POST one of a tool's calls; ToolCallError when the firewall refuses it."""
    where = f"{KIND}/{goal}: Tool/{tool}'s call {index} (POST /api/{call.path})"
    try:
        answer = await client.post(call.path, dict(call.body))
    except ValidationFailedError as exc:
        fields = "; ".join(f"{k}: {' '.join(v)}" for k, v in sorted(exc.validations.items()))
        raise ToolCallError(
            node, f"{where} was refused by the firewall: {fields}; rolling back",
            path=call.path, validations=exc.validations,
        ) from exc  # fmt: skip
    except FazaiError as exc:
        text = exc.message if isinstance(exc, NodeError) else str(exc)
        raise ToolCallError(node, f"{where} failed: {text}; rolling back", path=call.path) from exc
    why = failure(answer)
    if why is not None:
        raise ToolCallError(node, f"{where} failed: {why}; rolling back", path=call.path)


def stored_calls(entry: Mapping[str, Any], part: str) -> list[ApiCall]:
    """The calls of a snapshot entry's ``part`` (reloads, rollback), read defensively: the
    snapshot came back from the journal (the caller checks each path before sending)."""
    out = []
    for raw in entry.get(part, []):
        if not isinstance(raw, Mapping):
            continue
        path, body = str(raw.get("path", "")), raw.get("body", {})
        out.append(ApiCall(path, dict(body) if isinstance(body, Mapping) else {}))
    return out


def holds_mask(value: Any) -> bool:
    """Whether a stored body still holds a masked value anywhere."""
    if value == MASK:
        return True
    if isinstance(value, Mapping):
        return any(holds_mask(v) for v in value.values())
    if isinstance(value, list):
        return any(holds_mask(v) for v in value)
    return False
