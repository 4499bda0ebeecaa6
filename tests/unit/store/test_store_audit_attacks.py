"""Attacks on the audit trail (review r8): a keyed trail re-chained, emptied or cut back
to its plain prefix; appends and rotations of keys; columns edited by hand to a type
FazAI never writes; the canonical form's collisions; secrets in messages; a forged actor.
Each edits the real SQLite file as an attacker with the file would."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pwd
import sqlite3
from pathlib import Path

import pytest

from controller.engine import trail
from controller.errors import AuditKeyError
from controller.store import Command, NodeStatus, RunStatus, StateStore, Trigger, audit, chain

KEY = "an-audit-key-of-32-characters-ok"
KEY2 = "a-second-audit-key-32-characters"


def _keyfile(tmp_path: Path, *keys: str) -> chain.KeyRef:
    path = tmp_path / f"keys-{len(list(tmp_path.iterdir()))}"
    path.write_text("# newest first\n" + "".join(k + "\n" for k in keys))
    return chain.KeyRef(file=path)


def _fill(db: Path, ref: chain.KeyRef | None = None, n: int = 3) -> int:
    with StateStore(db, audit_key=ref) as store:
        run_id = store.start_run(Trigger.CLI, Command.APPLY, "src", None, actor="dora")
        for i in range(n):
            entry = trail.node_entry(run_id, f"web-{i}", (), "converged")
            store.record_node(run_id, f"web-{i}", NodeStatus.CONVERGED, audit=entry)
        store.finish_run(run_id, RunStatus.SUCCEEDED)
    return run_id


def _sql(db: Path, *statements: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
        conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


def _rechain_plain(db: Path, actor: str = "mallory") -> None:
    """An attacker without the key rewrites every record as plain SHA-256."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
        rows = conn.execute("SELECT * FROM audit ORDER BY seq").fetchall()
        prev = chain.GENESIS
        for seq, row in enumerate(rows, 1):
            forged = dataclasses.replace(
                chain.Record(*row), seq=seq, actor=actor, alg=chain.PLAIN, prev=prev, digest=""
            )
            prev = hashlib.sha256(forged.material()).hexdigest()
            conn.execute(
                "UPDATE audit SET seq = ?, actor = ?, alg = ?, prev = ?, digest = ? WHERE seq = ?",
                (seq, actor, chain.PLAIN, forged.prev, prev, row[0]),
            )
    finally:
        conn.close()


def _verify(db: Path, ref: chain.KeyRef | None = None) -> chain.Verified:
    with StateStore(db, audit_key=ref) as store:
        return store.audit_verify()


@pytest.fixture(autouse=True)
def _no_ambient_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(chain.KEY_ENV, raising=False)
    monkeypatch.delenv(chain.KEY_FILE_ENV, raising=False)


# -- 1. a keyed trail never passes as plain --------------------------------------------


def test_a_keyed_trail_rechained_as_plain_fails_with_the_key(tmp_path: Path) -> None:
    db, ref = tmp_path / "s.db", _keyfile(tmp_path, KEY)
    _fill(db, ref)
    assert _verify(db, ref).ok
    _rechain_plain(db)
    problem = _verify(db, ref).problem
    assert problem is not None and problem.kind == "removed"
    assert "ends in a plain SHA-256 record" in problem.message


def test_an_emptied_keyed_trail_fails_while_runs_exist(tmp_path: Path) -> None:
    db, ref = tmp_path / "s.db", _keyfile(tmp_path, KEY)
    run_id = _fill(db, ref)
    _sql(db, "DELETE FROM audit")
    problem = _verify(db, ref).problem
    assert problem is not None and problem.kind == "removed"
    assert f"run {run_id}" in problem.message and "no run.started record" in problem.message


def test_a_keyed_tail_cut_off_a_plain_prefix_fails(tmp_path: Path) -> None:
    db, ref = tmp_path / "s.db", _keyfile(tmp_path, KEY)
    _fill(db)
    _fill(db, ref)
    records = list(StateStore(db, audit_key=ref).audit_records())
    # The first keyed record marks the switch: the key id it starts.
    marker = records[5]
    assert (marker.action, json.loads(marker.payload)["kid"]) == ("trail.keyed", marker.alg[-16:])
    assert _verify(db, ref).unkeyed == 5
    _sql(db, "DELETE FROM audit WHERE alg != 'sha256'")
    problem = _verify(db, ref).problem
    assert problem is not None and problem.seq == 5 and problem.kind == "removed"


