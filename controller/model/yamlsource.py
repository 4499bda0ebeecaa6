"""Safe YAML reading that keeps the position of every value and refuses hostile input.

PyYAML's composer gives a node graph with marks; we construct plain Python values from it
ourselves so that each field path keeps its line and column, duplicate keys are refused
(PyYAML silently keeps the last), and the expanded size and depth are bounded: an alias
bomb ("billion laughs") or a deeply nested file gets a clear refusal instead of eating the
machine or overflowing the stack.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.resolver import BaseResolver

from controller.diagnostics import Diagnostic, Location, format_path

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_VALUES = 100_000  # after alias expansion, per file

FieldPath = tuple[str | int, ...]

# Tags a collection may carry: the implicit ones. Any other (``!!set``, ``!!omap``,
# ``!!python/object:...``, a local ``!foo``) would silently change what the data means.
_COLLECTION_TAGS = (BaseResolver.DEFAULT_MAPPING_TAG, BaseResolver.DEFAULT_SEQUENCE_TAG)
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"


_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_DECIMAL_INT = re.compile(r"[-+]?(0|[1-9][0-9_]*)")


class Numeral(int):
    """An int that YAML 1.1 read from other than decimal digits (``1:30`` is 90, ``0x10``
    16, ``010`` 8); ``text`` is what was written. Made only where the reader is asked to
    (``numerals=True``: fazai.yaml), so a schema can refuse such syntax where it surprises
    (a duration) and leave it be elsewhere."""

    text: str

    def __new__(cls, value: int, text: str) -> Numeral:
        made = super().__new__(cls, value)
        made.text = text
        return made


class FloatNumeral(float):
    """A float YAML 1.1 read from sexagesimal syntax (``1:30.5`` is 90.5); see Numeral."""

    text: str

    def __new__(cls, value: float, text: str) -> FloatNumeral:
        made = super().__new__(cls, value)
        made.text = text
        return made


class _TooBig(Exception):
    def __init__(self, message: str, mark: yaml.Mark | None) -> None:
        super().__init__(message)
        self.mark = mark


class _Loader(yaml.SafeLoader):
    """The pure-Python loader on purpose: libyaml (CSafeLoader) segfaults on deeply nested
    input. The composer recurses once per level, so it counts them and refuses at
    MAX_DEPTH, with a position, long before Python's RecursionError."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self._depth > MAX_DEPTH:
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise _TooBig(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


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


class _Builder:
    """Turns one composed node graph into Python values plus a position map."""

    def __init__(self, file: str, numerals: bool = False) -> None:
        self.file = file
        self.numerals = numerals
        self.count = 0
        self.positions: dict[FieldPath, Location] = {}
        self.problems: list[Diagnostic] = []
        # Set when a value could not be read at all: the document then holds None in its
        # place, and validating it would only add misleading errors ("kind is missing").
        self.broken = False
        self._merged: dict[int, int] = {}  # id(mapping node) -> merged pairs at its start
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
        if isinstance(node, yaml.CollectionNode) and node.tag not in _COLLECTION_TAGS:
            self._refuse(node, path, f"unsupported tag {_short_tag(node.tag)!r}")
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: FieldPath, depth: int) -> dict[str, Any]:
        merged = self._flatten(node, path)
        if merged is None:
            return {}
        out: dict[str, Any] = {}
        from_merge: set[str] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = self._scalar(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str | int | float) or isinstance(key, bool):
                self.problems.append(
                    Diagnostic(
                        self.where(key_node), "mapping keys must be strings", path=format_path(path)
                    )
                )
                continue
            key = str(key)
            if key in out and key not in from_merge:
                first = self.positions[(*path, key)]
                self.problems.append(
                    Diagnostic(
                        self.where(key_node),
                        f"duplicate key {key!r} "
                        f"(first at line {first.line}, column {first.column})",
                        path=format_path((*path, key)),
                    )
                )
                continue
            if key in out:
                # A merged-in key is overridden by a later one, as the merge spec says; drop
                # the positions of the value it replaces.
                self._forget((*path, key))
            if index < merged:
                from_merge.add(key)
            else:
                from_merge.discard(key)
            self.positions[(*path, key)] = self.where(key_node)
            out[key] = self.build(value_node, (*path, key), depth + 1)
        return out

    def _flatten(self, node: yaml.MappingNode, path: FieldPath) -> int | None:
        """Resolve "<<" merge keys in place; the number of merged pairs, which come first."""
        if id(node) in self._merged:  # the same node again, through an alias
            return self._merged[id(node)]
        merge = next((k for k, _ in node.value if k.tag == _MERGE_TAG), None)
        own = sum(1 for k, _ in node.value if k.tag != _MERGE_TAG)
        try:
            self._scalars.flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            # PyYAML points at the anchored value, maybe far away: point at the "<<" instead.
            self._refuse(merge or node, path, f"merge key '<<': {exc.problem}")
            return None
        self._merged[id(node)] = len(node.value) - own
        return self._merged[id(node)]

    def _forget(self, prefix: FieldPath) -> None:
        for known in [p for p in self.positions if p[: len(prefix)] == prefix]:
            del self.positions[known]

    def _scalar(self, node: yaml.Node, path: FieldPath) -> Any:
        if node.tag == _STR_TAG:
            # Most values are plain strings: skip the constructor's dispatch for them.
            return node.value
        if node.tag not in _Loader.yaml_constructors:
            # ``!!python/name:...`` or a local ``!foo``: SafeLoader refuses them anyway,
            # but in words that name PyYAML's internals.
            self._refuse(node, path, f"unsupported tag {_short_tag(node.tag)!r}")
            return None
        try:
            value = self._scalars.construct_object(node, deep=False)
        except yaml.MarkedYAMLError as exc:
            # ``problem`` alone: str(exc) repeats the position and quotes the source line.
            self._refuse(node, path, f"invalid value: {exc.problem or exc}")
            return None
        except (yaml.YAMLError, ValueError, TypeError, OverflowError):
            # The resolver trusts explicit tags, so ``!!int abc`` or ``!!float x`` reach
            # int()/float() and fail there rather than in PyYAML; their words add nothing.
            self._refuse(node, path, f"{node.value!r} is not a valid {_short_tag(node.tag)}")
            return None
        if isinstance(value, float) and math.isnan(value):
            # NaN compares false with every bound, so it would pass any minimum/maximum.
            self._refuse(node, path, "'.nan' is not a usable number")
            return None
        if self.numerals and isinstance(node, yaml.ScalarNode):
            text = str(node.value)
            if node.tag == _INT_TAG and type(value) is int and not _DECIMAL_INT.fullmatch(text):
                return Numeral(value, text)
            if node.tag == _FLOAT_TAG and type(value) is float and ":" in text:
                return FloatNumeral(value, text)
        return value

    def _refuse(self, node: yaml.Node, path: FieldPath, message: str) -> None:
        self.broken = True
        self.problems.append(Diagnostic(self.where(node), message, path=format_path(path)))


