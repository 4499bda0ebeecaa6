"""``fazai validate`` for Policy documents: every rule's expression must compile and name
only what the activation has; the error points into the expression, in the file."""

from __future__ import annotations

from collections.abc import Iterator

from controller.model.crosscheck import CheckContext
from controller.model.diagnostics import Diagnostic, Location
from controller.model.document import Document
from controller.policy.expressions import ExpressionError, compile_checked


def check_policy(document: Document, context: CheckContext) -> Iterator[Diagnostic]:
    seen: dict[str, int] = {}
    for index, rule in enumerate(document.spec["rules"]):
        path = ("spec", "rules", index, "expression")
        dotted = f"spec.rules[{index}].expression"
        try:
            compile_checked(rule["expression"])
        except ExpressionError as exc:
            where = _inside(document, context, path, exc.line, exc.column)
            yield Diagnostic(where, exc.message, document.subject, dotted)
        name = rule["name"]
        if name in seen:
            yield Diagnostic(
                document.location(("spec", "rules", index, "name")),
                f"duplicate rule name {name!r}; first used by spec.rules[{seen[name]}]",
                document.subject,
                f"spec.rules[{index}].name",
            )
        seen.setdefault(name, index)


def _inside(
    document: Document, context: CheckContext, path: tuple[str | int, ...], line: int, column: int
) -> Location:
    """The file position of (line, column) of the expression at ``path``: a plain or
    quoted scalar starts where its value does, a block scalar (| or >) on the next line,
    indented. Escapes in quoted scalars can shift the column; the line stays right."""
    start = document.location(path)
    text = _file_text(document, context)
    lines = text.splitlines()
    if start.line <= 0 or start.line > len(lines):
        return start
    first = lines[start.line - 1][start.column - 1 :]
    if first[:1] in ("|", ">"):
        target = start.line + line
        if target > len(lines):
            return start
        body = lines[target - 1]
        indent = len(body) - len(body.lstrip(" "))
        return Location(start.file, target, indent + column)
    quoted = 1 if first[:1] in ("'", '"') else 0
    if line == 1:
        return Location(start.file, start.line, start.column + quoted + column - 1)
    return Location(start.file, start.line + line - 1, column)


def _file_text(document: Document, context: CheckContext) -> str:
    key = f"policy-text:{document.file}"
    if key not in context.memo:
        try:
            context.memo[key] = context.tree.read(document.file).decode("utf-8", "replace")
        except Exception:  # the file was read once already; at worst the column is coarse
            context.memo[key] = ""
    text: str = context.memo[key]
    return text
