"""Every rendering of a report, by format name."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from controller.reports import render_html, render_json, render_markdown, render_text
from controller.reports.model import DriftReport

RENDERERS: dict[str, Callable[[DriftReport], str]] = {
    "markdown": render_markdown.render,
    "json": render_json.render,
    "html": render_html.render,
    "text": render_text.render,
}
EXTENSIONS = {"markdown": "md", "json": "json", "html": "html", "text": "txt"}


def render(report: DriftReport, formats: Iterable[str]) -> dict[str, str]:
    """``{extension: text}`` for each format, in the order given."""
    return {EXTENSIONS[f]: RENDERERS[f](report) for f in formats}
