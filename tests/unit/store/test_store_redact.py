from __future__ import annotations

from pathlib import Path

import pytest

from controller.errors import StoreError
from controller.secrets import Secret
from controller.store import MASK, Command, StateStore, Trigger, is_secret_key, redact

SECRET = "hunter2-very-secret-value"


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "Password",
        "db_password",
        "passwd",
        "passphrase",
        "secret",
        "apiSecret",
        "client_secret",
        "token",
        "access_token",
        "X-Auth-Token",
        "apiKey",
        "api_key",
        "API-KEY",
        "apiKeyRef",
        "private_key",
        "privateKey",
        "privateKeyFile",
        "ssh_key",
        "client_keys",
        "credentials",
        "psk",
    ],
)
def test_secret_names(name: str) -> None:
    assert is_secret_key(name)
    assert redact({name: SECRET}) == {name: MASK}


@pytest.mark.parametrize(
    "name",
    [
        "name",
        "path",
        "hostKeyChecking",
        "pf_keywords",
        "content",
        "description",
        "keyboard",
        "key",  # a Sysctl's parameter name, a journal's object key: not a secret
    ],
)
def test_ordinary_names_are_kept(name: str) -> None:
    assert not is_secret_key(name)
    assert redact({name: "value"}) == {name: "value"}


def test_redact_walks_nested_values_and_masks_secret_objects() -> None:
    payload = {
        "node": "fw-1",
        "auth": {"apiKey": SECRET, "apiSecretRef": {"env": "FW_SECRET"}, "user": "root"},
        "users": [{"name": "deploy", "password": SECRET}, {"name": "ops", "password": None}],
        "header": ("Bearer", Secret(SECRET)),
        "plain": Secret(SECRET),
        "count": 3,
        "ok": True,
    }

    out = redact(payload)

    assert out == {
        "node": "fw-1",
        "auth": {"apiKey": MASK, "apiSecretRef": MASK, "user": "root"},
        "users": [{"name": "deploy", "password": MASK}, {"name": "ops", "password": None}],
        "header": ["Bearer", MASK],
        "plain": MASK,
        "count": 3,
        "ok": True,
    }
    # The input is not modified: callers still hold the real values to send.
    assert payload["users"][0]["password"] == SECRET  # type: ignore[index]


def test_no_secret_reaches_the_file(tmp_path: Path) -> None:
    """Every JSON the store writes (plan, snapshot, step payload) is redacted on the way in."""
    path = tmp_path / "state.db"
    with StateStore(path) as store:
        run_id = store.start_run(
            Trigger.CLI, Command.APPLY, "src", None, {"nodes": [{"token": SECRET}]}
        )
        txn = store.begin_transaction(run_id, "fw-1")
        store.record_snapshot(txn, "Node", "fw-1", "fw-1", {"auth": {"apiSecret": SECRET}})
        store.intend(txn, 0, "User", "deploy", "update", {"password": Secret(SECRET)})

        run = store.get_run(run_id)
        (found,) = store.open_transactions()
        assert run is not None and run.plan == {"nodes": [{"token": MASK}]}
        assert found.snapshots[0].before == {"auth": {"apiSecret": MASK}}
        assert found.steps[0].payload == {"password": MASK}
        # Still open: the records may sit in the WAL file rather than the database file.
        on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
        assert SECRET.encode() not in on_disk
    assert SECRET.encode() not in path.read_bytes()


def test_a_value_json_cannot_hold_is_a_store_error(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.db") as store:
        with pytest.raises(StoreError, match="the plan is not JSON"):
            store.start_run(Trigger.CLI, Command.PLAN, "src", None, {"when": object()})
        assert store.list_runs() == []
