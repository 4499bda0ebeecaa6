"""Every section of fazai.yaml goes through the one settings kit: a bad value is reported
as FILE:LINE:COL with the field's path and ``fazai serve`` starts nothing (exit 2, no
state store made); the one duration grammar is accepted by every section."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from controller.reconcile import config

COMMAND = [sys.executable, "-c", "from controller.cli import run; run()"]

HEAD = """\
apiVersion: fazai.dev/v1alpha1
kind: ControllerConfig
state: state.db
sources:
  - {name: infra, url: /srv/infra}
"""

# section, the YAML after HEAD, the diagnostic's line:col, field path and message (part).
BAD = [
    ("controller", "driftCheck: 10x\n", "6:1", "driftCheck", "is not a valid duration"),
    ("controller", "backoff:\n  initial: 1 fortnight\n", "7:3", "backoff.initial",
     "is not a valid duration"),
    ("server", "server:\n  limits:\n    headTimeout: 5 parsecs\n", "8:5",
     "server.limits.headTimeout", "is not a valid duration"),
    ("server", "server:\n  limits:\n    bodyTimeout: 2h\n", "8:5",
     "server.limits.bodyTimeout", "must be more than 0 and at most 1h"),
    ("reports", "reports:\n  settleTimeout: later\n  schedules: [{name: d, cron: '@daily'}]\n",
     "7:3", "reports.settleTimeout", "is not a valid duration"),
    ("notifications",
     "notifications:\n  - type: webhook\n    urlRef: {env: HOOK}\n    retry: {backoff: -1s}\n",
     "9:13", "notifications[0].retry.backoff", "is not a valid duration"),
    ("forges", "forges:\n  - type: github\n    timeout: 11m\n", "8:5", "forges[0].timeout",
     "must be more than 0 and at most 10m"),
    ("forges", "forges:\n  - type: github\n    timeout: soon\n", "8:5", "forges[0].timeout",
     "is not a valid duration"),
    # YAML's .inf is above the grammar's 365 days: the schema refuses it, at its position.
    ("controller", "settle: .inf\n", "6:1", "settle", "must be at most 365d"),
    ("server", "server:\n  limits: {headTimeout: .inf}\n", "7:12", "server.limits.headTimeout",
     "must be more than 0 and at most 1h"),
    ("reports", "reports:\n  settleTimeout: .inf\n  schedules: [{name: d, cron: '@daily'}]\n",
     "7:3", "reports.settleTimeout", "must be at most 365d"),
    ("notifications", "notifications:\n  - {type: webhook, urlRef: {env: H}, timeout: .inf}\n",
     "7:39", "notifications[0].timeout", "must be at most 365d"),
    ("forges", "forges:\n  - {type: github, timeout: .inf}\n", "7:20", "forges[0].timeout",
     "must be more than 0"),
]  # fmt: skip


@pytest.mark.parametrize(("section", "text", "where", "path", "words"), BAD)
def test_a_bad_value_in_each_section_is_pinned_and_nothing_starts(
    tmp_path: Path, section: str, text: str, where: str, path: str, words: str
) -> None:
    file = tmp_path / "fazai.yaml"
    file.write_text(HEAD + text)
    result = subprocess.run(
        [*COMMAND, "serve", "--config", str(file), "--no-api"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip
    shown = " ".join(result.stderr.split())
    assert result.returncode == 2, result.stderr
    assert f"{file}:{where}: ControllerConfig: {path}: " in shown, result.stderr
    assert words in shown, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "state.db").exists()  # nothing started


def test_the_one_duration_grammar_is_accepted_by_every_section(tmp_path: Path) -> None:
    file = tmp_path / "fazai.yaml"
    file.write_text(
        HEAD
        + "driftCheck: '90'\n"  # a bare number in a string: reports' grammar, before
        + "settle: 1 s\n"
        + "server:\n  limits: {headTimeout: 1m30s, bodyTimeout: '45'}\n"  # were numbers only
        + "reports:\n  settleTimeout: 1h30m\n  schedules: [{name: d, cron: '@daily'}]\n"
        + "notifications:\n  - {type: webhook, urlRef: {env: HOOK}, timeout: 2m30s}\n"
        + "forges:\n  - {type: github, timeout: 1m}\n"
    )
    loaded = config.load(file)
    assert (loaded.drift_check, loaded.settle) == (90.0, 1.0)
    server = loaded.sections["server"]
    assert (server.head_timeout, server.body_timeout) == (90.0, 45.0)
    assert loaded.sections["reports"].settle_timeout == 5400.0
    assert loaded.sections["notifications"].targets[0].timeout == 150.0
    assert loaded.sections["forges"].forges[0].timeout == 60.0


def test_review_reads_the_forges_section_with_the_same_reader_and_positions(
    tmp_path: Path,
) -> None:
    from controller.errors import InvalidInputError
    from controller.forges import command

    file = tmp_path / "fazai.yaml"
    file.write_text(HEAD + "forges:\n  - type: github\n    timeout: soon\n")
    with pytest.raises(InvalidInputError) as caught:
        command.forge_settings("github", api_url=None, token_ref=None, config=file, environ={})
    assert [str(d) for d in caught.value.diagnostics] == [
        f"{file}:8:5: forges[0].timeout: is not a valid duration (like 90s, 10m, 1h30m, or 0)"
    ]
    file.write_text(HEAD + "forges: []\nforges: [{type: github}]\n")  # a duplicate key
    with pytest.raises(InvalidInputError) as caught:
        command.forge_settings("github", api_url=None, token_ref=None, config=file, environ={})
    (duplicate,) = caught.value.diagnostics
    assert str(duplicate).startswith(f"{file}:7:1: ")


def test_a_settings_error_names_the_file_it_was_given_and_no_other() -> None:
    from controller.errors import SettingsError
    from controller.reports import settings as reports

    built = SettingsError("reports", [(("days",), "must be at least 1")])
    assert [str(d) for d in built.diagnostics] == ["reports.days: must be at least 1"]
    bad = {"schedules": [{"name": "d", "cron": "whenever"}]}
    with pytest.raises(SettingsError) as caught:
        reports.from_config(bad, file="/etc/fazai/serve.yaml")
    (shown,) = map(str, caught.value.diagnostics)
    assert shown.startswith("/etc/fazai/serve.yaml: reports.schedules[0].cron: "), shown
    assert "fazai.yaml" not in str(SettingsError("x", [((), "m")]).diagnostics[0])
