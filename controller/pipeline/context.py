"""Who and what a run is checked for: the ``RunContext`` the policies see.

One builder per entry point, so that the words a policy matches on (``run.trigger``,
``run.mode``, ``run.actor``) are the same wherever a run starts.
"""

from __future__ import annotations

import os
import pwd

from controller.plan.verdicts import RunContext
from controller.store import Trigger

SERVE_ACTOR = "fazai-serve"  # a serve run whose commit author is unknown
UNKNOWN_ACTOR = "unknown"

# The store's triggers as the policies name them: a working-copy watch reacts to a commit.
_TRIGGERS = {Trigger.WATCH: "commit"}


def os_user() -> str:
    """The person running the CLI: the effective uid's name, else ``uid N`` (a container
    may run as a uid with no passwd entry). Never $LOGNAME or $USER, which whoever runs
    the command sets (the audit trail's actor is taken the same way)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def cli(mode: str, source: str = "", actor: str | None = None) -> RunContext:
    """A CLI command: ``mode`` is the command (``plan``, ``apply``, ``rollback``);
    ``source`` the directory or repository it reads."""
    return RunContext(Trigger.CLI.value, mode, actor or os_user(), source)


def serve(trigger: Trigger, mode: str, author: str | None = None, source: str = "") -> RunContext:
    """A reconcile pass of ``serve``: ``mode`` is the node's (auto, manual, detect); the
    actor is the commit's author when the source knows it; ``source`` the source's name
    in fazai.yaml."""
    name = _TRIGGERS.get(trigger, Trigger(trigger).value)
    return RunContext(name, mode, author or SERVE_ACTOR, source)


def approval(actor: str | None, source: str = "") -> RunContext:
    """An approved plan being applied through the API: checked again, for the actor that
    triggered the change (the approver is the API's concern)."""
    return RunContext(Trigger.API.value, "manual", actor or SERVE_ACTOR, source)


def review(author: str | None, source: str = "") -> RunContext:
    """A pull request's plan: what merging it would make serve do, so the trigger is the
    commit merging makes; nothing is written (mode ``review``)."""
    return RunContext("commit", "review", author or UNKNOWN_ACTOR, source)