def read_documents(
    file: str,
    data: bytes,
    *,
    skip: Callable[[Any], bool] | None = None,
    skipped: list[Location] | None = None,
    numerals: bool = False,
) -> tuple[list[RawDocument], list[Diagnostic]]:
    """Parse every YAML document of ``data``; never raises for bad input.

    With ``numerals``, an int or float YAML 1.1 read from other than decimal syntax is a
    :class:`Numeral` or :class:`FloatNumeral`, which remembers what was written.

    A document for which ``skip`` is true (another tool's) is left out with its
    problems, and its position appended to ``skipped``."""
    passed: list[Location] = [] if skipped is None else skipped
    already = len(passed)
    whole = Location(file)
    if len(data) > MAX_FILE_BYTES:
        return [], [Diagnostic(whole, f"file is larger than {MAX_FILE_BYTES} bytes; refusing")]
    if b"\x00" in data:
        return [], [Diagnostic(whole, "binary file (contains NUL bytes); expected YAML text")]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 1].hex()
        # Characters, not bytes, before the bad byte: editors count columns that way.
        before = data[: exc.start].decode("utf-8-sig", "replace")
        where = _offset_location(file, before, len(before))
        return [], [Diagnostic(where, f"invalid UTF-8 (byte 0x{bad}); YAML files must be UTF-8")]

    docs: list[RawDocument] = []
    problems: list[Diagnostic] = []
    built: list[_Built] = []
    try:
        for index, node in enumerate(_compose_all(text)):
            if node is None:
                continue
            builder = _Builder(file, numerals)
            try:
                value = builder.build(node, (), 0)
            except _TooBig as exc:
                problems.append(Diagnostic(_mark_location(file, exc.mark), str(exc)))
                continue
            built.append(_Built(index, node, value, builder, skip is not None and skip(value)))
    except yaml.MarkedYAMLError as exc:
        problems.append(Diagnostic(_mark_location(file, exc.problem_mark), _yaml_message(exc)))
    except _TooBig as exc:
        problems.append(Diagnostic(_mark_location(file, exc.mark), str(exc)))
    except yaml.reader.ReaderError as exc:
        # A control character: PyYAML gives only a character offset, so find its line.
        problems.append(
            Diagnostic(
                _offset_location(file, text, exc.position),
                f"control character U+{_code_point(exc.character):04X} is not allowed in YAML "
                "text; remove it, or write it as an escape inside double quotes",
            )
        )
    except yaml.YAMLError as exc:
        problems.append(Diagnostic(whole, f"YAML error: {exc}"))
    except RecursionError:
        problems.append(Diagnostic(whole, f"nested deeper than {MAX_DEPTH} levels"))
    # A file that holds one FazAI document is FazAI's: anything else in it is a FazAI
    # document gone wrong, never another tool's to skip (that would drop desired state).
    ours_file = any(not b.foreign for b in built)
    built_problems: list[Diagnostic] = []
    for b in built:
        if b.foreign and not ours_file:
            passed.append(_mark_location(file, b.node.start_mark))
            continue
        subject = _subject(b.value)
        built_problems.extend(dataclasses.replace(p, subject=subject) for p in b.builder.problems)
        if b.value is None or b.builder.broken:
            continue
        docs.append(RawDocument(file, b.index, b.value, b.builder.positions))
    problems[:0] = built_problems
    if not docs and not problems and len(passed) == already:
        problems.append(Diagnostic(whole, "file holds no YAML documents"))
    return docs, problems


