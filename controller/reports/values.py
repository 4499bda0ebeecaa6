"""How field values, revisions and times read in every rendering."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from controller.source import revision as revisions

ABSENT = "(absent)"


def show(value: Any, limit: int | None = None) -> str:
    """A field value as one string; ``limit`` cuts long ones (file contents) with a note."""
    if value is None:
        text = ABSENT
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    if limit is not None and len(text) > limit:
        text = f"{text[:limit]}… ({len(text) - limit} more characters)"
    return text


def short(revision: str | None) -> str:
    return revisions.short(revision) if revision else "-"


def when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def stamp(moment: datetime) -> str:
    """A file-name-safe UTC timestamp that sorts in time order: ``20250102T060000Z``."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
