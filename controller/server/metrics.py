"""Prometheus metrics, fed by the event bus; one registry per app, not the global one.

Events drive every metric as it happens. The gauges that describe a current state
(drifted resources, source up, last sync) are also refreshed from the controller handle at
each scrape: the handle is the truth, and an event can be missed (a subscriber that fell
behind loses its oldest events) or never come (a node healed by hand publishes nothing).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from controller.events import Event, EventBus, EventType
from controller.reconcile.handle import ControllerHandle
from controller.server.views import source_up

log = logging.getLogger("fazai.server")

# From a one-rule webhook reconcile (well under a second) to a large fleet's apply.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.reconcile_duration = Histogram(
            "fazai_reconcile_duration_seconds",
            "Time a reconcile run took, from its start to its end",
            ["source"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.drifted_resources = Gauge(
            "fazai_drifted_resources",
            "Resources of a node that differ from the desired state at its last read",
            ["node"],
            registry=self.registry,
        )
        self.apply_failures = Counter(
            "fazai_apply_failures",
            "Node transactions that failed or were rolled back",
            ["node"],
            registry=self.registry,
        )
        self.last_sync = Gauge(
            "fazai_last_successful_sync_timestamp_seconds",
            "When a reconcile of the source last succeeded (Unix time)",
            ["source"],
            registry=self.registry,
        )
        self.source_up = Gauge(
            "fazai_source_up",
            "1 when the source was last read without error, 0 while it is failing or backing off",
            ["source"],
            registry=self.registry,
        )

    def observe(self, event: Event) -> None:
        data = event.data
        source = str(data.get("source") or "")
        if event.type is EventType.RUN_FINISHED:
            seconds = _number(data.get("seconds"))
            if seconds is not None:
                self.reconcile_duration.labels(source).observe(seconds)
            self.source_up.labels(source).set(1)
            if data.get("status") == "succeeded":
                self.last_sync.labels(source).set(event.time.timestamp())
        elif event.type is EventType.SOURCE_ERROR:
            self.source_up.labels(source).set(0)
        elif event.type is EventType.DRIFT_DETECTED and data.get("node"):
            self.drifted_resources.labels(str(data["node"])).set(_drifted(data))
        elif event.type is EventType.NODE_VERIFIED and data.get("node"):
            # Verified: re-read after the apply and found as desired.
            self.drifted_resources.labels(str(data["node"])).set(0)
        elif event.type in (EventType.NODE_FAILED, EventType.NODE_ROLLED_BACK) and data.get("node"):
            self.apply_failures.labels(str(data["node"])).inc()

    def refresh(self, handle: ControllerHandle) -> None:
        for status in handle.sources():
            self.source_up.labels(status.name).set(1 if source_up(status) else 0)
            if status.last_sync is not None:
                self.last_sync.labels(status.name).set(status.last_sync.timestamp())
        for node in handle.drift():
            # Every known node has its failure counter from the start, at 0: an alert on
            # increase() sees the first failure, and a dashboard is not blank until then.
            self.apply_failures.labels(node.node)
            if node.error is None:  # an unreadable node keeps its last known drift
                self.drifted_resources.labels(node.node).set(node.drifted)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    async def follow(self, bus: EventBus, ready: asyncio.Event | None = None) -> None:
        """Observe every event published from now on, until cancelled."""
        async with bus.subscribe() as queue:
            if ready is not None:
                ready.set()
            while True:
                event = await queue.get()
                try:
                    self.observe(event)
                except Exception:  # a malformed event must not stop the metrics
                    log.exception("metrics: cannot use event %s (%s)", event.id, event.type)


def _drifted(data: Mapping[str, Any]) -> int:
    items = data.get("items")
    if isinstance(items, list):
        return sum(
            1 for i in items if isinstance(i, Mapping) and i.get("action") not in ("noop", None)
        )
    return int(_number(data.get("changes")) or 0)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
