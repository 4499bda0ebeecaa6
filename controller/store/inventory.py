"""The inventory of owned objects: what FazAI created on each node, and so may delete.

A delete plan is only ever carried out for an object found here. An object that merely
looks unmanaged (made by hand, by another tool, by the firewall itself) is reported and
left alone, whatever its name.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime

from controller.store.database import Database, iso, parse_time
from controller.store.records import OwnedObject


class Inventory:
    _db: Database
    _now: Callable[[], datetime]

    def own(self, node: str, kind: str, name: str, platform_id: str, run_id: int | None) -> None:
        """Record that ``run_id`` created the object; a re-creation (a new uuid) replaces
        the earlier record."""
        self.record_inventory(node, run_id, {(kind, name): platform_id}, ())

    def record_inventory(
        self,
        node: str,
        run_id: int | None,
        owned: Mapping[tuple[str, str], str],
        disowned: Collection[tuple[str, str]],
    ) -> None:
        """What one apply of ``node`` wrote and deleted, in one commit: ``owned`` maps
        (kind, name) to the platform's id (as :meth:`own`), ``disowned`` is forgotten."""
        if not owned and not disowned:
            return
        with self._db.write(f"recording what is owned on {node}") as cur:
            when = iso(self._now())
            cur.executemany(
                "INSERT INTO owned (node, kind, name, platform_id, run_id, created)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (node, kind, name) DO UPDATE SET"
                " platform_id = excluded.platform_id, run_id = excluded.run_id,"
                " created = excluded.created",
                [(node, k, n, pid, run_id, when) for (k, n), pid in owned.items()],
            )
            cur.executemany(
                "DELETE FROM owned WHERE node = ? AND kind = ? AND name = ?",
                [(node, k, n) for k, n in disowned],
            )

    def disown(self, node: str, kind: str, name: str) -> bool:
        """Forget the object (deleted, or handed back to manual care); False if not owned."""
        with self._db.write(f"forgetting {kind}/{name} on {node}") as cur:
            cur.execute(
                "DELETE FROM owned WHERE node = ? AND kind = ? AND name = ?", (node, kind, name)
            )
            return cur.rowcount > 0

    def owned(self, node: str) -> list[OwnedObject]:
        """What FazAI owns on ``node``, by kind and name."""
        with self._db.read(f"reading what is owned on {node}") as cur:
            rows = cur.execute(
                "SELECT node, kind, name, platform_id, run_id, created FROM owned"
                " WHERE node = ? ORDER BY kind, name",
                (node,),
            ).fetchall()
        return [
            OwnedObject(n, k, m, pid, run, parse_time(created))
            for n, k, m, pid, run, created in rows
        ]

    def is_owned(self, node: str, kind: str, name: str) -> bool:
        with self._db.read(f"reading ownership of {kind}/{name} on {node}") as cur:
            row = cur.execute(
                "SELECT 1 FROM owned WHERE node = ? AND kind = ? AND name = ?", (node, kind, name)
            ).fetchone()
        return row is not None
