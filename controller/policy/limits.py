"""Static cost limits on a rule's expression, checked at validate and when a set is built.

The CEL library has no cost budget and holds the GIL while it evaluates, so one costly
rule would freeze ``fazai serve`` (and ``fazai validate``'s dry run). A CEL expression
has no loops and no recursion: its cost is its length times the product of the sizes of
the lists its nested comprehensions range over. So the limits bound the cost:

- at most ``MAX_LENGTH`` characters (the schema's maxLength too);
- comprehensions (all, exists, exists_one, map, filter) nested at most ``MAX_NESTING``
  deep: n^2, not n^k, in the size of the largest list;
- list and map literals of at most ``MAX_LITERAL`` entries.

With them the worst case measured (bench/policy_limits.py) is in the README's Policies
section. Lists from the item itself (an alias's content) are as long as the document
says: that cost is the repository's own data, squared at most.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LENGTH = 4096
MAX_NESTING = 2
MAX_LITERAL = 256

_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})


@dataclass(frozen=True)
class LimitError(Exception):
    offset: int  # into the source, 0-based
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class _Open:
    """An open bracket: a literal counts its entries; a comprehension's call nests."""

    literal: bool
    macro: bool
    entries: int = 1


def check(blank: str) -> None:
    """LimitError when ``blank`` (the source with its string literals blanked out, so
    brackets and commas inside strings do not count) exceeds a limit."""
    if len(blank) > MAX_LENGTH:
        raise LimitError(MAX_LENGTH, f"longer than {MAX_LENGTH} characters ({len(blank)})")
    stack: list[_Open] = []
    nesting = 0
    for offset, char in enumerate(blank):
        if char in "([{":
            macro = _macro_before(blank, offset) if char == "(" else None
            literal = char == "{" or (char == "[" and not _indexes(blank, offset))
            if macro is not None:
                nesting += 1
                if nesting > MAX_NESTING:
                    raise LimitError(
                        offset,
                        f"comprehensions ({macro} inside another) nested more than "
                        f"{MAX_NESTING} deep: the cost grows as the list size to that power",
                    )
            stack.append(_Open(literal, macro is not None))
        elif char in ")]}":
            if stack and stack.pop().macro:
                nesting -= 1
        elif char == "," and stack and stack[-1].literal:
            stack[-1].entries += 1
            if stack[-1].entries > MAX_LITERAL:
                raise LimitError(offset, f"a list or map literal with over {MAX_LITERAL} entries")


def _skip_space(text: str, end: int) -> int:
    while end > 0 and text[end - 1].isspace():
        end -= 1
    return end


def _macro_before(text: str, offset: int) -> str | None:
    """The comprehension whose call the '(' at ``offset`` opens (``.all (``), if any."""
    end = _skip_space(text, offset)
    start = end
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
        start -= 1
    name = text[start:end]
    dot = _skip_space(text, start)
    return name if name in _MACROS and dot > 0 and text[dot - 1] == "." else None


def _indexes(text: str, offset: int) -> bool:
    """Whether the '[' at ``offset`` indexes what precedes it (else: a list literal)."""
    end = _skip_space(text, offset)
    start = end
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
        start -= 1
    if text[start:end] == "in" and (start == 0 or text[start - 1] != "."):
        return False  # ``x in [...]``: the operator, then a literal
    return end > 0 and (text[end - 1].isalnum() or text[end - 1] in "_])")
