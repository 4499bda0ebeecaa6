"""Is an NftTable ``definition`` the body of exactly one table, and nothing more?

FazAI wraps the definition in ``table FAMILY NAME { ... }`` and loads it with ``nft -f``.
A body that closes that brace itself (``}`` then ``flush ruleset`` then ``table inet x {``)
would run commands on the whole ruleset; ``include`` would read a file of the node (and
nft would quote its lines in an error); ``define`` and its kin change what later text
means. So the text is scanned the way nft's own scanner reads it (comments to the end of
the line, double-quoted strings without escapes, which may span lines): braces must
balance without ever going below the table's level, every statement at the table's level
must declare a table object, and the words nft uses for file and variable directives are
refused wherever they stand.

Pure and dependency-free: validate runs it with file and line, and apply runs it again
before any nft script leaves the controller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# What nft's grammar allows at the level of a table block (table_block in parser_bison.y),
# less the directives refused everywhere.
TABLE_OBJECTS = frozenset(
    {
        "chain", "set", "map", "flowtable", "counter", "quota", "ct", "limit",
        "secmark", "synproxy", "flags", "comment",
    }
)  # fmt: skip
# Read a file, or bind/unbind a variable for the rest of the load: never in a definition.
DIRECTIVES = frozenset({"include", "define", "redefine", "undefine"})
# Table flags that tie the table's life to a process: "owner" makes the kernel delete it
# when the nft process that loaded it exits (at once, for FazAI's load), "persist" keeps
# it past an owner's exit. Neither is a table FazAI can converge or roll back.
REFUSED_TABLE_FLAGS = frozenset({"owner", "persist"})
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
# Control characters nft would take as text or as nothing; tab, newline and CR are layout.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class BodyProblem:
    """Why a definition is not one table's body; ``line`` is 1-based within it."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"definition line {self.line}: {self.message}"


def check(definition: str) -> BodyProblem | None:
    """The first reason ``definition`` is not exactly one table's body, or None."""
    control = _CONTROL.search(definition)
    if control:
        line = definition.count("\n", 0, control.start()) + 1
        return BodyProblem(line, f"control character U+{ord(control.group()):04X} is not allowed")
    depth = 0
    line = 1
    opened: list[int] = []  # the line of each open brace
    statement_start = True  # the next word begins a statement
    table_flags = False  # inside a "flags" statement at the table's level
    i, end = 0, len(definition)
    while i < end:
        char = definition[i]
        if char == "\n":
            line += 1
            statement_start = True
            table_flags = False
            i += 1
        elif char in " \t\r":
            i += 1
        elif char == "#":
            newline = definition.find("\n", i)
            i = end if newline < 0 else newline
        elif char == '"':
            close = definition.find('"', i + 1)
            if close < 0:
                return BodyProblem(line, "a quoted string is never closed")
            line += definition.count("\n", i, close)
            statement_start = False
            i = close + 1
        elif char == ";":
            statement_start = True
            table_flags = False
            i += 1
        elif char == "{":
            depth += 1
            opened.append(line)
            statement_start = True
            i += 1
        elif char == "}":
            if depth == 0:
                return BodyProblem(
                    line, "'}' closes the table itself; a definition is only the table's body"
                )
            depth -= 1
            opened.pop()
            statement_start = True
            i += 1
        else:
            match = _WORD.match(definition, i)
            if match is None:
                statement_start = False
                i += 1
                continue
            word = match.group()
            if word.lower() in DIRECTIVES:
                return BodyProblem(line, f"'{word}' is not allowed in a definition")
            if table_flags and word.lower() in REFUSED_TABLE_FLAGS:
                return BodyProblem(
                    line,
                    f"table flag '{word}' is not allowed: it ties the table's life to the "
                    "process that loads it",
                )
            if statement_start and depth == 0 and word == "flags":
                table_flags = True
            if statement_start and depth == 0 and word not in TABLE_OBJECTS:
                allowed = ", ".join(sorted(TABLE_OBJECTS))
                return BodyProblem(
                    line,
                    f"'{word}' cannot stand in a table's body; it declares only table "
                    f"objects ({allowed})",
                )
            statement_start = False
            i = match.end()
    if depth:
        return BodyProblem(opened[-1], "'{' is never closed")
    return None
