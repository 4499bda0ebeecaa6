"""The node's file size limit holds at apply, on the bytes about to be sent."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from controller.errors import SourceError
from controller.model import loader
from controller.model.kinds import load_schema
from controller.plan.diff import Observed
from controller.providers.base import Change
from controller.providers.linux import batch
from controller.providers.linux.apply import LinuxTransaction
from controller.providers.linux.operations import write_file_script
from controller.source.open import open_source

STATE = """apiVersion: fazai.dev/v1alpha1
kind: Node
metadata: {name: web-1}
spec: {platform: linux, address: 10.0.0.1, maxFileBytes: 64}
---
apiVersion: fazai.dev/v1alpha1
kind: File
metadata: {name: banner}
spec:
  target: {node: web-1}
  path: /etc/banner
  source: files/banner
"""


def test_a_directory_source_grown_after_validate_is_refused_at_apply(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "banner").write_bytes(b"hello\n")
    (tmp_path / "state.yaml").write_text(STATE)
    state = loader.load(open_source(str(tmp_path)))
    (doc,) = state.resources_for("web-1")
    change = Change("File", "banner", "update", doc, Observed(None, None))
    # Validate measured 6 bytes; the directory source is read again only at apply, and a
    # file that grew meanwhile (past the node's limit or not) is not what was reviewed.
    (tmp_path / "files" / "banner").write_bytes(b"x" * 65)
    with pytest.raises(SourceError, match="grew since it was listed"):
        LinuxTransaction.build(state.nodes["web-1"], [change], [doc], state.source)
    (tmp_path / "files" / "banner").write_bytes(b"hallo\n")  # same size: read as it is
    txn = LinuxTransaction.build(state.nodes["web-1"], [change], [doc], state.source)
    assert txn.targets[0].data == b"hallo\n"


def test_the_largest_file_a_node_may_take_fits_in_one_batch() -> None:
    limit = int(
        json.loads(json.dumps(load_schema("node")))["properties"]["maxFileBytes"]["maximum"]
    )
    script = write_file_script("/" + "d" * 4000, "0644", "root", "root", True, tag="abcdef")
    assert len(script) + len(base64.b64encode(b"x" * limit)) <= batch.MAX_BATCH_BYTES
