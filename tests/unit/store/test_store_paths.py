from __future__ import annotations

from pathlib import Path

from controller.store import default_path


def test_fazai_state_names_the_file() -> None:
    env = {"FAZAI_STATE": "/var/lib/fazai/x.db", "XDG_STATE_HOME": "/xdg"}
    assert default_path(env) == Path("/var/lib/fazai/x.db")


def test_xdg_state_home() -> None:
    assert default_path({"XDG_STATE_HOME": "/xdg"}) == Path("/xdg/fazai/state.db")


def test_home_when_nothing_is_set_or_xdg_is_relative() -> None:
    expected = Path.home() / ".local/state/fazai/state.db"
    assert default_path({}) == expected
    assert default_path({"XDG_STATE_HOME": "relative/dir", "FAZAI_STATE": ""}) == expected
