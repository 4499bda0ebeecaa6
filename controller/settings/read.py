"""Reading ``fazai.yaml`` itself: one mapping, with the position of every field.

The file is read with the documents' hardened YAML reader
(:mod:`controller.model.yamlsource`: no aliases bombs, no duplicate keys, no unusable
numbers), so every later problem can be pinned to ``FILE:LINE:COL`` through
:meth:`RawDocument.location`. Whoever needs the file (``fazai serve``'s loader,
``fazai review --config``) reads it here, never with a YAML library of its own.
"""

from __future__ import annotations

from pathlib import Path

from controller.diagnostics import Diagnostic, Location
from controller.errors import InvalidInputError
from controller.model.yamlsource import RawDocument, read_documents

SUBJECT = "ControllerConfig"


class InvalidConfigError(InvalidInputError):
    """The config file is unusable; ``diagnostics`` lists every problem, sorted."""

    def __init__(self, diagnostics: list[Diagnostic] | tuple[Diagnostic, ...]) -> None:
        super().__init__(sorted(diagnostics))
        errors = sum(1 for d in self.diagnostics if d.is_error)
        self.args = (f"{errors} error(s) in the controller's config",)


def read_bytes(data: bytes, file: str) -> RawDocument:
    """The one mapping ``data`` holds; InvalidConfigError, with positions, otherwise."""
    # numerals: so the schema can refuse a duration written 1:30 (YAML 1.1 reads 90).
    raws, problems = read_documents(file, data, numerals=True)
    if problems:
        raise InvalidConfigError(problems)
    if len(raws) != 1:
        where = raws[1].location() if len(raws) > 1 else Location(file)
        raise InvalidConfigError([Diagnostic(where, "the config file holds one document", SUBJECT)])
    raw = raws[0]
    if not isinstance(raw.value, dict):
        raise InvalidConfigError(
            [Diagnostic(raw.location(), "the config must be a mapping", SUBJECT)]
        )
    return raw


def read_file(path: Path) -> RawDocument:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidConfigError(
            [Diagnostic(Location(str(path)), f"cannot read: {exc.strerror or exc}", SUBJECT)]
        ) from exc
    return read_bytes(data, str(path))
