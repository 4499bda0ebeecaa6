"""Prometheus metrics: a sequence of events in, the exposition parsed back out."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families

from controller.events import EventBus, EventType
from controller.reconcile.handle import SourceStatus
from controller.server.metrics import Metrics
from controller.server.settings import ServerSettings
from tests.unit.server.serverkit import T0, FakeHandle, asgi_client

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    """(sample name, sorted labels) -> value, and family name -> type."""
    samples: Samples = {}
    types = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def publish_sequence(bus: EventBus) -> Mapping[str, float]:
    """A day in the life; returns when the successful runs finished."""
    ok_infra = bus.publish(
        EventType.RUN_FINISHED,
        source="infra",
        run_id=1,
        status="succeeded",
        seconds=0.3,
        command="apply",
    )
    bus.publish(
        EventType.RUN_FINISHED,
        source="infra",
        run_id=2,
        status="partial",
        seconds=4.0,
        command="apply",
    )
    ok_apps = bus.publish(
        EventType.RUN_FINISHED,
        source="apps",
        run_id=3,
        status="succeeded",
        seconds=0.05,
        command="plan",
    )
    items = [
        {"kind": "Sysctl", "name": n, "action": a}
        for n, a in (("a", "update"), ("b", "create"), ("c", "noop"))
    ]
    bus.publish(EventType.DRIFT_DETECTED, source="infra", node="edge-fw", items=items)
    bus.publish(EventType.DRIFT_DETECTED, source="infra", node="web-1", changes=5)
    bus.publish(EventType.NODE_VERIFIED, source="infra", run_id=4, node="web-1", changes=5)
    bus.publish(EventType.NODE_FAILED, source="infra", run_id=4, node="edge-fw", reason="x")
    bus.publish(EventType.NODE_ROLLED_BACK, source="infra", run_id=5, node="edge-fw", reason="y")
    bus.publish(EventType.NODE_FAILED, source="infra", run_id=5, node="web-1", reason="z")
    bus.publish(EventType.SOURCE_ERROR, source="apps", message="fetch failed", retry_in=30)
    last = bus.publish(EventType.RUN_STARTED, source="infra", run_id=6, command="apply")
    return {"infra": ok_infra.time.timestamp(), "apps": ok_apps.time.timestamp(), "last": last.id}


async def scrape(client: httpx.AsyncClient) -> tuple[Samples, dict[str, str]]:
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return parse(answer.text)


async def test_metrics_after_a_sequence_of_events(handle: FakeHandle) -> None:
    handle.source_list = []  # nothing from the handle: only events count here
    async with asgi_client(handle, ServerSettings()) as client:
        times = publish_sequence(handle.events)
        # The app's subscriber works through the events in its own task.
        for _ in range(100):
            samples, types = await scrape(client)
            if samples.get(("fazai_source_up", (("source", "apps"),))) == 0:
                break  # the source.error, among the last events, is in
            await asyncio.sleep(0.01)

    assert types["fazai_reconcile_duration_seconds"] == "histogram"
    assert types["fazai_drifted_resources"] == "gauge"
    assert types["fazai_apply_failures"] == "counter"
    assert types["fazai_last_successful_sync_timestamp_seconds"] == "gauge"
    assert types["fazai_source_up"] == "gauge"

    duration = "fazai_reconcile_duration_seconds"
    assert value(samples, duration + "_count", source="infra") == 2
    assert abs(value(samples, duration + "_sum", source="infra") - 4.3) < 1e-9
    assert value(samples, duration + "_bucket", source="infra", le="0.25") == 0
    assert value(samples, duration + "_bucket", source="infra", le="0.5") == 1
    assert value(samples, duration + "_bucket", source="infra", le="5.0") == 2
    assert value(samples, duration + "_bucket", source="infra", le="+Inf") == 2
    assert value(samples, duration + "_count", source="apps") == 1
    assert value(samples, duration + "_bucket", source="apps", le="0.1") == 1

    assert value(samples, "fazai_drifted_resources", node="edge-fw") == 2  # noop not counted
    assert value(samples, "fazai_drifted_resources", node="web-1") == 0  # verified since
    assert value(samples, "fazai_apply_failures_total", node="edge-fw") == 2
    assert value(samples, "fazai_apply_failures_total", node="web-1") == 1
    # The partial run of infra did not move its last successful sync.
    last_sync = "fazai_last_successful_sync_timestamp_seconds"
    assert value(samples, last_sync, source="infra") == times["infra"]
    assert value(samples, last_sync, source="apps") == times["apps"]
    assert value(samples, "fazai_source_up", source="infra") == 1
    assert value(samples, "fazai_source_up", source="apps") == 0


async def test_state_gauges_follow_the_handle_at_each_scrape(handle: FakeHandle) -> None:
    """An event can be lost (slow subscriber) or never come (a node fixed by hand in detect
    mode): the handle's view wins at scrape time."""
    handle.source_list = [
        SourceStatus("infra", "u", "main", "a" * 40, T0),
        SourceStatus(
            "apps",
            "u",
            "main",
            None,
            T0 - timedelta(hours=1),
            error=None,
            retry_at=T0 + timedelta(seconds=30),
        ),
    ]
    handle.add_drift("edge-fw", ["update", "update", "delete"])
    async with asgi_client(handle, ServerSettings()) as client:
        samples, _ = await scrape(client)
        assert value(samples, "fazai_drifted_resources", node="edge-fw") == 3
        assert value(samples, "fazai_source_up", source="infra") == 1
        assert value(samples, "fazai_source_up", source="apps") == 0  # backing off
        assert value(samples, "fazai_last_successful_sync_timestamp_seconds", source="infra") == (
            T0.timestamp()
        )
        handle.add_drift("edge-fw", ["noop"])
        samples, _ = await scrape(client)
        assert value(samples, "fazai_drifted_resources", node="edge-fw") == 0


def test_a_malformed_event_changes_nothing_and_breaks_nothing() -> None:
    bus = EventBus()
    metrics = Metrics()
    metrics.observe(bus.publish(EventType.RUN_FINISHED, source="infra", seconds="slow"))
    metrics.observe(bus.publish(EventType.DRIFT_DETECTED, source="infra", items="many"))
    metrics.observe(bus.publish(EventType.NODE_FAILED, source="infra"))  # no node
    samples, _ = parse(metrics.exposition().decode())
    assert ("fazai_reconcile_duration_seconds_count", (("source", "infra"),)) not in samples
    assert not any(name == "fazai_apply_failures_total" for name, _ in samples)


def test_each_app_has_its_own_registry() -> None:
    bus = EventBus()
    one, two = Metrics(), Metrics()
    one.observe(bus.publish(EventType.NODE_FAILED, source="s", node="n"))
    first, _ = parse(one.exposition().decode())
    second, _ = parse(two.exposition().decode())
    assert value(first, "fazai_apply_failures_total", node="n") == 1
    assert ("fazai_apply_failures_total", (("node", "n"),)) not in second


async def test_apply_failures_start_at_zero_for_every_known_node(handle: FakeHandle) -> None:
    """Absent until the first failure, increase() in an alert misses that very failure."""
    handle.add_drift("edge-fw", ["noop"])
    handle.add_drift("web-1", ["update"])
    async with asgi_client(handle, ServerSettings()) as client:
        samples, _ = await scrape(client)
    assert value(samples, "fazai_apply_failures_total", node="edge-fw") == 0
    assert value(samples, "fazai_apply_failures_total", node="web-1") == 0
