"""The audit trail's chain: appends, and tampering found by editing the SQLite file by hand."""

from __future__ import annotations

import dataclasses
import itertools
import json
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from controller.engine import trail
from controller.errors import AuditKeyError
from controller.plan.diff import Action, Change
from controller.plan.items import PlanItem
from controller.plan.verdicts import Effect, RunContext, Verdict
from controller.store import Command, NodeStatus, RunStatus, StateStore, Trigger, chain


def _fill(store: StateStore, n: int = 5) -> int:
    run_id = store.start_run(Trigger.CLI, Command.APPLY, "src", "a" * 40, actor="alice")
    for i in range(n - 2):
        store.record_node(
            run_id,
            f"n{i}",
            NodeStatus.CONVERGED,
            audit=trail.node_entry(
                run_id, f"n{i}", (), "converged", f"n{i}", before="b", after="a"
            ),
        )
    store.finish_run(run_id, RunStatus.SUCCEEDED)
    return run_id


def _sql(path: Path, *statements: str) -> None:
    """Edit the file as an attacker would: the append-only triggers dropped first."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
        conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


def _verify(path: Path, expect_head: str | None = None) -> chain.Verified:
    with StateStore(path) as store:
        return store.audit_verify(expect_head)


def test_an_apply_run_leaves_a_chain_of_records_with_its_actor(store: StateStore) -> None:
    run_id = _fill(store, 4)
    records = list(store.audit_records())
    assert [r.seq for r in records] == [1, 2, 3, 4]
    assert [r.action for r in records] == [
        "run.started",
        "node.transaction",
        "node.transaction",
        "run.finished",
    ]
    assert {r.actor for r in records} == {"alice"}
    assert {r.run_id for r in records} == {run_id}
    assert records[0].prev == chain.GENESIS
    assert all(b.prev == a.digest for a, b in itertools.pairwise(records))
    verified = store.audit_verify()
    assert verified.ok and verified.count == 4 and verified.head == records[-1].digest
    assert store.get_run(run_id).actor == "alice"  # type: ignore[union-attr]


def test_plan_runs_are_not_audited(store: StateStore) -> None:
    store.start_run(Trigger.SCHEDULE, Command.PLAN, "src", None)
    assert list(store.audit_records()) == []


def test_the_table_refuses_updates_and_deletes_through_sqlite(db_path: Path) -> None:
    with StateStore(db_path) as store:
        _fill(store)
    conn = sqlite3.connect(db_path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE audit SET actor = 'mallory'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM audit")
    finally:
        conn.close()


def test_a_modified_payload_is_named(db_path: Path) -> None:
    with StateStore(db_path) as store:
        _fill(store)
    _sql(db_path, """UPDATE audit SET payload = '{"result":"failed"}' WHERE seq = 3""")
    verified = _verify(db_path)
    assert verified.problem is not None
    assert (verified.problem.seq, verified.problem.kind) == (3, "modified")
    assert verified.count == 2  # the records before it are intact


def test_a_modified_actor_is_named(db_path: Path) -> None:
    with StateStore(db_path) as store:
        _fill(store)
    _sql(db_path, "UPDATE audit SET actor = 'bob' WHERE seq = 2")
    problem = _verify(db_path).problem
    assert problem is not None and (problem.seq, problem.kind) == (2, "modified")


def test_a_deleted_record_is_named_as_removed(db_path: Path) -> None:
    with StateStore(db_path) as store:
        _fill(store)
    _sql(db_path, "DELETE FROM audit WHERE seq = 3")
    problem = _verify(db_path).problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (4, "removed")
    assert "record 3 is missing" in problem.message


def test_a_deleted_record_with_the_rest_renumbered_is_found(db_path: Path) -> None:
    with StateStore(db_path) as store:
        _fill(store)
    _sql(db_path, "DELETE FROM audit WHERE seq = 3", "UPDATE audit SET seq = seq - 1 WHERE seq > 3")
    problem = _verify(db_path).problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (3, "reordered")
    assert "written as record 4" in problem.message


def test_swapped_payloads_are_found_at_the_first(db_path: Path) -> None:
    with StateStore(db_path) as store:
        _fill(store)
    conn = sqlite3.connect(db_path)
    try:
        two, three = (
            conn.execute("SELECT payload FROM audit WHERE seq = ?", (s,)).fetchone()[0]
            for s in (2, 3)
        )
    finally:
        conn.close()
    _sql(
        db_path,
        f"UPDATE audit SET payload = '{three}' WHERE seq = 2",
        f"UPDATE audit SET payload = '{two}' WHERE seq = 3",
    )
    problem = _verify(db_path).problem
    assert problem is not None and (problem.seq, problem.kind) == (2, "modified")


def test_swapped_records_are_named_as_reordered(db_path: Path) -> None:
    with StateStore(db_path) as store:
        _fill(store)
    _sql(
        db_path,
        "UPDATE audit SET seq = 100 WHERE seq = 2",
        "UPDATE audit SET seq = 2 WHERE seq = 3",
        "UPDATE audit SET seq = 3 WHERE seq = 100",
    )
    problem = _verify(db_path).problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (2, "reordered")
    assert "written as record 3" in problem.message


def test_a_truncated_tail_is_found_only_against_an_anchor(db_path: Path) -> None:
    with StateStore(db_path) as store:
        _fill(store)
        head = store.audit_verify().head
    _sql(db_path, "DELETE FROM audit WHERE seq = 5")
    assert _verify(db_path).ok  # a shorter chain is a valid chain...
    problem = _verify(db_path, expect_head=head).problem
    assert problem is not None and problem.kind == "truncated"  # ...but not the anchored one
    assert head in problem.message


def test_an_anchor_older_than_the_head_is_fine(db_path: Path) -> None:
    with StateStore(db_path) as store:
        _fill(store)
        head = store.audit_verify().head
        _fill(store)
        assert store.audit_verify(expect_head=head).ok


def test_hmac_records_need_the_key_and_the_right_one(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(chain.KEY_ENV, "k" * 32)
    with StateStore(db_path) as store:
        _fill(store)
        records = list(store.audit_records())
        assert all(r.alg.startswith("hmac-sha256:") for r in records)
        assert store.audit_verify().ok
    monkeypatch.delenv(chain.KEY_ENV)
    with pytest.raises(AuditKeyError, match="FAZAI_AUDIT_KEY"):
        _verify(db_path)
    # Another key is "cannot check" (exit 2), not tampering.
    monkeypatch.setenv(chain.KEY_ENV, "other" * 8)
    with pytest.raises(AuditKeyError, match="cannot check: no key for kid") as caught:
        _verify(db_path)
    assert "k" * 32 not in str(caught.value)


def test_a_chain_recomputed_without_the_key_is_a_downgrade(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(chain.KEY_ENV, "k" * 32)
    with StateStore(db_path) as store:
        _fill(store)
    # The attacker rewrites record 3 and recomputes its link as plain SHA-256.
    conn = sqlite3.connect(db_path)
    try:
        row = conn.execute("SELECT * FROM audit WHERE seq = 3").fetchone()
    finally:
        conn.close()
    forged = dataclasses.replace(
        chain.Record(*row), payload='{"result":"failed"}', alg=chain.PLAIN, digest=""
    )
    fake = chain.digest(forged.material(), chain.PLAIN, None)
    _sql(
        db_path,
        f"""UPDATE audit SET payload = '{forged.payload}', alg = 'sha256', digest = '{fake}'
            WHERE seq = 3""",
    )
    problem = _verify(db_path).problem
    assert problem is not None and (problem.seq, problem.kind) == (3, "modified")
    assert "downgraded" in problem.message


def test_a_key_too_short_is_refused_without_showing_it(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(chain.KEY_ENV, "shortkey")
    with StateStore(db_path) as store, pytest.raises(AuditKeyError) as caught:
        store.start_run(Trigger.CLI, Command.APPLY, "src", None)
    assert "shortkey" not in str(caught.value)
    with StateStore(db_path) as store:  # nothing recorded: the run and its record go together
        assert store.list_runs() == []


def test_concurrent_appends_from_two_processes_keep_one_chain(db_path: Path) -> None:
    StateStore(db_path).close()
    script = textwrap.dedent(
        f"""
        from controller.store import StateStore, audit
        with StateStore({str(db_path)!r}, busy_timeout=30) as store:
            for i in range(60):
                store.audit_append(audit.Entry("test.append", {{"i": i}}, actor="p"))
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    verified = _verify(db_path)
    assert verified.ok and verified.count == 120


