"""The firewall's validation messages come back pinned to the document's file and line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controller.errors import ValidationFailedError
from controller.model import loader
from controller.providers.opnsense import payload, validations
from controller.providers.opnsense.client import ApiTarget, OpnsenseClient
from controller.secrets import Secret
from controller.source.open import open_source
from controller.testing.opnsense import EmulatorServer

DOCS = """\
apiVersion: fazai.dev/v1alpha1
kind: Node
metadata: {name: fw}
spec: {platform: opnsense, url: "http://127.0.0.1:1", apiKeyRef: {env: K}, apiSecretRef: {env: S}}
---
apiVersion: fazai.dev/v1alpha1
kind: FirewallRule
metadata: {name: to-nowhere}
spec:
  target: {node: fw}
  interface: lan
  protocol: TCP
  destination:
    net: no_such_alias
    port: "443"
"""


def test_refused_write_is_reported_at_the_document_field(tmp_path: Path) -> None:
    (tmp_path / "fw.yaml").write_text(DOCS)
    state = loader.load(open_source(str(tmp_path)))
    (rule,) = state.resources

    async def send() -> None:
        with EmulatorServer(version="26.1") as emu:
            target = ApiTarget("fw", emu.url, Secret(emu.api_key), Secret(emu.api_secret))
            async with OpnsenseClient(target) as api:
                await api.post("firewall/filter/addRule", payload.rule(rule.spec))

    with pytest.raises(ValidationFailedError) as caught:
        asyncio.run(send())
    assert "rule.destination_net" in caught.value.validations
    found = [str(d) for d in validations.diagnostics(rule, caught.value)]
    assert len(found) == 1
    assert found[0].startswith(
        "fw.yaml:14:5: FirewallRule/to-nowhere: spec.destination.net: the firewall refused it: "
    )
    assert "no_such_alias" in found[0]


def test_document_paths() -> None:
    assert validations.document_path("rule.source_port") == ("spec", "source", "port")
    assert validations.document_path("alias.content") == ("spec", "content")
    assert validations.document_path("host.server") == ("spec", "server")
