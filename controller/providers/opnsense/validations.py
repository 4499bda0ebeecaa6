"""The firewall's validation messages, pinned to the document field that caused them.

When OPNsense refuses a write it answers ``{"validations": {"rule.destination_port":
"..."}}``. The field names are the model's; this maps them back to the document's own
path, so the message is reported as ``FILE:LINE:COL: FirewallRule/x: spec.destination.port:
...``, like every other problem in a document.
"""

from __future__ import annotations

from controller.diagnostics import Diagnostic, format_path
from controller.errors import ValidationFailedError
from controller.model.document import Document

# API model field -> document path, where they differ in more than the "spec." prefix.
_RENAMED: dict[str, tuple[str, ...]] = {
    "source_net": ("spec", "source", "net"),
    "source_port": ("spec", "source", "port"),
    "source_not": ("spec", "source", "not"),
    "destination_net": ("spec", "destination", "net"),
    "destination_port": ("spec", "destination", "port"),
    "destination_not": ("spec", "destination", "not"),
}


def document_path(api_field: str) -> tuple[str, ...]:
    """``rule.destination_port`` -> ``("spec", "destination", "port")``."""
    field = api_field.split(".")[-1]
    return _RENAMED.get(field, ("spec", field))


def diagnostics(doc: Document, error: ValidationFailedError) -> list[Diagnostic]:
    found = []
    for api_field, messages in sorted(error.validations.items()):
        path = document_path(api_field)
        # Fields the document did not set (a default) point at the spec itself.
        where = doc.location(path)
        for message in messages:
            found.append(
                Diagnostic(
                    where,
                    f"the firewall refused it: {message}",
                    doc.subject,
                    format_path(path),
                )
            )
    return found