def test_the_export_is_json_lines_with_the_columns(store: StateStore) -> None:
    _fill(store, 3)
    lines = [json.dumps(r.to_dict()) for r in store.audit_records()]
    first = json.loads(lines[0])
    assert set(first) == {
        "seq",
        "time",
        "actor",
        "trigger",
        "runId",
        "node",
        "action",
        "payload",
        "payloadText",
        "alg",
        "prev",
        "digest",
    }
    assert first["payload"]["command"] == "apply"
    # payloadText is the exact text hashed: a SIEM re-checks the chain from the export.
    for line in lines:
        exported = json.loads(line)
        assert chain.digest(_material(exported), exported["alg"], None) == exported["digest"]


def _material(exported: dict[str, object]) -> bytes:
    """The digest material as the README documents it, from an exported line."""
    fields = [exported[f] for f in ("seq", "time", "actor", "trigger", "runId", "node")]
    fields += [exported[f] for f in ("action", "payloadText", "alg", "prev")]
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def test_since_filters_by_time(store: StateStore, clock: Callable[[], datetime]) -> None:
    _fill(store, 3)
    middle = list(store.audit_records())[1]
    assert [r.seq for r in store.audit_records(datetime.fromisoformat(middle.time))] == [2, 3]


def test_denials_and_approvals_record_their_items_verdicts_and_actor(store: StateStore) -> None:
    item = PlanItem(
        "web-1",
        "User",
        "root",
        Action.DELETE,
        (Change("uid", 0, None),),
        verdicts=(Verdict("defaults", "no-root", Effect.DENY, "root is never deleted"),),
    )
    trail.record_denied(store, RunContext("cli", "apply", "carol"), [item], source="src")
    trail.record_approval(
        store,
        approval_id="ab12",
        decision="approved",
        actor="token:ops",
        source="fleet",
        revision="c" * 40,
        nodes=["web-1"],
    )
    denied, approved = store.audit_records()
    assert (denied.action, denied.actor, denied.trigger) == ("policy.denied", "carol", "cli")
    payload = json.loads(denied.payload)
    assert payload["items"][0]["verdicts"][0]["message"] == "root is never deleted"
    assert len(payload["items"][0]["digest"]) == 64
    assert (approved.action, approved.actor) == ("approval.approved", "token:ops")
    assert store.audit_verify().ok


