"""Finding our own comment among a pull request's comments.

Each plan comment starts with a hidden marker line (an HTML comment, invisible once
rendered). A later push finds the comment by that first line and updates it, so a pull
request carries one plan comment however often it is pushed. The marker must be the
first line: a reply quoting our comment, or a comment merely mentioning the marker, is
not ours.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol, TypeVar

MARKER = "<!-- fazai:plan -->"
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")


class HasBody(Protocol):
    @property
    def body(self) -> str: ...


C = TypeVar("C", bound=HasBody)


def marker(key: str = "") -> str:
    """The marker line; ``key`` tells apart several plans on one pull request (one per
    source folder, say)."""
    if not key:
        return MARKER
    if not _KEY.match(key):
        raise ValueError(
            f"comment key {key!r}: use letters, digits and . _ / - (at most 100 characters)"
        )
    return f"<!-- fazai:plan:{key} -->"


def with_marker(body: str, mark: str) -> str:
    return f"{mark}\n{body}"


def is_ours(body: str, mark: str) -> bool:
    return body.lstrip("\ufeff").split("\n", 1)[0].strip() == mark


def find(comments: Iterable[C], mark: str) -> C | None:
    """The first (oldest, as the forges list them) comment carrying ``mark``."""
    return next((c for c in comments if is_ours(c.body, mark)), None)
