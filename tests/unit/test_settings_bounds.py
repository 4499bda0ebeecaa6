"""The bounds of every duration in fazai.yaml: a number too big for a float or a clock is
refused with its position (never an OverflowError traceback), nothing is longer than 365
days, each key keeps its own range (the schema refuses ``headTimeout: 2h`` as it does
``7200``), the keys that hammer a remote or a node when tiny have a minimum, and a value
pasted in the wrong field is not echoed back."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.errors import RetryDecision
from controller.reconcile import config
from controller.reconcile.backoff import Backoff
from controller.settings import durations
from controller.settings.read import InvalidConfigError

HEAD = """\
apiVersion: fazai.dev/v1alpha1
kind: ControllerConfig
state: state.db
"""
SOURCE = "sources:\n  - {name: infra, url: /srv/infra}\n"
BIG = "1" + "0" * 400  # an int YAML reads exactly, and float() cannot hold

# the YAML after HEAD, the diagnostic's line:col and field path, and its message
REFUSED = [
    (SOURCE + f"server:\n  limits: {{headTimeout: {BIG}}}\n", "7:12",
     "server.limits.headTimeout", "must be more than 0 and at most 1h"),
    (SOURCE + f"forges:\n  - {{type: github, timeout: {BIG}}}\n", "7:20", "forges[0].timeout",
     "must be more than 0 and at most 10m"),
    (SOURCE + f"driftCheck: {BIG}\n", "6:1", "driftCheck", "must be at most 365d"),
    (SOURCE + f"driftCheck: '{BIG}s'\n", "6:1", "driftCheck", "must be at most 365d"),
    (f"sources:\n  - {{name: infra, url: /srv/infra, poll: {BIG}}}\n", "5:36",
     "sources[0].poll", "must be at most 365d"),
    (SOURCE + f"notifications:\n  - {{type: webhook, urlRef: {{env: H}}, timeout: {BIG}}}\n",
     "7:39", "notifications[0].timeout", "must be at most 365d"),
    (SOURCE + "notifications:\n  - {type: webhook, urlRef: {env: H}, timeout: 200000d}\n",
     "7:39", "notifications[0].timeout", "must be at most 365d"),
    (SOURCE + "backoff: {max: 99999999999999d}\n", "6:11", "backoff.max", "must be at most 365d"),
    (SOURCE + "server:\n  limits: {headTimeout: 7200}\n", "7:12", "server.limits.headTimeout",
     "must be more than 0 and at most 1h"),
    (SOURCE + "server:\n  limits: {bodyTimeout: 2h}\n", "7:12", "server.limits.bodyTimeout",
     "must be more than 0 and at most 1h"),
    (SOURCE + "forges:\n  - {type: github, timeout: 601}\n", "7:20", "forges[0].timeout",
     "must be more than 0 and at most 10m"),
    # Tiny values that would hammer a git server or the nodes (refused since this release).
    ("sources:\n  - {name: infra, url: /srv/infra, poll: 500ms}\n", "5:36", "sources[0].poll",
     "must be at least 1s and at most 365d (or 0, which turns it off)"),
    (SOURCE + "driftCheck: 5s\n", "6:1", "driftCheck",
     "must be at least 10s and at most 365d (or 0, which turns it off)"),
    (SOURCE + "backoff: {initial: 10ms}\n", "6:11", "backoff.initial",
     "must be at least 100ms and at most 365d"),
]  # fmt: skip


def load(tmp_path: Path, text: str) -> config.ControllerConfig:
    file = tmp_path / "fazai.yaml"
    file.write_text(HEAD + text)
    return config.load(file)


@pytest.mark.parametrize(("text", "where", "path", "message"), REFUSED)
def test_an_out_of_range_duration_is_refused_at_its_position(
    tmp_path: Path, text: str, where: str, path: str, message: str
) -> None:
    with pytest.raises(InvalidConfigError) as caught:
        load(tmp_path, text)
    assert [str(d) for d in caught.value.diagnostics] == [
        f"{tmp_path / 'fazai.yaml'}:{where}: ControllerConfig: {path}: {message}"
    ]


def test_zero_still_turns_polling_and_the_drift_check_off(tmp_path: Path) -> None:
    loaded = load(
        tmp_path, "sources:\n  - {name: infra, url: /srv/infra, poll: 0}\ndriftCheck: '0s'\n"
    )
    assert (loaded.sources[0].poll, loaded.drift_check) == (0.0, 0.0)
    loaded = load(tmp_path, SOURCE + "driftCheck: 10s\nbackoff: {initial: 100ms, max: 365d}\n")
    assert (loaded.drift_check, loaded.backoff_initial, loaded.backoff_max) == (
        10.0, 0.1, 365 * 86400.0,
    )  # fmt: skip


@pytest.mark.parametrize("value", [10**400, BIG + "s", "99999999999999d", 400 * 86400])
def test_parse_refuses_what_no_clock_holds_with_a_value_error(value: object) -> None:
    with pytest.raises(ValueError, match="must be at most 365d"):
        durations.parse(value)


def test_backoff_clamps_its_ceiling_to_what_a_timer_can_wait() -> None:
    backoff = Backoff(1.0, 1e300)
    assert backoff.maximum == durations.MAX_SECONDS
    assert backoff.after(RetryDecision(True, None, "test")) == durations.MAX_SECONDS


SECRET = "ghp_0123456789abcdefSECRET"


@pytest.mark.parametrize(
    "text",
    [
        f"sources:\n  - {{name: infra, url: /srv/infra, mode: {SECRET}}}\n",
        SOURCE + f"driftCheck: {SECRET}\n",
        SOURCE + f"server:\n  limits: {{headTimeout: {SECRET}}}\n",
        SOURCE + f"notifications:\n  - {{type: {SECRET}, urlRef: {{env: H}}}}\n",
        SOURCE + f"forges:\n  - {{type: github, timeout: {SECRET}}}\n",
    ],
)
def test_a_value_pasted_in_the_wrong_field_is_not_echoed(tmp_path: Path, text: str) -> None:
    with pytest.raises(InvalidConfigError) as caught:
        load(tmp_path, text)
    shown = "\n".join(str(d) for d in caught.value.diagnostics)
    assert shown and SECRET not in shown and "SECRET" not in shown


@pytest.mark.parametrize("written", ["1:30", "0x10", "010", "1:30.5", "0b11"])
def test_a_duration_in_yaml_1_1_numerals_is_refused_at_its_position(
    tmp_path: Path, written: str
) -> None:
    """Unquoted, YAML 1.1 reads 1:30 as 90 (sexagesimal), 0x10 as 16 and 010 as 8: a
    setting meaning 1 minute 30 becomes a minute and a half only by luck."""
    with pytest.raises(InvalidConfigError) as caught:
        load(tmp_path, SOURCE + f"driftCheck: {written}\n")
    (shown,) = map(str, caught.value.diagnostics)
    assert shown.startswith(f"{tmp_path / 'fazai.yaml'}:6:1: ControllerConfig: driftCheck: ")
    assert "write a duration in decimal seconds or with units" in shown


def test_other_numbers_keep_their_yaml_meaning(tmp_path: Path) -> None:
    loaded = load(tmp_path, SOURCE + "concurrency: 0x10\ndriftCheck: 1_000\n")
    assert (loaded.concurrency, loaded.drift_check) == (16, 1000.0)
