"""The machine a Node names, as the machine-wide writer lock keys it."""

from __future__ import annotations

from controller.engine.nodekey import node_key


def test_one_machine_spelled_two_ways_has_one_key() -> None:
    assert node_key({"platform": "linux", "address": "Web-1.Example.NET"}) == node_key(
        {"platform": "linux", "address": "web-1.example.net", "port": 22}
    )
    assert node_key({"platform": "linux", "address": "[2001:db8::1]", "port": 2222}) == (
        "linux:2001:db8::1:2222"
    )
    assert node_key({"platform": "opnsense", "url": "https://FW.example.net/"}) == node_key(
        {"platform": "opnsense", "url": "https://fw.example.net:443"}
    )


def test_other_ports_and_platforms_are_other_machines() -> None:
    keys = {
        node_key({"platform": "linux", "address": "192.0.2.1"}),
        node_key({"platform": "linux", "address": "192.0.2.1", "port": 2222}),
        node_key({"platform": "opnsense", "url": "https://192.0.2.1"}),
        node_key({"platform": "opnsense", "url": "http://192.0.2.1"}),
    }
    assert len(keys) == 4
    assert node_key({"platform": "linux"}) is None
