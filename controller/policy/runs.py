"""The run contexts of the entry points that have no other actor: the command line and
the pull-request review, both acting as the OS user that runs them."""

from __future__ import annotations

import os
import pwd

from controller.plan.verdicts import RunContext


def os_user() -> str:
    """The user of the effective uid: not $LOGNAME or $USER, which anyone sets (a policy
    that names an actor must not be passed by ``USER=ci fazai apply``)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # no passwd entry (a bare container)
        return f"uid {os.geteuid()}"


def cli(mode: str, source: str) -> RunContext:
    return RunContext(trigger="cli", mode=mode, actor=os_user(), source=source)


def review(source: str) -> RunContext:
    """A pull request's plan: checked as the commit that merging it would make."""
    return RunContext(trigger="commit", mode="review", actor=os_user(), source=source)
