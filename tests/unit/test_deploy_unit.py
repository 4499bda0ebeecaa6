"""deploy/fazai.service: a unit systemd accepts as it is, that stops restarting a
controller whose config does not load, and whose notes send the operator right."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "fazai.service"


def _sections() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_a_failing_start_is_not_retried_for_ever() -> None:
    unit = _sections()["Unit"]
    assert int(unit["StartLimitBurst"]) >= 1
    assert unit["StartLimitIntervalSec"]
    assert _sections()["Service"]["Restart"] == "on-failure"


def test_the_notes_name_the_services_store_and_what_protecthome_hides() -> None:
    text = UNIT.read_text()
    assert "fazai history --state /var/lib/fazai/state.db" in text
    assert "ProtectHome=yes hides both" in text and "editable install" in text
    # Under ProtectSystem=strict everything is read-only already: a ReadOnlyPaths= line
    # would be advice that changes nothing; a working copy under /home needs a bind.
    assert "\n# ReadOnlyPaths=" not in text and "# BindReadOnlyPaths=" in text


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    text = UNIT.read_text().replace("/opt/fazai/.venv/bin/fazai", shutil.which("true") or "")
    copy = tmp_path / "fazai.service"
    copy.write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