def test_a_run_whose_records_were_removed_and_rechained_is_named(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    _fill(db)
    second = _fill(db)
    _fill(db)
    _sql(db, f"DELETE FROM audit WHERE run_id = {second}")
    _rechain_plain(db, actor="dora")  # the chain alone is valid again
    problem = _verify(db).problem
    assert problem is not None and problem.kind == "removed"
    assert f"apply run {second}" in problem.message


# -- 2. no plain append after keyed ones ------------------------------------------------


def test_an_append_without_the_key_on_a_keyed_trail_is_refused_and_writes_nothing(
    tmp_path: Path,
) -> None:
    db, ref = tmp_path / "s.db", _keyfile(tmp_path, KEY)
    _fill(db, ref)
    kid = chain.load_key(ref).kid
    for other in (None, _keyfile(tmp_path, KEY2)):
        with StateStore(db, audit_key=other) as store, pytest.raises(AuditKeyError) as caught:
            store.start_run(Trigger.CLI, Command.APPLY, "src", None)
        assert f"keyed with key id {kid}" in str(caught.value)
        assert KEY not in str(caught.value)
        with StateStore(db) as store:
            assert len(store.list_runs()) == 1
    assert _verify(db, ref).ok


# -- 3. key rotation ---------------------------------------------------------------------


def test_keys_rotate_newest_first_and_an_unknown_kid_cannot_be_checked(
    tmp_path: Path,
) -> None:
    db = tmp_path / "s.db"
    _fill(db, _keyfile(tmp_path, KEY))
    rotated = _keyfile(tmp_path, KEY2, KEY)
    _fill(db, rotated)
    algs = [r.alg for r in StateStore(db, audit_key=rotated).audit_records()]
    old, new = chain.load_key(_keyfile(tmp_path, KEY)).kid, chain.load_key(rotated).kid
    assert algs[:5] == [f"hmac-sha256:{old}"] * 5 and set(algs[5:]) == {f"hmac-sha256:{new}"}
    assert _verify(db, rotated).ok
    with pytest.raises(AuditKeyError, match=f"cannot check: no key for kid {old}"):
        _verify(db, _keyfile(tmp_path, KEY2))
    # Keys listed in the wrong order: the newer key's records read as older ones.
    problem = _verify(db, _keyfile(tmp_path, KEY, KEY2)).problem
    assert problem is not None and (problem.seq, problem.kind) == (6, "key")


# -- 4, 5, 9: rows FazAI never writes -------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        ("UPDATE audit SET payload = 'not json' WHERE seq = 2", "payload is not a JSON object"),
        ("UPDATE audit SET payload = X'7b7d' WHERE seq = 2", "payload is a BLOB"),
        ("UPDATE audit SET alg = X'41' WHERE seq = 2", "alg is a BLOB"),
        ("UPDATE audit SET time = X'00' WHERE seq = 2", "time is a BLOB"),
        ("UPDATE audit SET run_id = 'x' WHERE seq = 2", "run_id is a str"),
        ("UPDATE audit SET alg = 'md5' WHERE seq = 2", "unknown algorithm 'md5'"),
        ("UPDATE audit SET alg = 'hmac-sha512' WHERE seq = 2", "unknown algorithm"),
    ],
)
def test_a_column_edited_to_a_foreign_type_is_modified(
    tmp_path: Path, edit: str, said: str
) -> None:
    db = tmp_path / "s.db"
    _fill(db)
    _sql(db, edit)
    problem = _verify(db).problem
    assert problem is not None and (problem.seq, problem.kind) == (2, "modified")
    assert said in problem.message
    with StateStore(db) as store:  # the listing still shows every record
        shown = [r.to_dict() for r in store.audit_records()]
    assert len(shown) == 5


