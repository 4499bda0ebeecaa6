"""The layering contracts of pyproject.toml ([tool.importlinter]) hold on the real tree,
and catch a bad import: each case injects one into a copy of the package in a temporary
folder (never into the code) and expects the checker to fail, naming the contract."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT = str(Path(sys.executable).with_name("lint-imports"))


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the ``controller`` package under ``root``, with the contracts
    of the repository's pyproject.toml."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [LINT, "--no-cache", "--no-logo", str(REPO / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_real_tree_keeps_every_contract() -> None:
    done = lint(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


BAD_IMPORTS = [
    # (module, the import injected, the contract that must fail)
    (
        "providers/linux/ownership.py",
        "from controller.engine import apply",
        "Providers import no engine, CLI, server, loop or forge",
    ),
    (
        "providers/opnsense/identity.py",
        "import controller.server.app",
        "Layers, top to bottom",
    ),
    (
        "model/loader.py",
        "from controller import providers",
        "The model knows no platform: the entry points register the providers",
    ),
    (
        "engine/prune.py",
        "from controller.providers.opnsense import identity",
        "Pipeline, policy, engine, loop and forges name no platform",
    ),
    (
        "plan/items.py",
        "from controller.output import summary",
        "No circles between the subpackages",
    ),
    (
        "reconcile/passes.py",
        "from controller.engine import apply",
        "Only the pipeline imports the engine's apply (the gate)",
    ),
]


@pytest.mark.parametrize(("module", "statement", "contract"), BAD_IMPORTS)
def test_a_bad_import_breaks_its_contract(
    tmp_path: Path, module: str, statement: str, contract: str
) -> None:
    shutil.copytree(
        REPO / "controller", tmp_path / "controller", ignore=shutil.ignore_patterns("__pycache__")
    )
    target = tmp_path / "controller" / module
    lines = target.read_text().splitlines(keepends=True)
    # After the module's docstring and __future__ import: a plain top-level import.
    at = next(i for i, line in enumerate(lines) if line.startswith("from __future__")) + 1
    target.write_text("".join([*lines[:at], statement + "\n", *lines[at:]]))

    done = lint(tmp_path)

    assert done.returncode != 0, done.stdout
    assert any(line.startswith(f"{contract} BROKEN") for line in done.stdout.splitlines()), (
        done.stdout
    )
    # The checker read the copy, not the installed package: it names the injected line.
    importer = "controller." + module.removesuffix(".py").replace("/", ".")
    assert f"{importer} -> " in done.stdout, done.stdout
