"""MiniLM embeddings through fastembed, offline, from the two installed packages."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fazai_native.embed import READ_CHARS, Embedder, EmbedFailed, prepare_minilm
from fazai_native.types import ModelSpec


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedder]:
    folder = prepare_minilm(str(tmp_path_factory.mktemp("minilm")))
    loaded = Embedder(ModelSpec(name="mini", path=folder, kind="embedder", n_threads=1))
    yield loaded
    loaded.close()


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_a_paraphrase_scores_above_unrelated_text(embedder: Embedder) -> None:
    ssh, allow, cake = embedder.embed(
        ["open port 22 on the firewall", "allow ssh through the firewall", "bake a chocolate cake"]
    )
    assert len(ssh) == 384
    assert math.isclose(cosine(ssh, ssh), 1.0, abs_tol=1e-4)  # normalised
    assert cosine(ssh, allow) > 0.5 > cosine(ssh, cake) + 0.3


def test_a_long_text_is_read_only_as_far_as_the_model_reads_it(
    embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    words = " ".join(f"rule{i % 97} allows port {i}" for i in range(4000))  # ~90 KB
    text = words[: 64 * 1024]
    padded = " \n\t " * 10_000 + text[:20_000]  # whitespace runs first: they count for nothing
    model = embedder._model
    given: list[str] = []

    def noting(texts: list[str]) -> Any:
        given.extend(texts)
        return model.embed(texts)

    monkeypatch.setattr(embedder, "_model", SimpleNamespace(embed=noting))
    long, head, spaced = embedder.embed([text, text[:8192], padded])
    # The tokenizer saw at most READ_CHARS of each (a whole 64 KiB text took 0.22 s).
    assert [len(t) <= READ_CHARS for t in given] == [True, True, True]
    assert long == head  # what is past the model's 256 word pieces changes nothing
    assert max(abs(x - y) for x, y in zip(spaced, long, strict=True)) < 1e-6


def test_nothing_in_nothing_out_and_bounds_hold(embedder: Embedder) -> None:
    assert embedder.embed([]) == []
    with pytest.raises(EmbedFailed):
        embedder.embed(["x" * (64 * 1024 + 1)])
    assert embedder.memory_bytes > 100 * 1024 * 1024


def test_prepare_is_idempotent_and_needs_no_network(tmp_path: Path) -> None:
    first = prepare_minilm(str(tmp_path))
    stamp = (Path(first) / "model.onnx").stat().st_mtime_ns
    assert prepare_minilm(str(tmp_path)) == first
    assert (Path(first) / "model.onnx").stat().st_mtime_ns == stamp


def test_a_damaged_cached_file_is_written_again(tmp_path: Path) -> None:
    folder = Path(prepare_minilm(str(tmp_path)))
    model = folder / "model.onnx"
    whole = model.read_bytes()
    model.write_bytes(whole[: len(whole) // 2])  # a copy cut short (a full disk, a crash)
    config = folder / "tokenizer.json"
    good = config.read_bytes()
    config.write_bytes(good.replace(b'"[UNK]"', b'"[PWN]"'))
    assert prepare_minilm(str(tmp_path)) == str(folder)
    assert model.read_bytes() == whole and config.read_bytes() == good
    embedder = Embedder(ModelSpec(name="mini", path=str(folder), kind="embedder"))
    assert len(embedder.embed(["still works"])[0]) == 384


def test_a_folder_without_the_tokenizer_is_refused(tmp_path: Path) -> None:
    folder = Path(prepare_minilm(str(tmp_path)))
    (folder / "tokenizer.json").unlink()
    with pytest.raises(EmbedFailed, match=r"tokenizer\.json"):
        Embedder(ModelSpec(name="mini", path=str(folder), kind="embedder"))
