"""DriftReport content from recorded plan JSON (tests/data/reports, recorded against real
SSH nodes and the OPNsense emulator) and from the loop's per-node drift."""

from __future__ import annotations

from datetime import timedelta

from controller.plan.diff import Action, Change
from controller.plan.items import PlanItem
from controller.reconcile.handle import Mode, NodeDrift
from controller.reports import build
from tests.unit.reports.handlekit import (
    START,
    default_sources,
    node_drift,
    recorded,
    recorded_plan,
)


def test_report_from_a_recorded_plan_counts_per_node_and_lists_field_changes() -> None:
    report = build.from_plan(
        recorded_plan("plan_1_drift"), title="fazai drift", generated=START, window_days=30
    )
    by_node = {n.node: n for n in report.nodes}
    assert sorted(by_node) == ["edge-fw", "rep-db-1", "rep-gone", "rep-web-1"]
    assert (by_node["edge-fw"].platform, by_node["edge-fw"].create) == ("opnsense", 2)
    assert (by_node["rep-db-1"].create, by_node["rep-db-1"].update) == (1, 1)
    assert (by_node["rep-web-1"].create, by_node["rep-web-1"].update) == (1, 1)
    assert by_node["rep-gone"].error == "no answer from 10.231.23.99:22 within 2 s"
    assert by_node["rep-gone"].drifted == 0 and not by_node["rep-gone"].in_sync
    assert report.drifted == 6
    assert report.exit_code == 2 and report.status == "trouble"  # a node could not be read

    motd = next(r for r in report.resources if r.name == "motd-web")
    assert (motd.node, motd.kind, motd.action) == ("rep-web-1", "File", "update")
    fields = {c.field: c for c in motd.changes}
    assert fields["mode"].live == "0600" and fields["mode"].desired == "0644"
    assert fields["content"].diff is not None and "+Authorized use only." in fields["content"].diff
    assert [r.name for r in report.resources] == [
        "web-servers",  # FirewallAlias before FirewallRule
        "allow-https",
        "fwd-db",  # Sysctl before User
        "deploy-db",
        "app-conf",
        "motd-web",
    ]  # by node, kind, name


def test_a_plan_in_sync_reports_exit_0_and_no_resource() -> None:
    report = build.from_plan(
        recorded_plan("plan_3_in_sync"), title="t", generated=START, window_days=7
    )
    assert report.exit_code == 0 and report.status == "in sync"
    assert report.resources == ()
    assert all(n.in_sync for n in report.nodes)


def test_report_from_the_loops_drift_with_modes_sources_and_platforms() -> None:
    plan = recorded("plan_2_partial")
    drift = node_drift(plan, mode=Mode.DETECT)
    drift[0] = NodeDrift(
        drift[0].node, "infra", Mode.MANUAL, START, drift[0].revision, drift[0].items
    )
    report = build.from_drift(
        drift,
        default_sources(),
        title="daily",
        generated=START + timedelta(hours=1),
        window_days=30,
        platforms={"edge-fw": "opnsense", "rep-web-1": "linux"},
    )
    by_node = {n.node: n for n in report.nodes}
    assert by_node["edge-fw"].mode == "manual" and by_node["rep-db-1"].mode == "detect"
    assert by_node["edge-fw"].platform == "opnsense"
    assert by_node["rep-db-1"].platform is None  # no plan said so
    assert by_node["rep-web-1"].in_sync  # healed by the apply between the two plans
    assert by_node["rep-db-1"].revision == "0123456789abcdef0123456789abcdef01234567"
    assert report.sources[0].name == "infra" and report.sources[0].branch == "main"
    assert report.drifted == 4


def test_noop_and_unmanaged_items_are_not_drift() -> None:
    items = [
        PlanItem("n1", "File", "a", Action.NOOP),
        PlanItem("n1", "File", "b", Action.UNMANAGED),
        PlanItem("n1", "Sysctl", "c", Action.UPDATE, (Change("value", "0", "1"),)),
        PlanItem("n1", "File", "d", Action.ERROR, error="unreadable"),
    ]
    found = build.drifted_resources("n1", "infra", items)
    assert [(r.name, r.action) for r in found] == [("d", "error"), ("c", "update")]
    change = found[1].changes[0]
    assert (change.field, change.live, change.desired) == ("value", "0", "1")
    summary = build.summarize(
        "n1",
        found,
        source="infra",
        platform="linux",
        mode="auto",
        checked=START,
        revision=None,
        error=None,
    )
    assert (summary.update, summary.errors, summary.drifted, summary.in_sync) == (1, 1, 1, False)


def test_a_secret_in_the_drift_table_never_reaches_the_report() -> None:
    # The drift table is in memory; the report goes to files and maybe a git branch, so
    # it redacts again whatever it is handed.
    secret = "s3cr3t-api-value"
    item = PlanItem(
        "n1",
        "File",
        "app",
        Action.UPDATE,
        (Change("content", {"apiKey": secret}, {"apiKey": "x"}),),
    )
    drift = [NodeDrift("n1", "infra", Mode.DETECT, START, None, (item,))]
    report = build.from_drift(
        drift, default_sources(), title="daily", generated=START, window_days=1
    )
    (resource,) = report.resources
    assert secret not in repr(resource)
    assert resource.changes[0].live == {"apiKey": "***"}
