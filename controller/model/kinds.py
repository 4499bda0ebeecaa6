"""The registry of document kinds.

A kind is its JSON Schema (a data file under ``schemas/``, the single source of truth for
validation, CRDs and editor completion) plus a few rules in code: the defaults that
depend on other fields, and the *instance key* that says which object on a node the
document claims (a path for ``File``, a name for ``Package``). A new kind is one schema
file and one :func:`register` call from its provider.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from controller.model.document import API_VERSION, Document

if TYPE_CHECKING:
    from controller.diagnostics import Diagnostic
    from controller.model.crosscheck import CheckContext

InstanceKey = Callable[[Mapping[str, Any]], str]
# The platform a document of a cross-platform kind belongs to, read from its spec (a
# Goal's checks say it); None when the spec cannot tell (its validation reports why).
PlatformOf = Callable[[Mapping[str, Any]], str | None]
# Rules one document must follow that its schema cannot say (they need other documents,
# the source tree, or a platform's own naming rules).
DocumentCheck = Callable[[Document, "CheckContext"], Iterable["Diagnostic"]]


@dataclass(frozen=True)
class Kind:
    name: str
    instance_key: InstanceKey | None = field(default=None, compare=False)
    # spec fields that default to metadata.name (a platform's own name for the object)
    name_field: str | None = None
    check: DocumentCheck | None = field(default=None, compare=False)
    # False for kinds that steer FazAI itself (Policy) instead of describing objects on
    # nodes: they have no spec.target, are never planned on a node, and DesiredState
    # keeps them apart (``controls``).
    targeted: bool = True
    # Kinds whose schema names no platform (Goal) say per document which one it is.
    platform_for: PlatformOf | None = field(default=None, compare=False)
    # False for kinds that describe an outcome, not an object (Goal): an apply of one
    # makes FazAI own nothing, so the inventory that decides prune never records it.
    claims_object: bool = True

    @property
    def spec_schema(self) -> Mapping[str, Any]:
        return load_schema(self.name.lower())

    @property
    def platform(self) -> str | None:
        platform = self.spec_schema.get("x-fazai-platform")
        return str(platform) if platform else None

    def platform_of(self, spec: Mapping[str, Any]) -> str | None:
        """The platform of one document of this kind: the schema's, or its spec's."""
        if self.platform is not None:
            return self.platform
        return self.platform_for(spec) if self.platform_for is not None else None

    def document_schema(self) -> dict[str, Any]:
        """The whole document's schema: the common envelope around this kind's spec."""
        envelope = json.loads(json.dumps(load_schema("_document")))
        envelope["title"] = f"{self.name} ({API_VERSION})"
        envelope["properties"]["kind"] = {"type": "string", "const": self.name}
        spec = dict(self.spec_schema)
        spec.pop("$schema", None)
        envelope["properties"]["spec"] = spec
        return dict(envelope)


_KINDS: dict[str, Kind] = {}


@cache
def load_schema(stem: str) -> Mapping[str, Any]:
    text = resources.files("controller.model").joinpath("schemas", f"{stem}.json").read_text()
    loaded: Mapping[str, Any] = json.loads(text)
    return loaded


def register(kind: Kind) -> Kind:
    _KINDS[kind.name] = kind
    return kind


def get(name: str) -> Kind | None:
    return _KINDS.get(name)


def names() -> list[str]:
    return sorted(_KINDS)


def platforms() -> set[str]:
    """The platforms whose kinds are registered (none until the entry point registers
    them: ``controller.providers.load_all()``)."""
    return {k.platform for k in _KINDS.values() if k.platform is not None}


def apply_defaults(kind: Kind, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level schema defaults, then ``name_field`` from metadata.name."""
    out = dict(spec)
    for prop, schema in kind.spec_schema.get("properties", {}).items():
        if prop not in out and "default" in schema:
            out[prop] = schema["default"]
    if kind.name_field and kind.name_field not in out:
        out[kind.name_field] = name
    return out


# Node checks differ per platform; each platform registers its own here.
NODE_CHECKS: dict[str, DocumentCheck] = {}


def _check_node(node: Document, context: CheckContext) -> Iterable[Diagnostic]:
    check = NODE_CHECKS.get(node.spec["platform"])
    return check(node, context) if check else ()


NODE = register(Kind("Node", check=_check_node))
