"""A secret sealed into the escrow: the one thing the store keeps under a secret name.

The redaction masks every value under a secret-named key, except a :class:`Sealed`: an
authenticated ciphertext made in this process by :mod:`controller.store.escrow`. Only an
instance of the class passes, never a mapping that merely looks like one, so data read
back from the store (or from anywhere else) and written again is masked as before.

This module has no dependencies, so the redaction, the escrow and the providers can all
recognize sealed values without importing the cipher.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FORMAT = "fazai.escrow/1"

_KID = re.compile(r"[0-9a-f]{16}")
_URLSAFE = re.compile(r"[A-Za-z0-9_-]+={0,2}")


@dataclass(frozen=True)
class Sealed:
    """``data``: URL-safe base64 of nonce + ciphertext + tag; ``kid``: which key sealed it."""

    kid: str
    data: str

    def to_json(self) -> dict[str, str]:
        return {"escrow": FORMAT, "kid": self.kid, "sealed": self.data}


def parse(value: Any) -> Sealed | None:
    """The sealed value ``value`` holds in its JSON form, else None."""
    if not isinstance(value, Mapping) or set(value) != {"escrow", "kid", "sealed"}:
        return None
    kid, data = value["kid"], value["sealed"]
    if value["escrow"] != FORMAT or not isinstance(kid, str) or not isinstance(data, str):
        return None
    if not _KID.fullmatch(kid) or not _URLSAFE.fullmatch(data):
        return None
    return Sealed(kid, data)
