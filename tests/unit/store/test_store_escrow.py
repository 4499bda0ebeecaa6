"""The escrow: secrets a rollback needs, sealed in the journal with a key kept outside it."""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from controller.errors import EscrowError
from controller.store import (
    MASK,
    Command,
    KeyRef,
    StateStore,
    Trigger,
    default_escrow_key_path,
    key_ref,
    redact,
)
from controller.store.escrow import Escrow, new_key_text
from controller.store.sealed import FORMAT, Sealed, parse

SECRET = b"\x00db-password=hunter2-\xff\n"  # binary on purpose: restored byte for byte
CONTENT = base64.b64encode(SECRET).decode()  # as a Linux snapshot holds a file's content
HASH = "$6$rounds=5000$saltsalt$0123456789abcdefghijHASH"
FIELDS = ("secretContent", "passwordHash", "groupPasswordHashes")


def snapshot() -> dict[str, Any]:
    """Shaped like a Linux transaction snapshot, recorded as one journal record."""
    return {
        "format": "fazai.linux.snapshot/1",
        "node": "web-1",
        "objects": [
            {
                "kind": "File",
                "name": "token",
                "key": "/etc/app/token",
                "before": {"exists": True, "mode": "0600", "secretContent": CONTENT},
            },
            {
                "kind": "User",
                "name": "deploy",
                "key": "deploy",
                "before": {
                    "shadow": "deploy:***:19000:0:99999:7:::",
                    "passwordHash": HASH,
                    "groupPasswordHashes": {"deploy": "$6$g$GROUPHASH"},
                    "password": "not escrowed",  # secret-named, not listed: masked
                },
            },
        ],
    }


def record(store: StateStore, value: Any = None, **kw: Any) -> int:
    txn = store.begin_transaction(store.start_run(Trigger.CLI, Command.APPLY, "s", None), "web-1")
    store.record_snapshot(
        txn, "Node", "web-1", "transaction", snapshot() if value is None else value, **kw
    )
    return txn


def on_disk(folder: Path) -> bytes:
    """Every byte under the store's folder: the database, its WAL, anything else."""
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


def test_round_trip_restores_every_escrowed_secret_exactly(
    store: StateStore, db_path: Path
) -> None:
    txn = record(store, escrow=FIELDS)
    (stored,) = store.snapshots(txn)
    objects = stored.before["objects"]  # type: ignore[index]
    for sealed_value in (
        objects[0]["before"]["secretContent"],
        objects[1]["before"]["passwordHash"],
        objects[1]["before"]["groupPasswordHashes"],
    ):
        assert parse(sealed_value) is not None
    assert objects[1]["before"]["password"] == MASK
    assert objects[1]["before"]["shadow"] == "deploy:***:19000:0:99999:7:::"

    revealed = store.reveal(txn, stored)
    expected = snapshot()
    expected["objects"][1]["before"]["password"] = MASK
    assert revealed.before == expected
    assert revealed.failures == ()
    assert HASH not in repr(revealed)
    key = default_escrow_key_path(db_path)
    assert key == db_path.parent / "state.escrow.key"
    assert key.stat().st_mode & 0o777 == 0o600


def test_no_secret_in_the_database_or_its_wal(store: StateStore, db_path: Path) -> None:
    record(store, escrow=FIELDS)
    # Still open: the records sit in the WAL; then checkpointed into the database file.
    wal = db_path.with_name(db_path.name + "-wal")
    assert wal.exists() and wal.stat().st_size > 0
    for needle in (SECRET, CONTENT.encode(), HASH.encode(), b"GROUPHASH", b"not escrowed"):
        assert needle not in db_path.read_bytes() + wal.read_bytes()
    store.close()
    raw = db_path.read_bytes()
    assert b"fazai.escrow/1" in raw  # the ciphertexts are there...
    for needle in (SECRET, CONTENT.encode(), HASH.encode(), b"GROUPHASH"):
        assert needle not in raw  # ...the secrets are not
    with sqlite3.connect(db_path) as conn:
        (text,) = conn.execute("SELECT before FROM snapshots").fetchone()
    assert HASH not in text and CONTENT not in text


def test_a_snapshot_without_escrowed_secrets_makes_no_key(store: StateStore, db_path: Path) -> None:
    txn = record(store, {"objects": [{"before": {"password": "x", "mode": "0644"}}]}, escrow=FIELDS)
    (stored,) = store.snapshots(txn)
    assert stored.before == {"objects": [{"before": {"password": MASK, "mode": "0644"}}]}
    assert not default_escrow_key_path(db_path).exists()
    # and without the escrow argument nothing is sealed at all: masked, as ever
    txn = store.begin_transaction(store.start_run(Trigger.CLI, Command.APPLY, "s", None), "b")
    store.record_snapshot(txn, "Node", "b", "transaction", snapshot())
    (masked,) = store.snapshots(txn)
    assert masked.before["objects"][0]["before"]["secretContent"] == MASK  # type: ignore[index]
    assert not default_escrow_key_path(db_path).exists()


