"""Drift reports: what differs between the desired state and the nodes, now and over time.

A :class:`~controller.reports.model.DriftReport` is built from the controller's drift
(``ControllerHandle.drift()``) or from one plan (``fazai drift``), plus the history of
runs in the state store, and rendered as markdown, JSON (``schemas/report.schema.json``)
or one self-contained HTML page. :class:`~controller.reports.scheduler.ReportScheduler`
makes them on cron schedules, writes them to a folder and optionally commits them to a
git branch.
"""

from __future__ import annotations

from controller.reports.errors import ReportError, SettingsError
from controller.reports.model import (
    DriftedResource,
    DriftReport,
    FieldChange,
    NodeSummary,
    SeriesPoint,
    SourceRef,
)
from controller.reports.settings import ReportSettings, Schedule, from_config

__all__ = [
    "DriftReport",
    "DriftedResource",
    "FieldChange",
    "NodeSummary",
    "ReportError",
    "ReportSettings",
    "Schedule",
    "SeriesPoint",
    "SettingsError",
    "SourceRef",
    "from_config",
]
