"""An emulated OPNsense firewall for integration tests: its Node document and secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.testing.opnsense import EmulatorServer

SECRET_ENV = "FAZAI_TEST_FW_SECRET"


def firewall_node(
    name: str, emu: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """The Node document reaching ``emu`` over TLS, its key in a file under ``tmp_path``
    and its secret in the environment, as a user would give them (by reference)."""
    key_file = tmp_path / "fw.key"
    key_file.write_text(emu.api_key + "\n")
    monkeypatch.setenv(SECRET_ENV, emu.api_secret)
    return {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {
            "platform": "opnsense",
            "url": emu.url,
            "apiKeyRef": {"file": str(key_file)},
            "apiSecretRef": {"env": SECRET_ENV},
            "tls": {"caBundle": str(emu.certificate)},
            "requestTimeout": 5,
        },
    }
