"""Who the runs and the audit trail name: for the CLI, the OS user as the trail writes
it (effective uid, and who ran sudo) on every record of a command, applies, rollbacks and
denials alike; the policies keep matching the plain login name."""

from __future__ import annotations

import os
import pwd

import pytest

from controller.engine import trail
from controller.pipeline import context, writes
from controller.plan.verdicts import RunContext


def test_a_cli_run_is_recorded_as_the_trail_names_the_os_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USER", "mallory")  # whoever runs the command sets these
    monkeypatch.setenv("LOGNAME", "mallory")
    seen = context.cli("apply", "/srv/infra")
    assert seen.actor == pwd.getpwuid(os.geteuid()).pw_name  # what the policies match
    recorded = writes._recorded(seen)
    assert recorded.actor == trail.os_actor() and f"(uid {os.geteuid()})" in recorded.actor
    assert (recorded.trigger, recorded.mode, recorded.source) == ("cli", "apply", "/srv/infra")


def test_a_serve_run_is_recorded_as_the_pass_names_it() -> None:
    run = RunContext("webhook", "auto", "Alice <alice@example.com>", "infra")
    assert writes._recorded(run) is run
