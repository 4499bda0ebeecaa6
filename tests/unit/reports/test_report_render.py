"""Markdown, JSON (against its schema), the self-contained HTML page and its SVG chart."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest
from markdown_it import MarkdownIt

from controller.reports import build, chart, history, render_html, render_json, render_markdown
from controller.reports.model import (
    DriftedResource,
    DriftReport,
    FieldChange,
    NodeSummary,
    SeriesPoint,
    SourceRef,
)
from controller.store import StateStore
from tests.unit.reports.handlekit import START, Clock, record_run, recorded, recorded_plan

EVIL = '<script>alert("pwned")</script>'
ATTR = '"><img src=x onerror=alert(1)>'

ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "span", "div",
    "b", "table", "thead", "tbody", "tr", "th", "td", "code", "pre", "details", "summary",
    "svg", "line", "text", "polyline", "circle", "rect",
}  # fmt: skip


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)


def parsed(html: str) -> Tags:
    parser = Tags()
    parser.feed(html)
    return parser


def hostile_report() -> DriftReport:
    """Every string a node, a document or a source controls, set to markup."""
    change = FieldChange(EVIL, EVIL, {"k": EVIL}, diff=f"--- a\n+++ b\n-{EVIL}\n+x|y`z\n")
    resource = DriftedResource(EVIL, EVIL, EVIL, f"n|a`m{EVIL}", "update", (change,), EVIL)
    node = NodeSummary(EVIL, EVIL, EVIL, "detect", START, ATTR, update=1, errors=1, error=EVIL)
    source = SourceRef(EVIL, EVIL, EVIL, ATTR, START, EVIL)
    point = SeriesPoint(
        1, START - timedelta(hours=1), EVIL, ATTR, "plan", "cli", 1, 1, ((EVIL, 1),)
    )
    return DriftReport(EVIL, START, 1, (source,), (node,), (resource,), (point,))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[StateStore, Clock]]:
    clock = Clock()
    with StateStore(tmp_path / "state.db", now=clock) as opened:
        yield opened, clock


def drift_report(series: tuple[SeriesPoint, ...] = ()) -> DriftReport:
    return build.from_plan(
        recorded_plan("plan_1_drift"), title="daily", generated=START, window_days=30, series=series
    )


# markdown ---------------------------------------------------------------------------------


def test_markdown_has_the_node_table_the_changes_and_the_diff() -> None:
    text = render_markdown.render(drift_report())
    assert text.startswith("# FazAI drift report: daily\n")
    assert "**❌ trouble**: 6 drifted resources on 3 of 4 nodes, 1 node unreadable." in text
    assert "| `rep-db-1` | linux | - | 1 | 1 | 0 | 0 |" in text
    assert "⚠️ no answer from 10.231.23.99:22 within 2 s" in text
    assert "- `~` `File/motd-web` update" in text
    assert "  - `mode`: `0600` → `0644`" in text
    assert "    +Authorized use only." in text
    assert "No run recorded in this period." in text


def test_markdown_keeps_hostile_names_inert_and_tables_whole() -> None:
    text = render_markdown.render(hostile_report())
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(text)
    tags = parsed(html)
    assert "script" not in tags.tags and "img" not in tags.tags
    assert "<script" not in html
    # Every row of the node table has its ten cells, whatever the names held.
    node_table = [ln for ln in text.splitlines() if ln.startswith("| ") and "detect" in ln]
    assert len(node_table) == 1
    cells = re.split(r"(?<!\\)\|", node_table[0].strip())[1:-1]
    assert len(cells) == 10


def test_code_spans_survive_backticks_and_empty_values() -> None:
    assert render_markdown.code("a`b") == "``a`b``"
    assert render_markdown.code("`x`") == "`` `x` ``"
    assert render_markdown.code("") == '`""`'
    assert render_markdown.code(" ") == "`   `"
    assert render_markdown.code("a|b\nc") == "`a\\|b⏎c`"


def test_sparkline_buckets_keep_the_peaks() -> None:
    points = [
        SeriesPoint(i, START + timedelta(minutes=i), "s", None, "plan", "cli", d, 0)
        for i, d in enumerate([0, 0, 8, 0] * 30)
    ]
    line = render_markdown.sparkline(points, width=12)
    assert len(line) == 12 and set(line) == {"█"}  # every bucket of 10 holds an 8
    assert render_markdown.sparkline(points[:4]) == "▁▁█▁"


# JSON -------------------------------------------------------------------------------------


def test_json_report_validates_against_its_schema(store: tuple[StateStore, Clock]) -> None:
    db, clock = store
    record_run(db, clock, recorded("plan_1_drift"), START - timedelta(days=2))
    record_run(db, clock, recorded("plan_2_partial"), START - timedelta(days=1))
    series = history.drift_series(db, START - timedelta(days=30))
    validator = jsonschema.Draft202012Validator(
        render_json.schema(), format_checker=jsonschema.FormatChecker()
    )
    for report in (
        drift_report(series),
        hostile_report(),
        build.from_plan(recorded_plan("plan_3_in_sync"), title="t", generated=START, window_days=1),
    ):
        document = json.loads(render_json.render(report))
        errors = [e.message for e in validator.iter_errors(document)]
        assert errors == []
    document = json.loads(render_json.render(drift_report(series)))
    assert document["summary"] == {
        "nodes": 4,
        "nodesDrifted": 3,
        "nodesFailed": 1,
        "drifted": 6,
        "create": 4,
        "update": 2,
        "delete": 0,
        "errors": 0,
    }
    assert [p["drifted"] for p in document["series"]] == [6, 4]
    assert document["series"][1]["nodes"] == {"edge-fw": 2, "rep-db-1": 2}
    assert document["exitCode"] == 2


def test_the_schema_refuses_a_report_missing_a_field() -> None:
    document = json.loads(render_json.render(drift_report()))
    del document["resources"][0]["changes"]
    validator = jsonschema.Draft202012Validator(render_json.schema())
    assert [e.validator for e in validator.iter_errors(document)] == ["required"]


# HTML -------------------------------------------------------------------------------------


def test_html_is_one_self_contained_page_without_any_script() -> None:
    page = render_html.render(drift_report())
    tags = parsed(page)
    assert set(tags.tags) <= ALLOWED_TAGS
    assert not [a for a in tags.attrs if a[0] in ("src", "href", "action", "srcset")]
    assert "@import" not in page and "url(" not in page
    csp = next(v for k, v in tags.attrs if k == "content" and v and "default-src" in v)
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert "<h2>Nodes</h2>" in page and "<svg" in page
    assert "rep-gone" in page and "no answer from 10.231.23.99:22 within 2 s" in page
    assert "Web tier &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page  # recorded value


def test_html_renders_script_in_every_field_as_text() -> None:
    page = render_html.render(hostile_report())
    tags = parsed(page)
    assert set(tags.tags) <= ALLOWED_TAGS  # no script, no img: nothing was injected
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert not [name for name, _ in tags.attrs if name.startswith("on")]
    assert page.count("&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;") >= 8


# chart ------------------------------------------------------------------------------------


def test_chart_points_come_from_the_stores_runs(store: tuple[StateStore, Clock]) -> None:
    db, clock = store
    plans = ["plan_1_drift", "plan_2_partial", "plan_3_in_sync", "plan_2_partial"]
    for day, name in enumerate(plans):
        record_run(db, clock, recorded(name), START - timedelta(days=4 - day))
    series = history.drift_series(db, START - timedelta(days=7))
    svg = chart.render(series, START - timedelta(days=7), START)
    circles = re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)"([^>]*)>', svg)
    assert len(circles) == 4
    xs = [float(c[0]) for c in circles]
    ys = [float(c[1]) for c in circles]
    assert xs == sorted(xs) and len(set(xs)) == 4
    bottom = chart.TOP + (chart.HEIGHT - chart.TOP - chart.BOTTOM)
    # 6 drifted is the axis top (ticks 0, 2, 4, 6); 0 sits on the axis.
    four = bottom - (bottom - chart.TOP) * 4 / 6
    assert ys == [chart.TOP, pytest.approx(four, abs=0.1), bottom, ys[1]]
    ringed = ["stroke=" in c[2] for c in circles]
    assert ringed == [True, True, False, True]  # rep-gone was unreadable in those runs
    assert "run 3 (plan, schedule)" in svg and "0 drifted" in svg


def test_thousands_of_runs_are_thinned_to_the_peaks() -> None:
    points = [
        SeriesPoint(i, START - timedelta(minutes=10 * i), "s", None, "plan", "cli", i % 7, 0)
        for i in range(4000)
    ]
    svg = chart.render(sorted(points, key=lambda p: p.time), START - timedelta(days=30), START)
    columns = (chart.WIDTH - chart.LEFT - chart.RIGHT) / chart.COLUMN_PX
    assert 100 < svg.count("<circle") <= columns + 1
    assert 'cy="16.0"' in svg  # the peak (6) survives thinning


def test_an_empty_chart_says_so_and_the_axis_top_is_round() -> None:
    assert "no run recorded" in chart.render([], START - timedelta(days=1), START)
    assert [chart.nice_top(v) for v in (0, 3, 7, 120, 1000)] == [
        (1, 1),
        (3, 1),
        (8, 2),
        (150, 50),
        (1000, 200),
    ]


def _series_of(svg: str) -> list[str]:
    return re.findall(r'<polyline points="([^"]*)"', svg)


def test_runs_of_one_source_at_many_commits_are_one_line_spread_over_the_axis() -> None:
    """A CLI source is recorded as ``path@ref``: one line per repository, not per commit,
    a legend naming each repository distinctly, and points spread over the width even
    when an hour of runs sits in a 30-day window."""
    long = "/home/operator/projects/infrastructure/desired-state"
    points = []
    for i in range(12):
        for n, repo in enumerate((f"{long}/site-a", f"{long}/site-b")):
            sha = f"{i:02d}{n}" + "a" * 37
            moment = START - timedelta(hours=1) + timedelta(minutes=5 * i)
            points.append(
                SeriesPoint(2 * i + n, moment, f"{repo}@{sha}", sha, "plan", "cli", i % 4, 0)
            )
    svg = chart.render(points, START - timedelta(days=30), START + timedelta(minutes=1))
    assert len(_series_of(svg)) == 2
    legends = [html.unescape(t) for t in re.findall(r'class="legend">([^<]*)<', svg)]
    assert len(legends) == 2 and len(set(legends)) == 2
    assert all("…" in label or label.endswith(("site-a", "site-b")) for label in legends)
    assert [label[-6:] for label in legends] == ["site-a", "site-b"]
    xs = sorted({float(x) for x in re.findall(r'<circle cx="([\d.]+)"', svg)})
    plot_w = chart.WIDTH - chart.LEFT - chart.RIGHT
    assert xs[0] < chart.LEFT + plot_w * 0.1 and xs[-1] > chart.LEFT + plot_w * 0.9
    assert len(xs) == 12
    ticks = re.findall(r'text-anchor="middle">(\d\d:\d\d)</text>', svg)
    assert 3 <= len(ticks) <= chart.MAX_TICKS + 1  # times of day, not 30 empty dates


def test_series_keys_drop_the_ref_but_keep_ssh_users() -> None:
    sha = "3f2a9c" + "0" * 34
    assert chart.series_key("/srv/infra@3f2a9c", sha) == "/srv/infra"
    assert chart.series_key("https://***@git.example/x.git@main", sha) == (
        "https://***@git.example/x.git"
    )
    assert chart.series_key("git@git.example:ops/x.git@main", sha) == "git@git.example:ops/x.git"
    assert chart.series_key("git@git.example:ops/x.git", sha) == "git@git.example:ops/x.git"
    assert chart.series_key("/srv/infra//sites/a@main", sha) == "/srv/infra//sites/a"
    assert chart.series_key("sandbox@3f2a9c", sha) == "sandbox"
    assert chart.series_key("sandbox", sha) == "sandbox"
    assert chart.legend_labels(["a" * 60 + "x", "a" * 60 + "x"])[1].endswith("(2)")


def test_folders_with_an_at_in_their_names_are_two_lines(tmp_path: Path) -> None:
    """A directory source is recorded whole: ``infra@prod`` and ``infra@staging`` are
    two folders, not one repository at two refs."""
    prod, staging = tmp_path / "infra@prod", tmp_path / "infra@staging"
    prod.mkdir()
    staging.mkdir()
    sha = "a" * 40
    assert chart.series_key(str(prod), None) == str(prod)  # a plain folder: no revision
    assert chart.series_key(str(prod), sha) == str(prod)  # a working copy read as a folder
    points = [
        SeriesPoint(i, START + timedelta(hours=i), str(folder), revision, "plan", "cli", i, 0)
        for i, (folder, revision) in enumerate(
            [(prod, None), (staging, None), (prod, sha), (staging, sha + "+dirty")]
        )
    ]
    svg = chart.render(points, START, START + timedelta(days=1))
    assert len(_series_of(svg)) == 2


def test_time_ticks_span_a_year_of_runs() -> None:
    low = datetime(2026, 9, 1, tzinfo=UTC)
    for days in (366, 200, 1000, 4000):
        high = low + timedelta(days=days)
        ticks, pattern = chart.time_ticks(low, high)
        assert 2 <= len(ticks) <= chart.MAX_TICKS
        step = ticks[1] - ticks[0]
        assert ticks[0] - low <= step and high - ticks[-1] <= step, (days, ticks)
        assert pattern == "%Y-%m-%d"  # the span crosses a year: labels say which
