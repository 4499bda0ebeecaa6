"""Field-level comparison of a resource's desired and live *essence*.

An essence is the normalized, platform-neutral view of an object that a provider builds
from both sides (a file is its sha256, mode, owner and group; a package is whether and
which version is installed). Only fields the document sets appear in the desired
essence, so unmanaged attributes never show as drift. deepdiff finds what differs; the
plan reports it per top-level field.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

Essence = Mapping[str, Any]


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    NOOP = "noop"
    ERROR = "error"  # the resource could not be compared; the message says why
    UNMANAGED = "unmanaged"  # on the node, in no document: reported, never touched
    # A difference no deterministic handler can write (a Goal whose checks fail, a
    # resource the node has no applier for): the item's reason says why. It counts as a
    # difference, is never written by an apply, and is all that is handed to the agent.
    # An item that also carries a command is what the agent proposes for it: a change
    # like any other, held by the shipped fazai-agent-proposals default.
    UNRESOLVED = "unresolved"


# What an apply writes to a node.
WRITES = frozenset({Action.CREATE, Action.UPDATE, Action.DELETE})


@dataclass(frozen=True)
class Change:
    field: str
    live: Any
    desired: Any
    diff: str | None = None  # a unified diff, for text contents that may be shown


@dataclass(frozen=True)
class Observed:
    """What a provider found for one resource on one node."""

    desired: Essence | None  # None: the object must not exist
    live: Essence | None  # None: the object does not exist
    error: str | None = None
    # field -> (live text, desired text), for fields whose change shows as a unified diff
    texts: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # The platform's id of an existing object the document binds to instead of one it
    # would create (found by the platform's natural key, or named by ``spec.adopt``): the
    # plan marks the change "adopt" and the apply writes that object in place.
    adopt: str | None = None
    # Why no handler can make this difference so (None: one can). A difference found
    # with a reason plans as UNRESOLVED; in sync is in sync whatever the reason.
    unresolved: str | None = None


def compare(observed: Observed, label: str = "") -> tuple[Action, tuple[Change, ...]]:
    action, changes = _compare(observed, label)
    if observed.unresolved is not None and action in WRITES:
        return Action.UNRESOLVED, changes
    return action, changes


def _compare(observed: Observed, label: str) -> tuple[Action, tuple[Change, ...]]:
    if observed.error is not None:
        return Action.ERROR, ()
    desired, live = observed.desired, observed.live
    if desired is None:
        if live is None:
            return Action.NOOP, ()
        return Action.DELETE, tuple(Change(k, v, None) for k, v in sorted(live.items()))
    if live is None:
        return Action.CREATE, tuple(
            Change(k, None, v, _text_diff(observed, k, label)) for k, v in sorted(desired.items())
        )
    live_view = {k: live.get(k) for k in desired}
    if _same(live_view, desired):
        return Action.NOOP, ()  # most resources are in sync: skip deepdiff for them
    # Imported here: deepdiff (and pydantic under it) takes 0.07 s to import, and a plan
    # that only creates, or finds everything in sync, never needs it.
    from deepdiff import DeepDiff

    delta = DeepDiff(live_view, dict(desired), verbose_level=2, view="tree")
    # Every change deepdiff reports, whatever its type (value, type, item added...), is
    # reported once for the essence field it sits under.
    fields = sorted(
        {
            str(change.path(output_format="list")[0])
            for changes in delta.tree.values()
            for change in changes
        }
    )
    if not fields:
        return Action.NOOP, ()
    return Action.UPDATE, tuple(
        Change(f, live_view.get(f), desired[f], _text_diff(observed, f, label)) for f in fields
    )


def _same(left: Any, right: Any) -> bool:
    """Equal with equal types all the way down (``1 == True`` is a difference here)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, Mapping):
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    if isinstance(left, list | tuple):
        return len(left) == len(right) and all(
            _same(a, b) for a, b in zip(left, right, strict=True)
        )
    return bool(left == right)


def _text_diff(observed: Observed, field_name: str, label: str) -> str | None:
    texts = observed.texts.get(field_name)
    if texts is None:
        return None
    live_text, desired_text = texts
    lines = difflib.unified_diff(
        live_text.splitlines(keepends=True),
        desired_text.splitlines(keepends=True),
        fromfile=f"live {label}".strip(),
        tofile=f"desired {label}".strip(),
    )
    out = "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )
    return out or None
