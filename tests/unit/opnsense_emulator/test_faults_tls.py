"""Test hooks: fault injection, request log, drift by hand, state persistence, TLS."""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path

import httpx
import pytest

from controller.testing.opnsense import (
    Drift,
    EmulatorServer,
    EmulatorState,
    EmulatorValidationError,
)

SEARCH = "/api/firewall/alias/searchItem"


def test_fail_on_the_nth_call(api: httpx.Client, fw: EmulatorServer) -> None:
    fw.faults.fail(503, path="searchItem", nth=2)
    codes = [api.get(SEARCH).status_code for _ in range(3)]
    assert codes == [200, 503, 200]
    assert api.get(SEARCH).status_code == 200


def test_fail_always_on_a_path(api: httpx.Client, fw: EmulatorServer) -> None:
    fw.faults.fail(500, path=r"/filter/", times=None)
    assert api.get("/api/firewall/filter/searchRule").status_code == 500
    assert api.get("/api/firewall/filter/searchRule").json() == {
        "errorMessage": "Unexpected error, check log for details"
    }
    assert api.get(SEARCH).status_code == 200


def test_dropped_connection(api: httpx.Client, fw: EmulatorServer) -> None:
    fw.faults.drop(path="searchItem")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        api.get(SEARCH)
    assert api.get(SEARCH).status_code == 200
    assert fw.requests.count(path="searchItem", status=0) == 1


def test_slow_answers(api: httpx.Client, fw: EmulatorServer) -> None:
    fw.faults.delay(0.4, path="searchItem", times=1)
    started = time.monotonic()
    assert api.get(SEARCH).status_code == 200
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    api.get(SEARCH)
    assert time.monotonic() - started < 0.4


def test_request_log_counts(api: httpx.Client, fw: EmulatorServer) -> None:
    fw.requests.clear()
    api.get(SEARCH)
    api.post("/api/firewall/alias/addItem", json={"alias": {"name": "x", "type": "host"}})
    api.get("/api/nothing/here/at_all")
    assert len(fw.requests) == 3
    assert fw.requests.count(method="POST") == 1
    assert fw.requests.count(status=404) == 1
    assert [r.path for r in fw.requests] == [
        SEARCH,
        "/api/firewall/alias/addItem",
        "/api/nothing/here/at_all",
    ]


def test_drift_by_hand_is_saved_not_applied(api: httpx.Client, fw: EmulatorServer) -> None:
    api.post("/api/firewall/filter/apply")
    before = len(fw.state.backups)
    drift = Drift(fw.state)
    uuid = drift.add("rule", {"description": "sneaky", "action": "block"})
    assert len(fw.state.backups) == before + 1
    assert fw.state.backups[-1].username.startswith("root@")
    assert fw.state.pending("filter")
    rows = api.post("/api/firewall/filter/searchRule", json={"searchPhrase": "sneaky"}).json()
    assert [r["uuid"] for r in rows["rows"]] == [uuid]
    drift.edit("rule", uuid, {"action": "pass"})
    assert fw.state.get("rule", uuid)["action"] == "pass"  # type: ignore[index]
    with pytest.raises(EmulatorValidationError) as refused:
        drift.edit("rule", uuid, {"action": "maybe"})
    assert "rule.action" in refused.value.validations
    drift.remove("rule", uuid)
    assert fw.state.get("rule", uuid) is None


def test_state_round_trip(fw: EmulatorServer, api: httpx.Client) -> None:
    api.post(
        "/api/firewall/alias/addItem",
        json={"alias": {"name": "kept", "type": "host", "content": "10.0.0.1"}},
    )
    data = json.loads(json.dumps(fw.state.to_json()))
    copy = EmulatorState.from_json(data)
    assert copy.list("alias") == fw.state.list("alias")
    assert [b.id for b in copy.backups] == [b.id for b in fw.state.backups]
    with EmulatorServer(state=copy) as other:
        rows = httpx.get(f"{other.url}{SEARCH}?searchPhrase=kept", auth=other.auth).json()
        assert rows["total"] == 1


def test_state_file_is_written_on_every_save(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with EmulatorServer(state_file=path) as fw:
        httpx.post(
            f"{fw.url}/api/firewall/alias/addItem",
            auth=fw.auth,
            json={"alias": {"name": "disk", "type": "host", "content": "10.0.0.1"}},
        )
        saved = json.loads(path.read_text())
    assert [a["name"] for a in saved["items"]["alias"].values()] == ["disk"]
    assert EmulatorState.load(path).find_alias("disk") is not None


def test_tls_serving_with_a_fresh_certificate() -> None:
    with EmulatorServer(tls=True) as fw:
        assert fw.url.startswith("https://") and fw.certificate is not None
        context = ssl.create_default_context(cafile=str(fw.certificate))
        r = httpx.get(f"{fw.url}/api/core/firmware/status", auth=fw.auth, verify=context)
        assert r.status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{fw.url}/api/core/firmware/status", auth=fw.auth)  # untrusted
        cert_dir = fw.certificate.parent
    assert not cert_dir.exists()


@pytest.mark.parametrize(
    ("fw", "expected"),
    [("24.7", "24.7.12"), ("25.7", "25.7.11"), ("26.7", "26.7.2")],
    indirect=["fw"],
)
def test_firmware_reports_the_imitated_version(api: httpx.Client, expected: str) -> None:
    status = api.get("/api/core/firmware/status").json()
    assert status["product"]["product_version"] == expected
    assert status["product"]["product_name"] == "OPNsense"
    assert api.get("/api/core/firmware/info").json()["product_version"] == expected


def test_serve_runs_in_the_foreground(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state_file = tmp_path / "fw.json"
    code = (
        "from pathlib import Path; from controller.testing.opnsense import serve; "
        f"serve('127.0.0.1:{port}', '25.7', 'key', 'secret', Path({str(state_file)!r}), False)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}/api/core/firmware/status"
        deadline = time.monotonic() + 15
        while True:
            try:
                status = httpx.get(url, auth=("key", "secret")).json()
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "serve() did not come up"
                time.sleep(0.1)
        assert status["product"]["product_series"] == "25.7"
        httpx.post(
            f"http://127.0.0.1:{port}/api/firewall/alias/addItem",
            auth=("key", "secret"),
            json={"alias": {"name": "fg", "type": "host", "content": "10.0.0.1"}},
        )
        assert EmulatorState.load(state_file).find_alias("fg") is not None
    finally:
        proc.terminate()
        proc.wait(timeout=10)