def test_wrong_key_reports_each_secret_by_name_and_keeps_the_rest(
    store: StateStore, db_path: Path
) -> None:
    txn = record(store, escrow=FIELDS)
    key = default_escrow_key_path(db_path)
    key.write_text(new_key_text() + "\n")
    (stored,) = store.snapshots(txn)

    revealed = store.reveal(txn, stored)

    objects = revealed.before["objects"]  # type: ignore[index]
    assert objects[0]["before"] == {"exists": True, "mode": "0600", "secretContent": MASK}
    assert objects[1]["before"]["passwordHash"] == MASK
    assert objects[1]["before"]["shadow"] == "deploy:***:19000:0:99999:7:::"
    assert [(f.where, f.field) for f in revealed.failures] == [
        ("File/token (/etc/app/token)", "secretContent"),
        ("User/deploy", "groupPasswordHashes"),
        ("User/deploy", "passwordHash"),
    ]
    message = "; ".join(map(str, revealed.failures))
    assert "sealed with another key" in message and str(key) in message
    assert "could not be restored from the escrow" in message
    assert HASH not in message and CONTENT not in message and "GROUPHASH" not in message


def test_missing_key_is_reported_and_not_made_again(store: StateStore, db_path: Path) -> None:
    txn = record(store, escrow=FIELDS)
    key = default_escrow_key_path(db_path)
    key.unlink()
    (stored,) = store.snapshots(txn)

    revealed = store.reveal(txn, stored)

    assert len(revealed.failures) == 3
    assert all("does not exist" in f.reason for f in revealed.failures)
    assert str(key) in revealed.failures[0].reason
    assert not key.exists()  # opening never makes a key: a new one would open nothing


def test_a_value_moved_to_another_record_does_not_open(store: StateStore, db_path: Path) -> None:
    first = record(store, escrow=FIELDS)
    second = record(store, {"objects": [{"kind": "File", "name": "other", "key": "/etc/other",
                                         "before": {"secretContent": "b3RoZXIK"}}]},
                    escrow=FIELDS)  # fmt: skip
    (one,) = store.snapshots(first)
    stolen = one.before["objects"][0]["before"]["secretContent"]  # type: ignore[index]
    with sqlite3.connect(db_path) as conn:
        (text,) = conn.execute(
            "SELECT before FROM snapshots WHERE txn_id = ?", (second,)
        ).fetchone()
        moved = json.loads(text)
        moved["objects"][0]["before"]["secretContent"] = stolen
        conn.execute(
            "UPDATE snapshots SET before = ? WHERE txn_id = ?", (json.dumps(moved), second)
        )
    (two,) = store.snapshots(second)

    revealed = store.reveal(second, two)

    assert revealed.before["objects"][0]["before"]["secretContent"] == MASK  # type: ignore[index]
    (failure,) = revealed.failures
    assert failure.where == "File/other (/etc/other)"
    assert "damaged, or moved from another record" in failure.reason
    assert store.reveal(first, one).failures == ()  # where it was sealed, it still opens


def test_key_given_by_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAZAI_ESCROW_KEY", new_key_text())
    with StateStore(tmp_path / "state.db") as store:
        assert store.escrow_key == KeyRef(env="FAZAI_ESCROW_KEY")
        txn = record(store, escrow=FIELDS)
        (stored,) = store.snapshots(txn)
        assert store.reveal(txn, stored).failures == ()
        monkeypatch.delenv("FAZAI_ESCROW_KEY")
        (failure, *_) = store.reveal(txn, stored).failures
        assert failure.reason == "no escrow key: environment variable FAZAI_ESCROW_KEY is not set"
    made = sorted(p.name for p in tmp_path.iterdir() if p.name != "state.db.locks")
    assert made == ["state.db"]  # no key file made (the run's lock is not a key)


def test_key_file_given_by_environment_variable_must_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = tmp_path / "keys" / "fazai.key"
    monkeypatch.setenv("FAZAI_ESCROW_KEY_FILE", str(named))
    with StateStore(tmp_path / "state.db") as store:
        assert store.escrow_key == KeyRef(file=named)
        txn = store.begin_transaction(
            store.start_run(Trigger.CLI, Command.APPLY, "s", None), "web-1"
        )
        with pytest.raises(EscrowError, match=f"key file {named} does not exist"):
            store.record_snapshot(txn, "Node", "web-1", "t", snapshot(), escrow=FIELDS)
        assert store.snapshots(txn) == []  # nothing recorded
        assert not named.exists()
        named.parent.mkdir()
        named.write_text(new_key_text())
        named.chmod(0o644)  # a named file is the operator's: its mode is theirs to choose
        store.record_snapshot(txn, "Node", "web-1", "t", snapshot(), escrow=FIELDS)
        (stored,) = store.snapshots(txn)
        assert store.reveal(txn, stored).before["objects"][0]["before"]["secretContent"] == CONTENT  # type: ignore[index]


