"""Secrets out of text before it reaches a prompt, a transcript, an event or a log.

What the agent reads from a node (a probe's output) and what it sends a model are text,
not the store's JSON, so the store's key-based masking cannot see them. Masked here: the
secrets known to be secrets (passed in: the controller's own, and the values of a
tool's secret-named params), PEM private keys, ``Authorization`` headers, the value
after every name that reads like a secret's
(the store's own rule, ``is_secret_key``) in any of the forms settings are written in:
``NAME=value``, ``NAME: value``, ``"NAME": "value"`` (JSON), ``NAME value``
(``requirepass x``), ``export NAME=value``, ``Environment=NAME=value``. Every word is
looked at as a name, so a pair before it never hides it. Then what the audit trail
masks in free text (``store.audit.clean_text``: password hashes, URL passwords). It errs
towards masking too much.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from controller.model.tool import secret_param
from controller.store.audit import clean_text
from controller.store.redact import MASK

_PEM = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
    re.DOTALL,
)
_AUTH = re.compile(r"(?im)^(\s*(?:proxy-)?authorization\s*:\s*)\S.*$")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,80}")
# After a name: its separator, then the value (quoted, or up to a space or separator).
_AFTER = re.compile(
    r"""(?P<sep>["']?\s*[=:]\s*|[ \t]+)(?P<value>"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[^\s,;"'}\]]+)"""
)


def _secret_name(name: str) -> bool:
    return secret_param(name)


# Values that are settings' switches, never secrets.
_SWITCHES = frozenset({"yes", "no", "true", "false", "on", "off", "0", "1", "none", "null"})
_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Words that follow a secret's name without being its value ("password is set").
_NOT_VALUES = frozenset({"is", "was", "not", "for", "of", "the", "a", "an", "to", "and", "or"})


def mask(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with the secrets it may hold replaced by ``***``."""
    for secret in sorted({s for s in known if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _PEM.sub(MASK, text)
    text = _AUTH.sub(lambda m: m.group(1) + MASK, text)
    text = _mask_named(text)
    # Then what the audit trail masks in free text: hashes, URL passwords, pairs.
    return clean_text(text)


def _mask_named(text: str) -> str:
    spans: list[tuple[int, int]] = []
    for name in _NAME.finditer(text):
        if not _secret_name(name.group(0)):
            continue
        after = _AFTER.match(text, name.end())
        if after is None:
            continue
        value = after.group("value")
        bare = value.strip("\"'")
        spaced = after.group("sep").isspace()
        if bare == MASK or bare.lower() in _SWITCHES:
            continue  # "PasswordAuthentication no" holds no secret: the model needs it
        if spaced and (
            bare.lower() in _NOT_VALUES
            or bare[:1] in "([{"  # "password (exit 1)": FazAI's own words about a check
            or not _PLAIN_NAME.match(name.group(0))
        ):
            continue  # "tool sshd-auth-x accepted": a name with '-' or '.' is no setting
        start = after.start("value")
        if value[:1] in "\"'" and len(value) >= 2:
            spans.append((start + 1, after.end("value") - 1))
        else:
            spans.append((start, after.end("value")))
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)  # a value holding another pair
        else:
            merged.append([start, end])
    for start, end in reversed(merged):
        text = text[:start] + MASK + text[end:]
    return text
