"""CEL expressions: compiled once, checked for names the activation does not have.

The library is common-expression-language (bindings to the Rust cel crate): it compiles
a few rules in about a millisecond, evaluates 5 rules over 1,000 items in ~55 ms with a
shared context (cel-python: ~1.9 s), and its syntax errors carry line and column (see
bench/cel_libraries.py). It has no type checker, so names are checked here: every
variable must be one of the activation's, every field under a typed part must exist
(``activation.TYPED_FIELDS``), and a dry evaluation against a typed sample activation
catches wrong operand types and unknown functions on the paths it takes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.policy import activation, limits
from controller.policy.celengine import engine as cel

_POSITION = re.compile(r"<input>:(\d+):(\d+): (.*?)(?:\n|$)")
_STRING = re.compile(r"""(?s)[rR]?("(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')""")
# A member chain that starts at a variable (not after a '.', which would make it a field
# of something else): item.kind, node.facts.controllerInterfaces.
_CHAIN = re.compile(r"(?<![\w.])(item|node|run)\s*\.\s*([A-Za-z_]\w*)(?:\s*\.\s*([A-Za-z_]\w*))?")


# CEL's type names, which the library lists among an expression's variables.
_TYPES = frozenset(
    {"int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type", "type", "dyn"}
)


@dataclass(frozen=True)
class ExpressionError(Exception):
    """Where in the expression (1-based line and column) and what is wrong."""

    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return self.message


