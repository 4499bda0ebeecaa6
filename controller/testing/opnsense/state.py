"""The emulated firewall's configuration: items, what is live, and the backup history.

Upstream writes config.xml and a copy of it into /conf/backup on every save, so the
history always ends with the running configuration; :meth:`EmulatorState.save` does the
same. "Applied" records what reconfigure/apply last brought live per subsystem, so a test
can tell a saved-but-pending change from a live one. Every method takes the lock: HTTP
handlers, rollback timers and the test thread all touch the state.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.testing.opnsense import settings as settings_sections
from controller.testing.opnsense.models import KINDS, collections
from controller.testing.opnsense.versions import DEFAULT_VERSION, get_version

Items = dict[str, dict[str, dict[str, str]]]  # kind -> uuid -> field -> value

SUBSYSTEM_KINDS: dict[str, tuple[str, ...]] = {
    "alias": ("alias",),
    "filter": ("rule",),
    "unbound": ("host",),
}

DEFAULT_INTERFACES = {"lan": "LAN", "wan": "WAN", "lo0": "Loopback"}


@dataclass(frozen=True)
class Backup:
    """One file of /conf/backup: ``config-<time>.xml`` and the items and settings it
    holds."""

    time: str  # "1718000000.1234", as upstream's revision/time
    description: str
    username: str
    items: Items
    settings: settings_sections.Settings = field(default_factory=settings_sections.initial)

    @property
    def id(self) -> str:
        return f"config-{self.time}.xml"


class EmulatorState:
    def __init__(
        self,
        version: str = DEFAULT_VERSION,
        *,
        interfaces: dict[str, str] | None = None,
        gateways: Iterable[str] = (),
        hostname: str = "OPNsense",
        domain: str = "localdomain",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.version = get_version(version)
        self.interfaces = dict(interfaces if interfaces is not None else DEFAULT_INTERFACES)
        self.gateways = tuple(gateways)
        self.hostname = hostname
        self.domain = domain
        self._clock = clock
        self.lock = threading.RLock()
        self.items: Items = {kind: {} for kind in KINDS}
        self.applied: Items = {kind: {} for kind in KINDS}
        # Model settings (Unbound's general, advanced), by "model.section".
        self.settings = settings_sections.initial()
        self.applied_settings = settings_sections.initial()
        self.backups: list[Backup] = []  # oldest first, as the files sort
        # Config::backupCount(): <backupcount> when set, else 100; older files are pruned.
        self.backup_count = 100
        self.on_save: Callable[[EmulatorState], None] | None = None
        self.save("Initial configuration", "root")

    # -- reading ---------------------------------------------------------------------

    @property
    def collections(self) -> dict[str, Any]:
        return collections(self.version.name)

    def list(self, kind: str) -> dict[str, dict[str, str]]:
        """A copy of the items of ``kind`` (alias, rule, host) by uuid."""
        with self.lock:
            return copy.deepcopy(self.items[kind])

    def get(self, kind: str, uuid: str) -> dict[str, str] | None:
        with self.lock:
            item = self.items[kind].get(uuid)
            return dict(item) if item is not None else None

    def find_alias(self, name: str) -> str | None:
        with self.lock:
            return next((u for u, a in self.items["alias"].items() if a.get("name") == name), None)

    def pending(self, subsystem: str) -> bool:
        """True when saved changes of ``subsystem`` (alias, filter, unbound) are not live."""
        with self.lock:
            return any(self.items[k] != self.applied[k] for k in SUBSYSTEM_KINDS[subsystem]) or any(
                self.settings[s.key] != self.applied_settings[s.key]
                for s in settings_sections.SECTIONS
                if s.subsystem == subsystem
            )

    def applied_items(self, kind: str) -> dict[str, dict[str, str]]:
        with self.lock:
            return copy.deepcopy(self.applied[kind])

    def backup(self, backup_id: str) -> Backup | None:
        with self.lock:
            return next((b for b in self.backups if b.id == backup_id), None)

    def backup_by_revision(self, revision: str) -> Backup | None:
        with self.lock:
            return next((b for b in self.backups if b.time == revision), None)

    # -- writing ---------------------------------------------------------------------

    def save(self, description: str, username: str = "root@127.0.0.1") -> Backup:
        """Config::save(): a new history entry holding the configuration as it is now."""
        with self.lock:
            stamp = round(self._clock(), 4)
            if self.backups and stamp <= float(self.backups[-1].time):
                stamp = float(self.backups[-1].time) + 0.0001  # file names must not collide
            entry = Backup(
                f"{stamp:.4f}",
                description,
                username,
                copy.deepcopy(self.items),
                copy.deepcopy(self.settings),
            )
            self.backups.append(entry)
            del self.backups[: -self.backup_count]
            if self.on_save is not None:
                self.on_save(self)
            return entry

    def mark_applied(self, subsystems: Iterable[str]) -> None:
        with self.lock:
            for subsystem in subsystems:
                for kind in SUBSYSTEM_KINDS[subsystem]:
                    self.applied[kind] = copy.deepcopy(self.items[kind])
                for section in settings_sections.SECTIONS:
                    if section.subsystem == subsystem:
                        self.applied_settings[section.key] = dict(self.settings[section.key])

    def restore(self, backup: Backup, kinds: Iterable[str] = KINDS, settings: bool = True) -> None:
        """Copy ``kinds`` (and the settings, unless ``settings`` is False) from ``backup``
        into the running configuration (no save)."""
        with self.lock:
            for kind in kinds:
                self.items[kind] = copy.deepcopy(backup.items[kind])
            if settings:
                self.settings = copy.deepcopy(backup.settings)

    # -- persistence -----------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        with self.lock:
            return {
                "format": 1,
                "version": self.version.name,
                "hostname": self.hostname,
                "domain": self.domain,
                "interfaces": self.interfaces,
                "gateways": list(self.gateways),
                "items": copy.deepcopy(self.items),
                "applied": copy.deepcopy(self.applied),
                "settings": copy.deepcopy(self.settings),
                "appliedSettings": copy.deepcopy(self.applied_settings),
                "backups": [
                    {
                        "time": b.time,
                        "description": b.description,
                        "username": b.username,
                        "items": b.items,
                        "settings": b.settings,
                    }
                    for b in self.backups
                ],
            }

    @classmethod
    def from_json(cls, data: dict[str, Any], version: str | None = None) -> EmulatorState:
        """A state from :meth:`to_json` output; ``version`` overrides the recorded one."""
        state = cls(
            version or data.get("version", DEFAULT_VERSION),
            interfaces=data.get("interfaces"),
            gateways=data.get("gateways", ()),
            hostname=data.get("hostname", "OPNsense"),
            domain=data.get("domain", "localdomain"),
        )
        state.items = {k: dict(data.get("items", {}).get(k, {})) for k in KINDS}
        state.applied = {k: dict(data.get("applied", {}).get(k, {})) for k in KINDS}
        # A state written before settings existed has the stock ones.
        state.settings = {**state.settings, **data.get("settings", {})}
        state.applied_settings = {**state.applied_settings, **data.get("appliedSettings", {})}
        backups = data.get("backups") or []
        if backups:
            state.backups = [
                Backup(
                    b["time"],
                    b["description"],
                    b["username"],
                    b["items"],
                    {**settings_sections.initial(), **b.get("settings", {})},
                )
                for b in backups
            ]
        return state

    def dump(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1, sort_keys=True))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path, version: str | None = None) -> EmulatorState:
        return cls.from_json(json.loads(path.read_text()), version)
