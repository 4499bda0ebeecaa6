"""Secrets out of text before it reaches a prompt, a transcript or a log.

What the agent reads from a node (a probe's output) and what it sends a model are text,
not the store's JSON, so the store's key-based masking cannot see them. Masked here: the
secrets the controller itself holds (passed in: API keys and secrets of nodes), password
hashes (``controller.hashes``), PEM private keys, ``Authorization`` headers, and the
value of any ``NAME=value`` / ``NAME: value`` whose name reads like a secret's (the
store's own rule, ``is_secret_key``). It errs towards masking too much.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from controller.hashes import mask_hashes
from controller.store.redact import MASK, is_secret_key

_PEM = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
    re.DOTALL,
)
_AUTH = re.compile(r"(?im)^(\s*(?:proxy-)?authorization\s*:\s*)\S.*$")
_ASSIGNMENT = re.compile(
    r"""(?P<name>[A-Za-z_][A-Za-z0-9_.-]{0,80})(?P<sep>\s*[=:]\s*|\s+)(?P<value>"[^"\n]*"|'[^'\n]*'|[^\s,;]+)"""
)


def mask(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with the secrets it may hold replaced by ``***``."""
    for secret in sorted({s for s in known if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _PEM.sub(MASK, text)
    text = _AUTH.sub(lambda m: m.group(1) + MASK, text)
    text = _ASSIGNMENT.sub(_masked_assignment, text)
    return mask_hashes(text)


def _masked_assignment(match: re.Match[str]) -> str:
    name = match.group("name")
    if not is_secret_key(name) or match.group("value") == MASK:
        return match.group(0)
    return f"{name}{match.group('sep')}{MASK}"
