"""``fazai validate`` for Policy documents: every rule's expression must compile and name
only what the activation has; the error points into the expression, in the file."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from controller.diagnostics import Diagnostic, Location
from controller.model import kinds
from controller.model.crosscheck import CheckContext
from controller.model.document import Document
from controller.policy.defaults import shipped_policies
from controller.policy.expressions import ExpressionError, compile_checked

SHIPPED_PREFIX = "fazai-"  # every shipped default's name starts so (policies/*.yaml)


def check_policy(document: Document, context: CheckContext) -> Iterator[Diagnostic]:
    if document.name.startswith(SHIPPED_PREFIX):
        # Verdicts name their policy: a repository policy must not pass for a default.
        yield Diagnostic(
            document.location(("metadata", "name")),
            f"names starting with {SHIPPED_PREFIX!r} are kept for the shipped defaults; "
            "choose another",
            document.subject,
            "metadata.name",
        )
    yield from _check_match(document)
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
        yield from _check_overrides(document, index, rule)


def _check_overrides(
    document: Document, index: int, rule: Mapping[str, Any]
) -> Iterator[Diagnostic]:
    """An allow names the shipped rules it lifts; each must exist, and only an allow
    lifts anything."""
    overrides = rule.get("overrides", [])
    if overrides and rule["effect"] != "allow":
        yield Diagnostic(
            document.location(("spec", "rules", index, "overrides")),
            "only an allow rule overrides anything; remove overrides or make the effect allow",
            document.subject,
            f"spec.rules[{index}].overrides",
        )
        return
    known = {f"{p.name}/{r.name}" for p in shipped_policies() for r in p.rules}
    for position, name in enumerate(overrides):
        if name not in known:
            yield Diagnostic(
                document.location(("spec", "rules", index, "overrides", position)),
                f"{name!r} is no shipped default rule; known: {', '.join(sorted(known))}",
                document.subject,
                f"spec.rules[{index}].overrides[{position}]",
            )


def _inside(
    document: Document, context: CheckContext, path: tuple[str | int, ...], line: int, column: int
) -> Location:
    """The file position of (line, column) of the expression at ``path``. Positions of
    fields are their keys': the value starts after the key's ':'; a block scalar (| or >)
    or a value on the next lines starts there, indented. Escapes in a quoted scalar can
    shift the column; the line stays right."""
    key = document.location(path)
    lines = _file_text(document, context).splitlines()
    if key.line <= 0 or key.line > len(lines):
        return key
    text = lines[key.line - 1]
    colon = text.find(":", key.column - 1)
    if colon < 0:
        return key
    start = colon + 1
    while start < len(text) and text[start] in " \t":
        start += 1
    rest = text[start:]
    if not rest or rest[0] in "|>#":
        target = key.line + line
        if target > len(lines):
            return key
        # The block's indentation is its first line's; later lines may indent more.
        first = lines[key.line] if key.line < len(lines) else ""
        return Location(key.file, target, len(first) - len(first.lstrip(" ")) + column)
    quoted = 1 if rest[0] in "'\"" else 0
    if line == 1:
        return Location(key.file, key.line, start + 1 + quoted + column - 1)
    return Location(key.file, key.line + line - 1, column)


def _file_text(document: Document, context: CheckContext) -> str:
    key = f"policy-text:{document.file}"
    if key not in context.memo:
        try:
            context.memo[key] = context.tree.read(document.file).decode("utf-8", "replace")
        except Exception:  # the file was read once already; at worst the column is coarse
            context.memo[key] = ""
    text: str = context.memo[key]
    return text


def _check_match(document: Document) -> Iterator[Diagnostic]:
    """A kind no one registered matches nothing: the policy would silently never apply
    (``Usr`` for ``User``). Platforms are an enum of the schema already."""
    known = kinds.names()
    for index, name in enumerate(document.spec.get("match", {}).get("kinds", [])):
        if name not in known:
            yield Diagnostic(
                document.location(("spec", "match", "kinds", index)),
                f"{name!r} is no known kind; known: {', '.join(known)}",
                document.subject,
                f"spec.match.kinds[{index}]",
            )
