"""Safe YAML reading that keeps the position of every value and refuses hostile input.

PyYAML's composer gives a node graph with marks; we construct plain Python values from it
ourselves so that each field path keeps its line and column, duplicate keys are refused
(PyYAML silently keeps the last), and the expanded size and depth are bounded: an alias
bomb ("billion laughs") or a deeply nested file gets a clear refusal instead of eating the
machine or overflowing the stack.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from controller.model.diagnostics import Diagnostic, Location

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_VALUES = 100_000  # after alias expansion, per file

FieldPath = tuple[str | int, ...]

# The pure-Python loader on purpose: libyaml (CSafeLoader) segfaults on deeply nested
# input, while the Python composer raises RecursionError, which we turn into a refusal.
_Loader = yaml.SafeLoader


@dataclass
class RawDocument:
    """One YAML document of a file: its value and the position of every field in it."""

    file: str
    index: int  # 0-based position of the document in its file
    value: Any
    positions: dict[FieldPath, Location] = field(default_factory=dict)

    def location(self, path: FieldPath = ()) -> Location:
        """The position of ``path``, or of its deepest ancestor that exists."""
        for end in range(len(path), -1, -1):
            found = self.positions.get(path[:end])
            if found is not None:
                return found
        return Location(self.file)


class _TooBig(Exception):
    def __init__(self, message: str, mark: yaml.Mark | None) -> None:
        super().__init__(message)
        self.mark = mark


class _Builder:
    """Turns one composed node graph into Python values plus a position map."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.count = 0
        self.positions: dict[FieldPath, Location] = {}
        self.problems: list[Diagnostic] = []
        self._scalars = yaml.SafeLoader("")

    def where(self, node: yaml.Node) -> Location:
        mark = node.start_mark
        return Location(self.file, mark.line + 1, mark.column + 1)

    def build(self, node: yaml.Node, path: FieldPath, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise _TooBig(
                f"more than {MAX_VALUES} values after expanding aliases (alias bomb?)",
                node.start_mark,
            )
        if depth > MAX_DEPTH:
            raise _TooBig(f"nested deeper than {MAX_DEPTH} levels", node.start_mark)
        self.positions.setdefault(path, self.where(node))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _mapping(self, node: yaml.MappingNode, path: FieldPath, depth: int) -> dict[str, Any]:
        self._scalars.flatten_mapping(node)  # resolves "<<" merge keys
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str | int | bool | float) or isinstance(key, bool):
                self.problems.append(
                    Diagnostic(self.where(key_node), "mapping keys must be strings")
                )
                continue
            key = str(key)
            if key in out:
                self.problems.append(
                    Diagnostic(
                        self.where(key_node),
                        f"duplicate key {key!r} (first at line {self.positions[(*path, key)].line})",
                    )
                )
                continue
            self.positions[(*path, key)] = self.where(key_node)
            out[key] = self.build(value_node, (*path, key), depth + 1)
        return out

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            return self._scalars.construct_object(node, deep=False)
        except yaml.YAMLError as exc:
            self.problems.append(Diagnostic(self.where(node), f"invalid value: {exc}"))
            return None


def read_documents(file: str, data: bytes) -> tuple[list[RawDocument], list[Diagnostic]]:
    """Parse every YAML document of ``data``; never raises for bad input."""
    whole = Location(file)
    if len(data) > MAX_FILE_BYTES:
        return [], [Diagnostic(whole, f"file is larger than {MAX_FILE_BYTES} bytes; refusing")]
    if b"\x00" in data:
        return [], [Diagnostic(whole, "binary file (contains NUL bytes); expected YAML text")]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [Diagnostic(whole, f"not UTF-8 text (byte {exc.start}); expected YAML")]

    docs: list[RawDocument] = []
    problems: list[Diagnostic] = []
    try:
        for index, node in enumerate(_compose_all(text)):
            if node is None:
                continue
            builder = _Builder(file)
            try:
                value = builder.build(node, (), 0)
            except _TooBig as exc:
                problems.append(Diagnostic(_mark_location(file, exc.mark), str(exc)))
                continue
            problems.extend(builder.problems)
            if value is None:
                continue
            docs.append(RawDocument(file, index, value, builder.positions))
    except yaml.MarkedYAMLError as exc:
        problems.append(Diagnostic(_mark_location(file, exc.problem_mark), _yaml_message(exc)))
    except yaml.YAMLError as exc:
        problems.append(Diagnostic(whole, f"YAML error: {exc}"))
    except RecursionError:
        problems.append(Diagnostic(whole, f"nested deeper than {MAX_DEPTH} levels"))
    if not docs and not problems:
        problems.append(Diagnostic(whole, "file holds no YAML documents"))
    return docs, problems


def _compose_all(text: str) -> Iterator[yaml.Node | None]:
    loader = _Loader(text)
    try:
        while loader.check_node():
            yield loader.get_node()
    finally:
        loader.dispose()


def _mark_location(file: str, mark: yaml.Mark | None) -> Location:
    if mark is None:
        return Location(file)
    return Location(file, mark.line + 1, mark.column + 1)


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    parts = [p for p in (exc.context, exc.problem) if p]
    return "YAML syntax error: " + (", ".join(parts) if parts else "malformed document")