class Expression:
    """One compiled rule expression; ``evaluate`` raises EvaluationError on any failure."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._program = _compile(source)
        # What the expression reads, so that only that is built and handed to the
        # library for each item (its conversion of Python values is most of the cost).
        variables = frozenset(self._program.variables()) & frozenset(activation.VARIABLES)
        blank = _STRING.sub(lambda m: " " * len(m.group(0)), source)
        item = _root_fields(blank, "item")
        # When ``item`` is reached as a whole (item["fields"], [item].exists(i, i.fields...))
        # the text cannot say which keys of fields/spec are read: hand over all of them,
        # or a rule would see empty maps and silently never fire.
        whole = item is None
        self.needs = activation.Needs(
            variables,
            item,
            None if whole else _map_keys(source, blank, "fields"),
            None if whole else _map_keys(source, blank, "spec"),
            _root_fields(blank, "node"),
        )

    def evaluate(self, context: cel.Context | Mapping[str, Any]) -> bool:
        try:
            result = self._program.execute(context)
        except KeyError as exc:
            raise EvaluationError(f"no such key: {exc.args[0] if exc.args else exc}") from exc
        except Exception as exc:  # the library raises ValueError/TypeError/RuntimeError
            raise EvaluationError(_first_line(str(exc))) from exc
        if not isinstance(result, bool):
            raise EvaluationError(f"evaluated to {type(result).__name__}, not a boolean")
        return result


class EvaluationError(Exception):
    """A rule that could not be evaluated for an item: the stage denies the item."""


def compile_checked(source: str) -> Expression:
    """The compiled expression; ExpressionError when it exceeds a cost limit (``limits``),
    does not compile, or names a variable or field the activation does not have."""
    try:
        limits.check(_STRING.sub(lambda m: " " * len(m.group(0)), source))
    except limits.LimitError as exc:
        raise ExpressionError(*_line_column(source, exc.offset), exc.message) from None
    expression = Expression(source)
    _check_names(source, expression)
    _dry_run(expression)
    return expression


def _compile(source: str) -> Any:
    try:
        return cel.compile(source)
    except Exception as exc:  # ValueError, with the position in its text
        text = str(exc)
        found = _POSITION.search(text)
        if found is None:
            raise ExpressionError(1, 1, f"does not compile: {_first_line(text)}") from None
        line, column, why = int(found.group(1)), int(found.group(2)), found.group(3)
        raise ExpressionError(line, column, f"does not compile: {why}") from None


def _check_names(source: str, expression: Expression) -> None:
    variables = expression._program.variables()
    # Comprehension variables (x in all(x, ...)) are reported as variables too; only a
    # name that is bound nowhere in the text as a macro variable is unknown.
    bound = set(re.findall(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*(\w+)", source))
    for name in variables:
        if name not in activation.VARIABLES and name not in bound and name not in _TYPES:
            line, column = _position(source, re.compile(rf"(?<![\w.]){re.escape(name)}\b"))
            known = ", ".join(activation.VARIABLES)
            raise ExpressionError(line, column, f"unknown variable {name!r}; known: {known}")
    blank = _STRING.sub(lambda m: " " * len(m.group(0)), source)
    for found in _CHAIN.finditer(blank):
        root, first, second = found.group(1), found.group(2), found.group(3)
        if root in bound:
            continue
        fields = activation.TYPED_FIELDS[root]
        if first not in fields:
            at = found.start(2)
            raise ExpressionError(*_line_column(source, at), _unknown(root, first, fields))
        nested = activation.TYPED_FIELDS.get(f"{root}.{first}")
        if nested is not None and second is not None and second not in nested:
            at = found.start(3)
            raise ExpressionError(
                *_line_column(source, at), _unknown(f"{root}.{first}", second, nested)
            )


def _root_fields(blank: str, root: str) -> frozenset[str] | None:
    """The fields of variable ``root`` the expression names (``item.kind``: kind), or None
    when it uses the variable as a whole (``item["kind"]``, a macro over it): then all.
    ``blank`` is the source with its string literals blanked out."""
    names: set[str] = set()
    for found in re.finditer(rf"(?<![\w.]){root}\b(\s*\.\s*([A-Za-z_]\w*))?", blank):
        if found.group(2) is None:
            return None
        names.add(found.group(2))
    return frozenset(names)


_KEY = r"""(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')"""


def _map_keys(source: str, blank: str, field: str) -> frozenset[str] | None:
    """The keys of the map ``item.<field>`` that the expression reads (``item.fields.uid``,
    ``item.fields["uid"]``, ``"uid" in item.fields``), or None when it uses the map as a
    whole (``size(item.fields)``, a macro over it, a computed key): then all of them."""
    keys: set[str] = set()
    for found in re.finditer(rf"(?<![\w.])item\s*\.\s*{field}\b", blank):
        after = source[found.end() :]
        before = source[: found.start()]
        dotted = re.match(r"\s*\.\s*([A-Za-z_]\w*)", after)
        indexed = re.match(rf"\s*\[\s*{_KEY}\s*\]", after)
        tested = re.search(rf"{_KEY}\s+in\s*$", before)
        if dotted and dotted.group(1) not in ("all", "exists", "exists_one", "map", "filter"):
            keys.add(dotted.group(1))
        elif indexed:
            keys.add(indexed.group(1) if indexed.group(1) is not None else indexed.group(2))
        elif tested:
            keys.add(tested.group(1) if tested.group(1) is not None else tested.group(2))
        else:
            return None
    return frozenset(keys)


def _unknown(parent: str, name: str, fields: frozenset[str]) -> str:
    return f"{parent} has no field {name!r}; it has: {', '.join(sorted(fields))}"


def _dry_run(expression: Expression) -> None:
    """Evaluate on a typed sample. A missing key is tolerated only where keys depend on
    the item (``item.fields``, ``item.spec``, ``node.labels``): the sample is given that
    key there and evaluated again; a key still missing then was missing from a typed
    part (``item["nope"]``, an alias's ``i.nope``), which is the expression's mistake."""
    sample = activation.sample()
    added: set[str] = set()
    for _ in range(_DRY_RUN_KEYS):
        try:
            expression.evaluate(sample)
            return
        except EvaluationError as exc:
            cause = exc.__cause__
            if not isinstance(cause, KeyError):
                if added:
                    return  # a type error from the stand-in values given: not the rule's
                # The library's advice after the first sentence is long; the first says it.
                first = str(exc).split(". ", 1)[0].rstrip(".")
                raise ExpressionError(1, 1, f"fails on a sample item: {first}") from None
            key = str(cause.args[0]) if cause.args else ""
            if key in added:
                raise ExpressionError(
                    1, 1, f"names {key!r}, which is no field of item, node or run"
                ) from None
            added.add(key)
            _give_key(sample, key)
    # Still missing keys after so many: each was found in a free map; accept.


_DRY_RUN_KEYS = 16


def _give_key(sample: dict[str, Any], key: str) -> None:
    item, node = sample["item"], sample["node"]
    item["fields"][key] = {"live": None, "desired": None}
    item["spec"][key] = None
    node["labels"][key] = ""


def _position(source: str, pattern: re.Pattern[str]) -> tuple[int, int]:
    found = pattern.search(source)
    return _line_column(source, found.start() if found else 0)


def _line_column(source: str, offset: int) -> tuple[int, int]:
    before = source[:offset]
    line = before.count("\n") + 1
    return line, offset - (before.rfind("\n") + 1) + 1


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "error"
