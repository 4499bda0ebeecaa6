"""Report files: atomic replacement, latest.*, same-second reports, retention."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.reports import files
from controller.reports.errors import ReportError


def test_reports_and_latest_are_written(tmp_path: Path) -> None:
    written = files.write_report(tmp_path, "daily", "20250301T060000Z", {"md": "a", "json": "{}"})
    assert [p.as_posix() for p in written.files] == [
        "daily/20250301T060000Z.md",
        "daily/latest.md",
        "daily/20250301T060000Z.json",
        "daily/latest.json",
    ]
    assert (tmp_path / "daily" / "latest.md").read_text() == "a"
    files.write_report(tmp_path, "daily", "20250302T060000Z", {"md": "b"})
    assert (tmp_path / "daily" / "latest.md").read_text() == "b"
    assert (tmp_path / "daily" / "20250301T060000Z.md").read_text() == "a"
    assert not [p for p in (tmp_path / "daily").iterdir() if p.name.startswith(".")]


def test_two_reports_in_one_second_do_not_overwrite_each_other(tmp_path: Path) -> None:
    files.write_report(tmp_path, "d", "20250301T060000Z", {"md": "first"})
    second = files.write_report(tmp_path, "d", "20250301T060000Z", {"md": "second"})
    assert second.files[0].name == "20250301T060000Z-2.md"
    assert (tmp_path / "d" / "20250301T060000Z.md").read_text() == "first"


def test_keep_prunes_only_the_oldest_stamped_reports(tmp_path: Path) -> None:
    for day in range(1, 6):
        files.write_report(tmp_path, "d", f"2025030{day}T060000Z", {"md": "x", "html": "y"})
    (tmp_path / "d" / "notes.md").write_text("mine")
    removed = files.prune(tmp_path, "d", keep=2)
    assert len(removed) == 6
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [
        "20250304T060000Z.html",
        "20250304T060000Z.md",
        "20250305T060000Z.html",
        "20250305T060000Z.md",
        "latest.html",
        "latest.md",
        "notes.md",
    ]
    assert files.prune(tmp_path, "d", keep=0) == []


def test_a_file_in_the_way_of_the_folder_is_a_report_error(tmp_path: Path) -> None:
    (tmp_path / "d").write_text("a file, not a folder")
    with pytest.raises(ReportError, match="cannot write"):
        files.write_report(tmp_path, "d", "20250301T060000Z", {"md": "x"})