def test_a_key_that_is_no_key_is_refused_without_showing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAZAI_ESCROW_KEY", "hunter2-not-a-key")
    with StateStore(tmp_path / "state.db") as store:
        txn = store.begin_transaction(
            store.start_run(Trigger.CLI, Command.APPLY, "s", None), "web-1"
        )
        with pytest.raises(EscrowError, match="is not a key") as refused:
            store.record_snapshot(txn, "Node", "web-1", "t", snapshot(), escrow=FIELDS)
    assert "hunter2" not in str(refused.value)


def test_openssl_style_keys_are_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = bytes(range(250, 256)) + bytes(26)  # encodes with '+' and '/' in the standard alphabet
    standard = base64.b64encode(raw).decode()
    assert "/" in standard or "+" in standard
    monkeypatch.setenv("FAZAI_ESCROW_KEY", f"  {standard}\n")
    with StateStore(tmp_path / "state.db") as store:
        txn = record(store, escrow=FIELDS)
        (stored,) = store.snapshots(txn)
        assert store.reveal(txn, stored).failures == ()


def test_the_default_key_file_must_stay_private(store: StateStore, db_path: Path) -> None:
    txn = record(store, escrow=FIELDS)
    key = default_escrow_key_path(db_path)
    key.chmod(0o644)
    (stored,) = store.snapshots(txn)
    (failure, *_) = store.reveal(txn, stored).failures
    assert "open to others (mode 0644)" in failure.reason and "chmod 600" in failure.reason
    with pytest.raises(EscrowError, match="open to others"):
        record(store, escrow=FIELDS)
    key.chmod(0o600)
    assert store.reveal(txn, stored).failures == ()


def test_a_link_in_place_of_the_default_key_file_is_refused(
    store: StateStore, db_path: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "planted.key"
    elsewhere.write_text(new_key_text())
    elsewhere.chmod(0o600)
    default_escrow_key_path(db_path).symlink_to(elsewhere)
    with pytest.raises(EscrowError, match="cannot read it"):
        record(store, escrow=FIELDS)


def test_controllers_starting_at_once_agree_on_one_key(tmp_path: Path) -> None:
    key = tmp_path / "state" / "state.escrow.key"
    ref = KeyRef(file=key, managed=True)
    start = threading.Barrier(8)
    kids: list[str] = []

    def make() -> None:
        start.wait()
        kids.append(Escrow(ref, tmp_path / "state" / "state.db").key(create=True).kid)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(kids) == 8 and len(set(kids)) == 1
    assert [p.name for p in key.parent.iterdir()] == ["state.escrow.key"]  # no temp file left


def test_key_ref_order_and_default_location() -> None:
    state = Path("/var/lib/fazai/state.db")
    assert key_ref(state, {}) == KeyRef(file=Path("/var/lib/fazai/state.escrow.key"), managed=True)
    assert key_ref(state, {"FAZAI_ESCROW_KEY_FILE": "/etc/fazai/k"}) == KeyRef(
        file=Path("/etc/fazai/k")
    )
    both = {"FAZAI_ESCROW_KEY": "x", "FAZAI_ESCROW_KEY_FILE": "/etc/fazai/k"}
    assert key_ref(state, both) == KeyRef(env="FAZAI_ESCROW_KEY")
    assert key_ref(state, {"FAZAI_ESCROW_KEY": "", "FAZAI_ESCROW_KEY_FILE": ""}).managed


def test_only_a_sealed_value_passes_the_redaction() -> None:
    token = Sealed("0123456789abcdef", "AAAA")
    assert redact({"passwordHash": token}) == {"passwordHash": token.to_json()}
    # something merely shaped like one (read back, or forged) is masked like any secret
    assert redact({"passwordHash": token.to_json()}) == {"passwordHash": MASK}
    assert token.to_json()["escrow"] == FORMAT
    assert parse({**token.to_json(), "extra": 1}) is None
    assert parse({"escrow": FORMAT, "kid": "nothex!", "sealed": "AAAA"}) is None


def test_cryptography_is_loaded_only_when_a_secret_is_sealed(tmp_path: Path) -> None:
    """Opening the store and journaling an apply that seals nothing (most do not) costs no
    cryptography import (10-16 ms of every command); sealing still works after."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from controller.store import Command, StateStore, Trigger\n"
        f"store = StateStore(Path({str(tmp_path / 'state.db')!r}))\n"
        "run = store.start_run(Trigger.CLI, Command.APPLY, 's', None)\n"
        "txn = store.begin_transaction(run, 'web-1')\n"
        "store.record_snapshot(txn, 'Node', 'web-1', 'transaction', {'mode': '0644'},\n"
        "                      escrow=('secretContent',))\n"
        "print('cryptography' in sys.modules)\n"
        "store.record_snapshot(txn, 'Node', 'web-2', 'transaction', {'secretContent': 'x'},\n"
        "                      escrow=('secretContent',))\n"
        "print('cryptography' in sys.modules)\n"
        "sealed = next(s for s in store.snapshots(txn) if s.name == 'web-2')\n"
        "print(store.reveal(txn, sealed).before == {'secretContent': 'x'})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.split() == ["False", "True", "True"], done.stderr
