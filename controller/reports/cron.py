"""Cron expressions, evaluated by cronsim.

Why cronsim: it is small, pure Python, typed and without dependencies, it is what
Healthchecks.io runs its cron checks on (so it is exercised against real crontabs every
day), and it follows Debian cron's rules where cron implementations differ (day-of-month
*or* day-of-week, jobs at a fixed local time across daylight-saving changes: a skipped
02:30 runs at 03:00, a repeated one runs once).

Five fields (minute hour day month weekday) or six (seconds first), names (``MON``,
``JAN``), ``L`` and ``#``, and the usual macros (``@daily``...).
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from cronsim import CronSim, CronSimError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def expand(expression: str) -> str:
    text = " ".join(expression.split())
    return MACROS.get(text.lower(), text)


def check(expression: str) -> str | None:
    """Why ``expression`` is not a cron expression, or None when it is one."""
    try:
        next_after(expression, datetime(2000, 1, 1).astimezone())
    except CronSimError as exc:
        return f"{expression!r} is not a cron expression: {exc}"
    except StopIteration:
        return f"{expression!r} never fires"
    return None


def next_after(expression: str, moment: datetime, zone: tzinfo | None = None) -> datetime:
    """The first time after ``moment`` (aware) that ``expression`` names, read as wall-clock
    time in ``zone`` (default: ``moment``'s own zone)."""
    if moment.tzinfo is None:
        raise ValueError("moment must be timezone-aware")
    local = moment.astimezone(zone) if zone is not None else moment
    return next(iter(CronSim(expand(expression), local)))
