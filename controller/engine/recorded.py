"""Rule and host override documents bound to the object FazAI already owns for them.

The inventory records an adopted object by its own uuid. Without that record the plan
would find a document's object again only by the uuid derived from its name or, for a
host override, by Unbound's key: a document that drops ``spec.adopt`` would create a
second rule at the derived uuid, and an override whose hostname changes would silently
take over another override that has the new key (perhaps one made by hand), leaving the
one FazAI owned behind. So each present rule or override document without
``spec.adopt`` is given, per node, the uuid the inventory records for it
(``spec.recorded``, a field only FazAI writes: the schema refuses it in documents), and
the plan binds that object while it exists (adoption.bind).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from controller.engine.prune import ownership_of
from controller.model.state import DesiredState
from controller.store import OwnedObject


def bind(state: DesiredState, owned: Mapping[str, Sequence[OwnedObject]]) -> DesiredState:
    """``state`` with the recorded uuids of ``owned`` (the inventory, by node) added."""
    recorded: dict[tuple[str, str], dict[str, str]] = {}
    for node, objects in owned.items():
        ownership = ownership_of(state, node)
        for obj in objects:
            uuid = ownership.recorded(node, obj)
            if uuid is not None:
                recorded.setdefault((obj.kind, obj.name), {})[node] = uuid
    if not recorded:
        return state
    resources = []
    for doc in state.resources:
        found = recorded.get((doc.kind, doc.name))
        present = str(doc.spec.get("state", "present")) == "present"
        if found and present and "adopt" not in doc.spec:
            doc = dataclasses.replace(doc, spec={**doc.spec, "recorded": dict(found)})
        resources.append(doc)
    return dataclasses.replace(state, resources=resources)
