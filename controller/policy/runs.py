"""The run contexts of the entry points that have no other actor: the command line and
the pull-request review, both acting as the OS user that runs them."""

from __future__ import annotations

import getpass

from controller.plan.verdicts import RunContext


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (a bare container)
        return "unknown"


def cli(mode: str, source: str) -> RunContext:
    return RunContext(trigger="cli", mode=mode, actor=os_user(), source=source)


def review(source: str) -> RunContext:
    """A pull request's plan: checked as the commit that merging it would make."""
    return RunContext(trigger="commit", mode="review", actor=os_user(), source=source)
