"""Secrets given by reference, held so that they never print.

Documents name where a secret lives (``{env: NAME}`` or ``{file: PATH}``), never the
secret itself. A resolved :class:`Secret` masks itself in ``repr``/``str``/f-strings, so a
secret that reaches a log line, an exception or a plan shows as ``***``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from controller.errors import SecretError


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value itself: only for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def resolve(ref: Mapping[str, Any], node: str, field: str) -> Secret:
    """Read the secret ``ref`` points at; SecretError names the reference, never the value."""
    if "env" in ref:
        raw = os.environ.get(ref["env"])
        if raw is None:
            raise SecretError(node, f"{field}: environment variable {ref['env']} is not set")
        return Secret(_single_value(raw, node, f"{field}: environment variable {ref['env']}"))
    if "file" not in ref:
        raise SecretError(node, f"{field}: give {{env: NAME}} or {{file: PATH}}")
    path = Path(os.path.expanduser(ref["file"]))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretError(node, f"{field}: cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError:
        # Not chained: the decode error carries the file's bytes, that is, the secret.
        raise SecretError(node, f"{field}: {path} is not UTF-8 text") from None
    return Secret(_single_value(text, node, f"{field}: {path}"))


def _single_value(raw: str, node: str, where: str) -> str:
    """The value without surrounding white space; one line, not empty.

    Checked after stripping, so a value of only spaces or newlines is empty, not a
    credential of blanks sent to the firewall.
    """
    value = raw.strip()
    if not value:
        raise SecretError(node, f"{where} is empty")
    if "\n" in value or "\r" in value:
        raise SecretError(node, f"{where} holds more than one line; it must hold only the value")
    return value


# Anywhere in the normalized name: these words only ever name secrets (or references to
# them, which are masked too: where a secret is kept is worth hiding from an attacker).
_SECRET_PARTS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "credential",
    "privatekey",
    "apikey",
    "psk",
)
_NON_ALNUM = re.compile(r"[^a-z0-9]")


def is_secret_key(name: str) -> bool:
    """Whether a value stored under ``name`` must be masked.

    Besides the words above, a name that *ends* in ``key``/``keys`` after some qualifier
    (``sshKey``, ``client_keys``) is a secret; a bare ``key`` is not (it is a Sysctl's
    parameter name, a journal's object key), and neither is a name that merely contains it
    (``hostKeyChecking``, ``keywords``)."""
    flat = _NON_ALNUM.sub("", name.lower())
    if any(part in flat for part in _SECRET_PARTS):
        return True
    return flat not in ("key", "keys") and flat.endswith(("key", "keys"))