@dataclass(frozen=True)
class _Built:
    """One composed document, kept until the whole file says whether it is FazAI's."""

    index: int
    node: yaml.Node
    value: Any
    builder: _Builder
    foreign: bool


_FAST: type[Any] | None = getattr(yaml, "CSafeLoader", None)


def _compose_all(text: str) -> Iterator[yaml.Node | None]:
    """Composed documents: libyaml when the text is well-formed and shallow, else Python.

    libyaml composes ten times faster but recurses in C (and crashes) on deep nesting,
    and words its errors differently; so it runs only after its own event stream, which
    does not recurse, shows sane depth. Anything it refuses is composed again by the
    Python loader, which produces the positions and messages users see."""
    fast = _compose_fast(text)
    if fast is not None:
        yield from fast
        return
    yield from _compose_slow(text)


def _compose_fast(text: str) -> list[yaml.Node | None] | None:
    if _FAST is None:
        return None
    try:
        depth = 0
        for event in yaml.parse(text, Loader=_FAST):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    return None
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        loader = _FAST(text)
        try:
            nodes: list[yaml.Node | None] = []
            while loader.check_node():
                nodes.append(loader.get_node())
            return nodes
        finally:
            loader.dispose()
    except yaml.YAMLError:
        return None


def _compose_slow(text: str) -> Iterator[yaml.Node | None]:
    loader = _Loader(text)
    try:
        while loader.check_node():
            yield loader.get_node()
    finally:
        loader.dispose()


def _subject(value: Any) -> str:
    """``Kind/name`` for diagnostics found before validation, when the value says them."""
    if not isinstance(value, dict):
        return ""
    kind, metadata = value.get("kind"), value.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if isinstance(kind, str) and isinstance(name, str):
        return f"{kind}/{name}"
    return kind if isinstance(kind, str) else ""


def _short_tag(tag: str) -> str:
    """``tag:yaml.org,2002:int`` -> ``!!int``, the way it is written in YAML."""
    prefix = "tag:yaml.org,2002:"
    return "!!" + tag.removeprefix(prefix) if tag.startswith(prefix) else tag


def _code_point(character: int | str) -> int:
    return character if isinstance(character, int) else ord(character[:1] or "\0")


def _offset_location(file: str, text: str, offset: int) -> Location:
    before = text[:offset]
    return Location(file, before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1)


def _mark_location(file: str, mark: yaml.Mark | None) -> Location:
    if mark is None:
        return Location(file)
    return Location(file, mark.line + 1, mark.column + 1)


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    context, mark, problem = exc.context, exc.context_mark, exc.problem_mark
    if context and mark is not None and (problem is None or mark.line != problem.line):
        # The error is reported where parsing gave up, often lines after the real mistake
        # (an unclosed '[' or quote): say where the construct began.
        context += f" started at line {mark.line + 1}, column {mark.column + 1}"
    parts = [p for p in (context, exc.problem) if p]
    return "YAML syntax error: " + (", ".join(parts) if parts else "malformed document")