def test_secret_values_never_reach_the_trail(store: StateStore) -> None:
    secret = "s3cr3t-value-" + "x" * 8
    shadow = "$6$saltsalt$" + "A" * 60
    item = PlanItem(
        "web-1",
        "User",
        "app",
        Action.UPDATE,
        (Change("password", "old", secret), Change("comment", shadow, "app user")),
    )
    run_id = store.start_run(Trigger.CLI, Command.APPLY, "src", None, {"token": secret})
    store.record_node(
        run_id,
        "web-1",
        NodeStatus.FAILED,
        audit=trail.node_entry(run_id, "web-1", [item], "failed", f"echoed {shadow}"),
    )
    text = "\n".join(json.dumps(r.to_dict()) for r in store.audit_records())
    assert secret not in text and shadow not in text
    assert "***" in text


def test_an_old_state_file_upgrades_and_its_runs_get_an_empty_actor(db_path: Path) -> None:
    from controller.store import schema

    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        schema.migrate(conn, schema.MIGRATIONS[:1])  # a state file of the previous FazAI
        conn.execute(
            "INSERT INTO runs (started, trigger, command, source, status)"
            " VALUES ('2025-01-01T00:00:00+00:00', 'cli', 'apply', 'old', 'succeeded')"
        )
    finally:
        conn.close()
    with StateStore(db_path) as store:
        (old,) = store.list_runs()
        assert (old.source, old.actor) == ("old", "")
        _fill(store, 3)
        assert store.audit_verify().ok
    assert schema.version(sqlite3.connect(db_path)) == schema.SCHEMA_VERSION


def test_a_key_file_removed_mid_run_does_not_fail_the_records_after_the_start(
    db_path: Path, tmp_path: Path
) -> None:
    key_file = tmp_path / "audit.key"
    key_file.write_text("k" * 32 + "\n")
    ref = chain.KeyRef(file=key_file)
    with StateStore(db_path, audit_key=ref) as store:
        run_id = store.start_run(Trigger.CLI, Command.APPLY, "src", None)
        key_file.unlink()  # a node written now must still have its commit recorded
        entry = trail.node_entry(run_id, "n", (), "converged")
        store.record_node(run_id, "n", NodeStatus.CONVERGED, audit=entry)
        store.finish_run(run_id, RunStatus.SUCCEEDED)
    key_file.write_text("k" * 32 + "\n")
    with StateStore(db_path, audit_key=ref) as store:
        verified = store.audit_verify()
        assert verified.ok and verified.count == 3
