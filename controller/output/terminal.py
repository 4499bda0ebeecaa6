"""Text for people, made safe to show: control characters become visible escapes.

Descriptions, file contents, error messages and node output are written by whoever
controls a document, a pull request or a node. Printed raw, ``\\e[2J`` clears the
reviewer's screen, ``\\r`` or cursor movement rewrites a line already shown (a plan that
looks harmless above the "Apply these changes?" prompt), and a bidi override reorders
what is read. Every text rendering goes through :func:`clean` (or a
:class:`SafeConsole`, which cleans each piece of text rich writes, but not the styles
FazAI itself adds), so such characters are shown as ``\\x1b``, ``\\r``, ``\\u202e``.

Escaped: C0 controls except tab and newline (newline too where a value must stay on
one line), DEL, C1 controls, and the bidirectional embeddings, overrides and isolates
("Trojan Source"). JSON output is left to its encoder, which escapes C0 itself.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import click
from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment

_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_CODES = (*(c for c in range(0x20) if c not in (0x09, 0x0A)), 0x7F, *range(0x80, 0xA0), *_BIDI)


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_TABLE = {code: _escape(code) for code in _CODES}
_TABLE[0x0D] = "\\r"
_ONE_LINE = {**_TABLE, 0x0A: "\\n"}
_UNSAFE = re.compile("[" + "".join(re.escape(chr(c)) for c in _CODES) + "]")
_UNSAFE_ONE_LINE = re.compile("[\n" + "".join(re.escape(chr(c)) for c in _CODES) + "]")


def clean(text: str, *, one_line: bool = False) -> str:
    """``text`` with control characters written as escapes; ``one_line`` escapes newlines
    too, for a value that must not start a line of its own (it could pose as one)."""
    if one_line:
        return text.translate(_ONE_LINE) if _UNSAFE_ONE_LINE.search(text) else text
    return text.translate(_TABLE) if _UNSAFE.search(text) else text


def is_clean(text: str) -> bool:
    """Whether :func:`clean` would leave ``text`` as it is (newlines aside)."""
    return _UNSAFE.search(text) is None


def echo(text: str, **options: Any) -> None:
    """``click.echo`` of cleaned text."""
    click.echo(clean(text), **options)


class SafeConsole(Console):
    """A rich Console whose printed text is cleaned; its own styling and cursor control
    (progress bars) are not text and pass as they are."""

    def render(
        self, renderable: RenderableType, options: ConsoleOptions | None = None
    ) -> Iterator[Segment]:
        for segment in super().render(renderable, options):
            if segment.control or not _UNSAFE.search(segment.text):
                yield segment
            else:
                yield Segment(clean(segment.text), segment.style, segment.control)


class SafeFormatter(logging.Formatter):
    """Log lines cleaned like any other text (``fazai serve`` logs to a terminal or a
    journal that someone reads with a pager)."""

    def format(self, record: logging.LogRecord) -> str:
        return clean(super().format(record))
