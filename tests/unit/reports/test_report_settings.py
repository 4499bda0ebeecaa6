"""The ``reports`` section: parsing, every refusal with its field path, and cron times."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from controller.reports import cron, settings
from controller.reports.errors import SettingsError


def test_a_full_section_parses_with_paths_resolved_against_the_config_folder(
    tmp_path: Path,
) -> None:
    parsed = settings.from_config(
        {
            "dir": "out/reports",
            "branch": "fazai-reports",
            "repository": "/srv/infra",
            "push": True,
            "remote": "upstream",
            "days": 14,
            "settleTimeout": "90s",
            "author": {"name": "Ops bot", "email": "ops@example.net"},
            "schedules": [
                {"name": "daily", "cron": "0 6 * * *", "timezone": "Europe/Lisbon"},
                {"name": "hourly", "cron": "@hourly", "formats": ["json"], "keep": 48, "days": 2},
            ],
        },
        base=tmp_path,
    )
    assert parsed.dir == tmp_path / "out" / "reports"
    assert parsed.repository == Path("/srv/infra")
    assert (parsed.branch, parsed.push, parsed.remote) == ("fazai-reports", True, "upstream")
    assert parsed.settle_timeout == 90.0
    assert (parsed.author_name, parsed.author_email) == ("Ops bot", "ops@example.net")
    daily, hourly = parsed.schedules
    assert daily.formats == ("markdown", "json", "html") and daily.days == 14
    assert daily.zone == ZoneInfo("Europe/Lisbon")
    assert (hourly.formats, hourly.keep, hourly.days, hourly.refresh) == (("json",), 48, 2, True)


def test_defaults() -> None:
    parsed = settings.from_config({"schedules": [{"name": "d", "cron": "0 6 * * *"}]})
    assert parsed.dir == Path.cwd() / "reports"
    assert (parsed.branch, parsed.push, parsed.days, parsed.settle_timeout) == (
        None,
        False,
        30,
        300.0,
    )
    assert parsed.schedules[0].timezone == "UTC"


def test_every_problem_is_reported_with_its_field_path() -> None:
    with pytest.raises(SettingsError) as caught:
        settings.from_config(
            {
                "schedules": [
                    {"name": "daily", "cron": "0 25 * * *"},
                    {"name": "daily", "cron": "0 6 * * *", "timezone": "Mars/Olympus"},
                ]
            }
        )
    problems = dict(caught.value.problems)
    assert set(problems) == {
        ("schedules", 0, "cron"),
        ("schedules", 1, "name"),
        ("schedules", 1, "timezone"),
    }
    assert "not a cron expression" in problems[("schedules", 0, "cron")]
    assert "Mars/Olympus" in problems[("schedules", 1, "timezone")]
    assert caught.value.section == "reports"
    assert str(caught.value).startswith("reports.schedules[0].cron: ")


@pytest.mark.parametrize(
    ("section", "path", "words"),
    [
        ({}, (), "required field 'schedules' is missing"),
        ({"schedules": []}, ("schedules",), "at least 1"),
        ({"schedules": [{"name": "Daily", "cron": "@daily"}]}, ("schedules", 0, "name"), "valid"),
        ({"schedules": [{"name": "d", "cron": "@daily", "formats": ["pdf"]}]},
         ("schedules", 0, "formats", 0), "one of"),
        ({"schedules": [{"name": "d", "cron": "@daily"}], "branch": "a..b"}, ("branch",), "valid"),
        ({"schedules": [{"name": "d", "cron": "@daily"}], "colour": 1}, ("colour",),
         "unknown field"),
        ({"schedules": [{"name": "d", "cron": "@daily"}], "settleTimeout": "soon"},
         ("settleTimeout",), "valid"),
    ],
)  # fmt: skip
def test_schema_refusals(section: dict[str, object], path: tuple[object, ...], words: str) -> None:
    with pytest.raises(SettingsError) as caught:
        settings.from_config(section)
    assert caught.value.path == path
    assert words in caught.value.message


def test_cron_times_follow_the_schedules_time_zone_across_daylight_saving() -> None:
    lisbon = ZoneInfo("Europe/Lisbon")
    # 2025-03-30: Lisbon moves from UTC+0 to UTC+1 at 01:00 UTC.
    before = cron.next_after("0 6 * * *", datetime(2025, 3, 29, 7, 0, tzinfo=UTC), lisbon)
    assert before.astimezone(UTC) == datetime(2025, 3, 30, 5, 0, tzinfo=UTC)
    utc = cron.next_after("0 6 * * *", datetime(2025, 3, 29, 7, 0, tzinfo=UTC))
    assert utc == datetime(2025, 3, 30, 6, 0, tzinfo=UTC)
    # A time that does not exist that night (01:30 is skipped) runs once, right after.
    skipped = cron.next_after("30 1 * * *", datetime(2025, 3, 29, 12, 0, tzinfo=UTC), lisbon)
    assert skipped.astimezone(UTC) == datetime(2025, 3, 30, 1, 0, tzinfo=UTC)


def test_cron_macros_names_and_refusals() -> None:
    moment = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert cron.next_after("@daily", moment) == datetime(2025, 1, 2, tzinfo=UTC)
    assert cron.next_after("@weekly", moment) == datetime(2025, 1, 5, tzinfo=UTC)  # Sunday
    assert cron.next_after("0 9 * * MON-FRI", moment) == datetime(2025, 1, 2, 9, tzinfo=UTC)
    assert cron.next_after("*/15 * * * *", moment) == datetime(2025, 1, 1, 12, 15, tzinfo=UTC)
    assert cron.check("0 6 * * *") is None
    assert cron.check("every day") is not None
    assert cron.check("0 0 31 2 *") is not None  # February never has a 31st
    with pytest.raises(ValueError, match="aware"):
        cron.next_after("@daily", datetime(2025, 1, 1))
