"""A command imports what it needs: `fazai validate` of a plain folder with a Policy and
a firewall rule compiles the policy's CEL without the library's REPL (prompt_toolkit),
and loads no deepdiff (only an update's compare needs it), no GitPython (the folder is in
no repository) and no rich progress bar (not a terminal)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DOCS = """\
apiVersion: fazai.dev/v1alpha1
kind: Node
metadata: {name: fw}
spec: {platform: opnsense, url: "https://192.0.2.1", apiKeyRef: {env: K}, apiSecretRef: {env: S}}
---
apiVersion: fazai.dev/v1alpha1
kind: FirewallRule
metadata: {name: r}
spec: {target: {node: fw}, action: block, interface: lan, description: r}
---
apiVersion: fazai.dev/v1alpha1
kind: Policy
metadata: {name: p}
spec:
  match: {kinds: [FirewallRule]}
  rules:
    - name: blocks
      effect: allow
      message: ok
      reason: tested
      overrides: [fazai-firewall-rules/block-on-controller-interface]
      expression: {expression}
"""

PROBE = textwrap.dedent(
    """
    import atexit, json, sys
    heavy = ("prompt_toolkit", "cel.cli", "deepdiff", "git", "rich.progress")
    atexit.register(lambda: print(json.dumps([m for m in heavy if m in sys.modules])))
    from controller.cli import run
    sys.argv = ["fazai", "validate", sys.argv[1]]
    run()
    """
)


def validate(tmp_path: Path, expression: str) -> tuple[int, list[str], str]:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "all.yaml").write_text(DOCS.replace("{expression}", expression))
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.fixture(autouse=True)
def _no_repository_above(tmp_path: Path) -> None:
    # The test's folder must be in no repository for GitPython to stay out.
    for place in (tmp_path, *tmp_path.parents):
        if (place / ".git").exists() or (place / "HEAD").exists():
            pytest.skip(f"{place} holds a repository")


def test_validate_compiles_cel_without_the_heavy_imports(tmp_path: Path) -> None:
    code, loaded, stderr = validate(tmp_path, "'item.name.startsWith(\"r\")'")
    assert code == 0, stderr
    assert loaded == []


def test_a_bad_expression_is_still_refused_with_its_position(tmp_path: Path) -> None:
    code, loaded, stderr = validate(tmp_path, "'item.name.startsWith('")
    assert code == 2
    assert "spec.rules[0].expression" in stderr and "does not compile" in stderr
    assert "prompt_toolkit" not in loaded
