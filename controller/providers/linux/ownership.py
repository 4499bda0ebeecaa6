"""What the inventory's records of Linux objects mean: each is found again by its key
(a path, a package or user name, an nft table, a sysctl key), so no document needs a
recorded binding, and a service is released rather than deleted (it belongs to its
package)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from controller.model.document import Document
from controller.providers.base import Absent
from controller.providers.linux.essence import SYSCTL_FILE
from controller.store.records import OwnedObject


def _by_field(field: str) -> Callable[[OwnedObject], Absent]:
    return lambda obj: Absent({field: obj.platform_id})


def _nft(obj: OwnedObject) -> Absent:
    family, _, name = obj.platform_id.partition(" ")
    return Absent({"family": family, "name": name})


def _sysctl(obj: OwnedObject) -> Absent:
    return Absent(
        {"key": obj.platform_id},
        f"{obj.platform_id} leaves {SYSCTL_FILE}; its running value stays as it is "
        "(a kernel parameter cannot be removed)",
    )


_ABSENT: Mapping[str, Callable[[OwnedObject], Absent]] = {
    "File": _by_field("path"),
    "Package": _by_field("name"),
    "User": _by_field("name"),
    "NftTable": _nft,
    "Sysctl": _sysctl,
}


class LinuxOwnership:
    prunable_kinds = frozenset(_ABSENT)
    released_kinds = frozenset({"Service"})

    def absent(self, obj: OwnedObject) -> Absent | None:
        return _ABSENT[obj.kind](obj)

    def claim(self, node: str, doc: Document) -> str | None:
        return None

    def recorded(self, node: str, obj: OwnedObject) -> str | None:
        return None


OWNERSHIP = LinuxOwnership()
