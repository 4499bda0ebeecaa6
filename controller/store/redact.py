"""Masking of secrets in everything the store writes.

The state file is plain SQLite, readable by whoever can read the file and copied into
backups and bug reports, so it must never hold a secret. Every JSON value the store writes
goes through :func:`redact` first; callers cannot skip it.

A value is masked when it is a :class:`~controller.secrets.Secret` (wherever it sits), or
when the key it sits under is named like a secret, unless it is a
:class:`~controller.store.sealed.Sealed`: a secret the escrow encrypted (see ``escrow``),
which is written as its ciphertext. Names are compared after lower-casing
and dropping separators, so ``apiKey``, ``api_key`` and ``API-KEY`` are one name. Masking
errs on the side of too much: a masked ``privateKeyFile`` path costs a little history, a
leaked key costs the fleet.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from controller.secrets import Secret
from controller.secrets import is_secret_key as is_secret_key  # re-exported: its old home
from controller.store.sealed import Sealed

MASK = "***"  # what a Secret prints as, so a masked value reads the same everywhere

# Cached: a journal of 300 objects asks the same twenty names 4,000 times.
_secret_name = functools.lru_cache(maxsize=4096)(is_secret_key)


_PLAIN = frozenset({str, int, float, bool, type(None)})


def redact(value: Any) -> Any:
    """A copy of ``value`` (JSON-like: mappings, lists, tuples, scalars) with secrets masked.

    ``None`` under a secret-named key stays ``None``: "no password set" is not a secret, and
    keeping it lets a rollback tell an unset field from a masked one."""
    kind = type(value)
    # Exact types first (a Secret or a Sealed is neither): a plan of 300 items is 16,000
    # values, and the ABC checks below cost a microsecond each.
    if kind in _PLAIN:
        return value
    if kind is list:
        return [redact(item) for item in value]
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, Sealed):
        return value.to_json()
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key)
            if _secret_name(name) and item is not None and not isinstance(item, Sealed):
                out[name] = MASK
            else:
                out[name] = redact(item)
        return out
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value
