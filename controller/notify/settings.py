"""The ``notifications`` section of ``fazai.yaml``, parsed.

``from_config(section, base=...)`` checks the list against
``schemas/notifications.schema.json`` and builds one :class:`Target` per entry. Secrets
stay references (:class:`SecretRef`) until a message is sent, so a rotated webhook URL or
password is picked up without a restart and never sits in a settings object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from controller import secrets
from controller.errors import SettingsError
from controller.settings import check, sections
from controller.settings.check import FieldPath

SECTION = "notifications"


class NoticeKind(StrEnum):
    DRIFT = "drift"  # a node drifted, or its drift changed
    RESOLVED = "resolved"  # a drift (or a refused signature) notified before is gone
    APPLIED = "applied"  # an apply run finished: what changed, node by node
    FAILED = "failed"  # an apply failed on a node and could not be rolled back fully
    ROLLED_BACK = "rolled_back"  # an apply failed on a node and was rolled back
    SIGNATURE_REFUSED = "signature_refused"  # a source's head is not signed by an allowed key


@dataclass(frozen=True)
class SecretRef:
    """``{env: NAME}`` or ``{file: PATH}``; resolved only when sending."""

    env: str | None = None
    file: str | None = None

    def resolve(self, owner: str, what: str) -> secrets.Secret:
        ref = {"env": self.env} if self.env is not None else {"file": self.file}
        return secrets.resolve(ref, owner, what)

    def __str__(self) -> str:
        return f"env {self.env}" if self.env is not None else f"file {self.file}"


@dataclass(frozen=True)
class Retry:
    attempts: int = 5
    backoff: float = 2.0  # seconds before the second attempt, doubled each time
    max_backoff: float = 300.0

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))


@dataclass(frozen=True)
class RateLimit:
    messages: int = 20
    per: float = 60.0


@dataclass(frozen=True, kw_only=True)
class Target:
    name: str
    events: frozenset[NoticeKind] = frozenset(NoticeKind)
    timeout: float = 10.0
    retry: Retry = field(default_factory=Retry)
    rate_limit: RateLimit = field(default_factory=RateLimit)

    @property
    def type(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class WebhookTarget(Target):
    url: SecretRef

    @property
    def type(self) -> str:
        return "webhook"


@dataclass(frozen=True, kw_only=True)
class SlackTarget(Target):
    url: SecretRef

    @property
    def type(self) -> str:
        return "slack"


@dataclass(frozen=True, kw_only=True)
class Smtp:
    host: str
    port: int
    starttls: bool = False
    ssl: bool = False
    user: SecretRef | None = None
    password: SecretRef | None = None
    ca_bundle: Path | None = None
    verify: bool = True


@dataclass(frozen=True, kw_only=True)
class EmailTarget(Target):
    smtp: Smtp
    sender: str
    recipients: tuple[str, ...]
    subject_prefix: str = "[FazAI]"

    @property
    def type(self) -> str:
        return "email"


@dataclass(frozen=True)
class NotifySettings:
    targets: tuple[Target, ...] = ()


def schema() -> Mapping[str, Any]:
    return check.load_schema("controller.notify", "notifications.schema.json")


def from_config(
    section: Sequence[Mapping[str, Any]], *, base: Path | None = None, file: str = ""
) -> NotifySettings:
    """Settings from the ``notifications`` list; relative paths (``file`` references,
    ``caBundle``) are resolved against ``base``, the config file's folder. ``file``: the
    config file, named by a SettingsError raised."""
    check.check(SECTION, schema(), section, file)
    root = (base or Path.cwd()).expanduser()
    problems: list[tuple[FieldPath, str]] = []
    targets: list[Target] = []
    names: set[str] = set()
    for index, raw in enumerate(section):
        name = raw.get("name") or f"{raw['type']}-{index + 1}"
        if name in names:
            problems.append(((index, "name"), f"{name!r} names two targets"))
        names.add(name)
        common: dict[str, Any] = {
            "name": name,
            "events": frozenset(NoticeKind(e) for e in raw.get("events", list(NoticeKind))),
            "timeout": check.duration(raw.get("timeout", "10s"), (index, "timeout"), problems),
            "retry": _retry(raw.get("retry", {}), (index, "retry"), problems),
            "rate_limit": _rate(raw.get("rateLimit", {}), (index, "rateLimit"), problems),
        }
        if common["timeout"] <= 0 and not _at((index, "timeout"), problems):
            problems.append(((index, "timeout"), "must be more than 0"))
        if common["rate_limit"].per <= 0 and not _at((index, "rateLimit", "per"), problems):
            problems.append(((index, "rateLimit", "per"), "must be more than 0"))
        kind = raw["type"]
        if kind in ("webhook", "slack"):
            cls = WebhookTarget if kind == "webhook" else SlackTarget
            targets.append(cls(url=_ref(raw["urlRef"], root), **common))
            continue
        smtp = raw["smtp"]
        if smtp.get("ssl") and smtp.get("starttls"):
            problems.append(((index, "smtp"), "give ssl or starttls, not both"))
        if ("userRef" in smtp) != ("passwordRef" in smtp):
            problems.append(((index, "smtp"), "give both userRef and passwordRef, or neither"))
        ca = smtp.get("caBundle")
        targets.append(
            EmailTarget(
                smtp=Smtp(
                    host=smtp["host"],
                    port=int(smtp.get("port", 465 if smtp.get("ssl") else 25)),
                    starttls=bool(smtp.get("starttls", False)),
                    ssl=bool(smtp.get("ssl", False)),
                    user=_ref(smtp["userRef"], root) if "userRef" in smtp else None,
                    password=_ref(smtp["passwordRef"], root) if "passwordRef" in smtp else None,
                    ca_bundle=_path(root, ca) if ca else None,
                    verify=bool(smtp.get("verify", True)),
                ),
                sender=raw["from"],
                recipients=tuple(raw["to"]),
                subject_prefix=raw.get("subjectPrefix", "[FazAI]"),
                **common,
            )
        )
    if problems:
        raise SettingsError(SECTION, problems, file)
    return NotifySettings(tuple(targets))


def _ref(raw: Mapping[str, str], root: Path) -> SecretRef:
    if "env" in raw:
        return SecretRef(env=raw["env"])
    return SecretRef(file=str(_path(root, raw["file"])))


def _at(path: FieldPath, problems: list[tuple[FieldPath, str]]) -> bool:
    return any(found == path for found, _ in problems)


def _retry(raw: Mapping[str, Any], at: FieldPath, problems: list[tuple[FieldPath, str]]) -> Retry:
    return Retry(
        attempts=int(raw.get("attempts", 5)),
        backoff=check.duration(raw.get("backoff", "2s"), (*at, "backoff"), problems),
        max_backoff=check.duration(raw.get("maxBackoff", "5m"), (*at, "maxBackoff"), problems),
    )


def _rate(
    raw: Mapping[str, Any], at: FieldPath, problems: list[tuple[FieldPath, str]]
) -> RateLimit:
    per = check.duration(raw.get("per", "1m"), (*at, "per"), problems)
    return RateLimit(messages=int(raw.get("messages", 20)), per=per)


def _path(root: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


# fazai.yaml's loader (below this package) knows the section only through this registration.
sections.register(sections.Section("notifications", "controller.notify", from_config))
