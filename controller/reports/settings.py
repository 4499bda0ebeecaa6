"""The ``reports`` section of ``fazai.yaml``, parsed.

``from_config(mapping, base=...)`` checks the section against
``schemas/reports.schema.json`` (the config loader composes the same file into the whole
config's schema) and then what a schema cannot say: cron expressions, time zones, unique
schedule names. Problems raise :class:`~controller.errors.SettingsError` with the
field path inside the section.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from controller.errors import SettingsError
from controller.reports import cron
from controller.settings import check, sections
from controller.settings.check import FieldPath

SECTION = "reports"
FORMATS = ("markdown", "json", "html")
EXTENSIONS = {"markdown": "md", "json": "json", "html": "html"}
DEFAULT_DAYS = 30
DEFAULT_SETTLE = 300.0


@dataclass(frozen=True)
class Schedule:
    name: str
    cron: str
    timezone: str = "UTC"
    formats: tuple[str, ...] = FORMATS
    refresh: bool = True  # trigger a drift check and wait for it before reporting
    keep: int = 0  # newest reports kept in the folder; 0: all
    days: int = DEFAULT_DAYS

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class ReportSettings:
    schedules: tuple[Schedule, ...]
    dir: Path = Path("reports")
    branch: str | None = None
    repository: Path | None = None
    push: bool = False
    remote: str = "origin"
    days: int = DEFAULT_DAYS
    settle_timeout: float = DEFAULT_SETTLE
    author_name: str = "FazAI"
    author_email: str = "fazai@localhost"


def schema() -> Mapping[str, Any]:
    return check.load_schema("controller.reports", "reports.schema.json")


def from_config(
    section: Mapping[str, Any], *, base: Path | None = None, file: str = ""
) -> ReportSettings:
    """Settings from the ``reports`` mapping; relative paths are resolved against ``base``
    (the config file's folder; default: the working directory at start). ``file``: the
    config file, named by a SettingsError raised."""
    check.check(SECTION, schema(), section, file)
    root = (base or Path.cwd()).expanduser()
    days = int(section.get("days", DEFAULT_DAYS))
    problems: list[tuple[FieldPath, str]] = []
    schedules = []
    seen: set[str] = set()
    for index, raw in enumerate(section["schedules"]):
        name = raw["name"]
        if name in seen:
            problems.append((("schedules", index, "name"), f"{name!r} is used by two schedules"))
        seen.add(name)
        why = cron.check(raw["cron"])
        if why:
            problems.append((("schedules", index, "cron"), why))
        zone = raw.get("timezone", "UTC")
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append((("schedules", index, "timezone"), f"unknown time zone {zone!r}"))
        schedules.append(
            Schedule(
                name=name,
                cron=raw["cron"],
                timezone=zone,
                formats=tuple(raw.get("formats", FORMATS)),
                refresh=bool(raw.get("refresh", True)),
                keep=int(raw.get("keep", 0)),
                days=int(raw.get("days", days)),
            )
        )
    settle = check.duration(
        section.get("settleTimeout", DEFAULT_SETTLE), ("settleTimeout",), problems
    )
    if problems:
        raise SettingsError(SECTION, problems, file)
    author = section.get("author", {})
    repository = section.get("repository")
    return ReportSettings(
        schedules=tuple(schedules),
        dir=_path(root, section.get("dir", "reports")),
        branch=section.get("branch"),
        repository=_path(root, repository) if repository else None,
        push=bool(section.get("push", False)),
        remote=str(section.get("remote", "origin")),
        days=days,
        settle_timeout=settle,
        author_name=author.get("name", "FazAI"),
        author_email=author.get("email", "fazai@localhost"),
    )


def _path(root: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


# fazai.yaml's loader (below this package) knows the section only through this registration.
sections.register(sections.Section("reports", "controller.reports", from_config))
