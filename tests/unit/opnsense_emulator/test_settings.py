"""Unbound's settings sections (general, advanced): read in the whole model's ``get``,
written by ``set`` with upstream's answers, live only after the reconfigure, kept in
every backup and restored by ``revertBackup``."""

from __future__ import annotations

import httpx

from controller.testing.opnsense import EmulatorServer, EmulatorState
from controller.testing.opnsense.configxml import running

SET = "/api/unbound/settings/set"


def test_get_shows_the_sections_as_upstream_renders_them(api: httpx.Client) -> None:
    model = api.get("/api/unbound/settings/get").json()["unbound"]
    assert list(model)[:3] == ["general", "advanced", "hosts"]
    general = model["general"]
    assert (general["enabled"], general["port"], general["dnssec"]) == ("1", "53", "0")
    assert general["local_zone_type"]["transparent"] == {"value": "transparent", "selected": 1}
    assert model["advanced"]["aggressivensec"] == "1"


def test_set_validates_saves_and_is_live_only_after_reconfigure(
    fw: EmulatorServer, api: httpx.Client
) -> None:
    backups = len(fw.state.backups)
    refused = api.post(SET, json={"unbound": {"general": {"port": "0", "dnssec": "yes"}}})
    assert refused.json() == {
        "result": "failed",
        "validations": {
            "unbound.general.port": "Please specify a valid port number (1-65535).",
            "unbound.general.dnssec": "Value should be a boolean (0,1).",
        },
    }
    assert fw.state.settings["unbound.general"]["port"] == "53"  # nothing saved
    assert len(fw.state.backups) == backups
    saved = api.post(SET, json={"unbound": {"general": {"dnssec": "1"}, "unknown": {"x": 1}}})
    assert saved.json() == {"result": "saved"}
    assert len(fw.state.backups) == backups + 1
    assert fw.state.pending("unbound")
    assert api.post("/api/unbound/service/reconfigure", json={}).json() == {"status": "ok"}
    assert not fw.state.pending("unbound")
    # the same values again change nothing: no new backup
    assert api.post(SET, json={"unbound": {"general": {"dnssec": "1"}}}).json() == {
        "result": "saved"
    }
    assert len(fw.state.backups) == backups + 1
    assert api.get(SET).json() == {"result": "failed"}  # a GET writes nothing
    assert api.post(SET, json={"unbound": {"general": {"port": [53]}}}).status_code == 500


def test_revert_backup_restores_the_settings(fw: EmulatorServer, api: httpx.Client) -> None:
    before = running(fw.state)
    newest = api.get("/api/core/backup/backups/this").json()["items"][0]["id"]
    api.post(SET, json={"unbound": {"advanced": {"hideversion": "1"}}})
    assert "<hideversion>1</hideversion>" in running(fw.state)
    reverted = api.post(f"/api/core/backup/revertBackup/{newest}", json={})
    assert reverted.json() == {"status": "reverted"}
    assert running(fw.state) == before


def test_the_settings_survive_a_dump_and_load() -> None:
    state = EmulatorState("24.7")
    state.settings["unbound.general"]["dnssec"] = "1"
    state.save("dnssec on")
    again = EmulatorState.from_json(state.to_json())
    assert again.settings == state.settings
    assert again.backups[-1].settings["unbound.general"]["dnssec"] == "1"
    # a state written before settings existed loads with the stock ones
    old = state.to_json()
    del old["settings"]
    assert EmulatorState.from_json(old).settings["unbound.general"]["enabled"] == "1"
