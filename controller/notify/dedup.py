"""What has been notified and is still open, kept across restarts.

One small JSON file next to the state store (``state.notify.json`` beside ``state.db``),
replaced atomically on every change, so a restart neither repeats a drift people already
know about nor forgets to say it was resolved. Keys are ``drift/<source>/<node>``,
``failure/<node>`` and ``signature/<source>``; each open entry keeps a fingerprint of what
was said and, for the resolved notice, a short list of ``Kind/name action`` lines (no
values).

A file that cannot be read (corrupt, from a newer FazAI) is set aside as ``*.bad`` and
started afresh: the worst case is one repeated notice, never a stopped notifier.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from controller.reports.errors import ReportError
from controller.reports.files import atomic_write
from controller.reports.model import DriftedResource

log = logging.getLogger(__name__)
VERSION = 1


@dataclass(frozen=True)
class OpenIssue:
    key: str
    fingerprint: str
    since: str  # ISO time it was first notified
    revision: str | None = None
    lines: tuple[str, ...] = ()  # "File/motd update" ...


def fingerprint(resources: Iterable[DriftedResource]) -> str:
    """Identity of a drift: the set of (kind, name, action, field changes). Order and
    timing do not matter; any change of a value does."""
    canonical = sorted(
        (
            r.kind,
            r.name,
            r.action,
            sorted([c.field, _canon(c.live), _canon(c.desired)] for c in r.changes),
            r.error or "",
        )
        for r in resources
    )
    return digest(canonical)


def digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def default_path(store_path: Path) -> Path:
    return store_path.with_name(f"{store_path.stem}.notify.json")


class DedupState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._open: dict[str, OpenIssue] = self._load()

    def _load(self) -> dict[str, OpenIssue]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            if raw.get("version") != VERSION:
                raise ValueError(f"version {raw.get('version')!r}")
            return {
                key: OpenIssue(
                    key=key,
                    fingerprint=str(entry["fingerprint"]),
                    since=str(entry["since"]),
                    revision=entry.get("revision"),
                    lines=tuple(map(str, entry.get("lines", ()))),
                )
                for key, entry in raw["open"].items()
            }
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            aside = self.path.with_name(self.path.name + ".bad")
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            log.warning(
                "notifications: cannot read %s (%s); set aside as %s, starting afresh",
                self.path,
                exc,
                aside.name,
            )
            return {}

    def _save(self) -> None:
        data = {
            "version": VERSION,
            "open": {
                k: {n: v for n, v in asdict(i).items() if n != "key"} for k, i in self._open.items()
            },
        }
        try:
            atomic_write(self.path, json.dumps(data, indent=1, sort_keys=True).encode(), 0o600)
        except ReportError as exc:
            # Kept in memory: dedup still works until a restart.
            log.error("notifications: cannot save what was notified: %s", exc)

    def get(self, key: str) -> OpenIssue | None:
        return self._open.get(key)

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self._open if k.startswith(prefix))

    def open(self, issue: OpenIssue) -> None:
        self._open[issue.key] = issue
        self._save()

    def close(self, key: str) -> OpenIssue | None:
        issue = self._open.pop(key, None)
        if issue is not None:
            self._save()
        return issue