def test_null_columns_in_a_rebuilt_table_are_modified(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    _fill(db)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(
        """
        DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;
        CREATE TABLE a2 (seq INTEGER PRIMARY KEY, time TEXT, actor TEXT, trigger TEXT,
          run_id INTEGER, node TEXT, action TEXT, payload TEXT, alg TEXT, prev TEXT,
          digest TEXT);
        INSERT INTO a2 SELECT * FROM audit; DROP TABLE audit; ALTER TABLE a2 RENAME TO audit;
        UPDATE audit SET alg = NULL, payload = NULL, time = NULL WHERE seq = 2;
        """
    )
    conn.close()
    problem = _verify(db).problem
    assert problem is not None and (problem.seq, problem.kind) == (2, "modified")
    assert "time is NULL" in problem.message and "payload is NULL" in problem.message
    with StateStore(db) as store:
        listed = list(store.audit_records())[1].to_dict()
    assert listed["payload"] is None and "NULL" in listed["defect"]


@pytest.mark.parametrize(
    "edit",
    [
        "INSERT INTO a2 SELECT * FROM a2 WHERE seq = 3",  # a record twice
        "UPDATE a2 SET seq = 0 WHERE seq = 1",
    ],
)
def test_a_duplicated_or_zero_seq_is_named_so(tmp_path: Path, edit: str) -> None:
    db = tmp_path / "s.db"
    _fill(db)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(
        f"""
        CREATE TABLE a2 (seq INTEGER, time TEXT, actor TEXT, trigger TEXT, run_id INTEGER,
          node TEXT, action TEXT, payload TEXT, alg TEXT, prev TEXT, digest TEXT);
        INSERT INTO a2 SELECT * FROM audit; {edit};
        DROP TABLE audit; ALTER TABLE a2 RENAME TO audit;
        """
    )
    conn.close()
    problem = _verify(db).problem
    assert problem is not None
    if "INSERT" in edit:
        assert (problem.seq, problem.kind) == (3, "reordered")
        assert "duplicated or out of order" in problem.message
    else:
        assert (problem.seq, problem.kind) == (0, "reordered")


# -- 10. one text for one value ---------------------------------------------------------


def test_the_canonical_form_keeps_floats_strings_and_key_types_apart() -> None:
    pairs = [
        (1.0, "1.0"),
        ({1: "a"}, {"1": "a"}),
        ({True: "a"}, {"True": "a"}),
        ({"#int:1": "a"}, {1: "a"}),
        (float("nan"), "nan"),
        ({"#float": "nan"}, float("nan")),
    ]
    for one, other in pairs:
        assert chain.canonical(one) != chain.canonical(other), (one, other)
        assert audit.digest_of(one) != audit.digest_of(other), (one, other)
    assert json.loads(chain.canonical({"x": 1.5})) == {"x": 1.5}


# -- 11. secrets in messages --------------------------------------------------------------


def test_secrets_in_a_node_error_message_are_masked(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    said = (
        "useradd failed: password=S3CRET-ONE, api_key: 'S3CRET-TWO' "
        '{"token": "S3CRET-THREE"} mode=0600 key=net.ipv4.ip_forward'
    )
    source = "https://deploy:S3CRET-URL@git.example/infra.git"
    with StateStore(db) as store:
        run_id = store.start_run(Trigger.CLI, Command.APPLY, source, None)
        entry = trail.node_entry(run_id, "fw", (), "failed", said)
        store.record_node(run_id, "fw", NodeStatus.FAILED, said, audit=entry)
        store.audit_append(trail.node_event("node.restored", run_id, "fw", "failed", said))
        records = [r for r in store.audit_records() if r.node == "fw"]
    for record in records:
        message = json.loads(record.payload)["message"]
        assert "S3CRET" not in message
        assert "password=***" in message and "api_key: '***'" in message
        assert "mode=0600" in message and "key=net.ipv4.ip_forward" in message
    assert audit.clean_text(source) == "https://deploy:***@git.example/infra.git"
    assert b"S3CRET" not in b"".join(
        row[0].encode() for row in sqlite3.connect(db).execute("SELECT payload FROM audit")
    )


# -- 6. who the CLI user is ---------------------------------------------------------------


def test_the_os_actor_is_the_effective_user_not_the_environment() -> None:
    me = pwd.getpwuid(os.geteuid()).pw_name
    spoof = {"LOGNAME": "alice", "USER": "alice", "USERNAME": "alice", "SUDO_USER": "alice"}
    actor = trail.os_actor(spoof)
    assert actor == f"{me} (uid {os.geteuid()})" and "alice" not in actor
    if os.geteuid() == 0:  # as sudo leaves it: believed only for root
        assert trail.os_actor({"SUDO_USER": "bob", "SUDO_UID": "1001"}) == (
            f"{me} (uid 0) (sudo by bob, uid 1001)"
        )


def test_the_policy_actor_of_a_cli_run_ignores_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from controller.pipeline import context

    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(name, "ci-bot")
    assert context.cli("apply", ".").actor == pwd.getpwuid(os.geteuid()).pw_name
