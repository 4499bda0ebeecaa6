"""A validated desired-state document.

Equality and hashing use only the identity (kind, name), in the manner of kopf's
identity dataclasses: two documents are "the same resource" whatever their specs say.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.diagnostics import Location
from controller.model.yamlsource import FieldPath, RawDocument

API_VERSION = "fazai.dev/v1alpha1"


@dataclass(frozen=True)
class Document:
    kind: str
    name: str
    spec: Mapping[str, Any] = field(compare=False)
    labels: Mapping[str, str] = field(compare=False, default_factory=dict)
    raw: RawDocument | None = field(compare=False, default=None, repr=False)

    @property
    def subject(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def file(self) -> str:
        return self.raw.file if self.raw else "<memory>"

    def location(self, path: FieldPath = ()) -> Location:
        if self.raw is None:
            return Location("<memory>")
        return self.raw.location(path)
