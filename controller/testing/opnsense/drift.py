"""Changes made "by hand", as an admin in the web UI would: the drift FazAI must notice.

The web UI posts to the same API controllers, so these go through the same validation
and each leaves a backup entry, but they are not applied (nobody pressed Apply).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.testing.opnsense import crud
from controller.testing.opnsense.models import Collection
from controller.testing.opnsense.state import EmulatorState

_UI_USER = "root@192.168.1.100"

_PATHS = {
    "alias": (
        "/api/firewall/alias/addItem",
        "/api/firewall/alias/setItem",
        "/api/firewall/alias/delItem",
    ),
    "rule": (
        "/api/firewall/filter/addRule",
        "/api/firewall/filter/setRule",
        "/api/firewall/filter/delRule",
    ),
    "host": (
        "/api/unbound/settings/addHostOverride",
        "/api/unbound/settings/setHostOverride",
        "/api/unbound/settings/delHostOverride",
    ),
}


class EmulatorValidationError(ValueError):
    """A hand edit the firewall would refuse; ``validations`` as the API reports them."""

    def __init__(self, validations: Mapping[str, Any]) -> None:
        self.validations = dict(validations)
        super().__init__(f"refused: {self.validations}")


class Drift:
    """``Drift(server.state).add("alias", {"name": "x", "type": "host", "content": "10.0.0.1"})``"""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def _coll(self, kind: str) -> Collection:
        coll: Collection = self.state.collections[kind]
        return coll

    def add(self, kind: str, fields: Mapping[str, Any], uuid: str | None = None) -> str:
        """Create an item (with ``uuid`` when given); returns its uuid."""
        coll = self._coll(kind)
        if uuid is not None:
            answer = crud.set_item(
                self.state, coll, uuid, fields, who=_UI_USER, where=f"{_PATHS[kind][1]}/{uuid}"
            )
            new_uuid = uuid
        else:
            answer = crud.add_item(self.state, coll, fields, who=_UI_USER, where=_PATHS[kind][0])
            new_uuid = str(answer.get("uuid", ""))
        if answer["result"] != "saved":
            raise EmulatorValidationError(answer.get("validations", {}))
        return new_uuid

    def edit(self, kind: str, uuid: str, fields: Mapping[str, Any]) -> None:
        if self.state.get(kind, uuid) is None:
            raise KeyError(f"no {kind} {uuid}")
        answer = crud.set_item(
            self.state,
            self._coll(kind),
            uuid,
            fields,
            who=_UI_USER,
            where=f"{_PATHS[kind][1]}/{uuid}",
        )
        if answer["result"] != "saved":
            raise EmulatorValidationError(answer.get("validations", {}))

    def remove(self, kind: str, uuid: str) -> None:
        if kind == "alias":
            crud.check_alias_deletable(self.state, uuid)
        answer = crud.del_item(
            self.state, self._coll(kind), uuid, who=_UI_USER, where=f"{_PATHS[kind][2]}/{uuid}"
        )
        if answer["result"] != "deleted":
            raise KeyError(f"no {kind} {uuid}")
