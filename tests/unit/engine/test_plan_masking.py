"""Error text that comes from a node reaches no plan with a password hash in it."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from controller.engine import plan as planning
from controller.errors import FactsError
from controller.model import loader
from controller.model.document import Document
from controller.output import plan_markdown, plan_text
from controller.plan import plan_json
from controller.plan.diff import Observed
from controller.providers.base import Observation
from controller.source.open import open_source
from controller.source.tree import SourceTree

HASH = "$6$rounds=5000$saltsalt$Qm9vYmFyYmF6cXV4cXV1eGZyb2JuaWNhdGVk"
YESCRYPT = "$y$j9T$abcdefghijklmnop$ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abc"
STATE = """apiVersion: fazai.dev/v1alpha1
kind: Node
metadata: {name: web-1}
spec: {platform: linux, address: 10.0.0.1}
---
apiVersion: fazai.dev/v1alpha1
kind: Node
metadata: {name: web-2}
spec: {platform: linux, address: 10.0.0.2}
---
apiVersion: fazai.dev/v1alpha1
kind: File
metadata: {name: motd}
spec: {target: {node: web-1}, path: /etc/motd, content: "hi\\n"}
"""


async def _observe(node: Document, resources: Sequence[Document], tree: SourceTree) -> Observation:
    if node.name == "web-2":
        raise FactsError(node.name, f"cannot read: root:{YESCRYPT}:19000::")
    return Observation({d: Observed(None, None, f"nft: root:{HASH}:19000:0") for d in resources})


def test_hashes_from_node_errors_are_masked_in_text_json_and_markdown(tmp_path: Path) -> None:
    (tmp_path / "state.yaml").write_text(STATE)
    state = loader.load(open_source(str(tmp_path)))
    plan = asyncio.run(planning.build(state, observe=_observe))
    buffer = io.StringIO()
    plan_text.render(plan, Console(file=buffer, width=200, no_color=True))
    outputs = [buffer.getvalue(), plan_json.render(plan), plan_markdown.render(plan)]
    for out in outputs:
        assert "$6$" not in out and "$y$" not in out and "saltsalt" not in out
        assert "root:***:19000" in out
    errors = json.loads(plan_json.render(plan))
    assert "root:***:19000::" in json.dumps(errors)
