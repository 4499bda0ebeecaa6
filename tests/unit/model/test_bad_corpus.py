"""The bad-input corpus: every case directory must give exactly its ``expected`` lines.

Each directory under ``tests/data/bad`` is a self-contained source tree; ``expected`` holds
the diagnostics ``fazai validate`` prints for it, in order, without the summary line. The
cases that must not be committed (a file over 4 MiB, NUL bytes, invalid UTF-8, very deep
nesting) are written into ``tmp_path`` here, with their expectations beside them.

Both the loader and the real command line are checked: the CLI must print the same lines,
exit 2 (0 when every line is a warning) and never show a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import controller.policy  # noqa: F401  (registers the Policy kind, as the CLI does)
from controller.errors import InvalidInputError
from controller.model import loader
from controller.model.yamlsource import MAX_DEPTH, MAX_FILE_BYTES
from controller.providers.linux.checks import DEFAULT_MAX_FILE_BYTES
from controller.source.open import open_source

CORPUS = Path(__file__).resolve().parents[2] / "data" / "bad"
CASES = sorted(p for p in CORPUS.iterdir() if p.is_dir())

NODE = """apiVersion: fazai.dev/v1alpha1
kind: Node
metadata: {name: web-1}
spec: {platform: linux, address: 10.0.0.1}
"""


def _huge(root: Path) -> list[str]:
    # Comments only: if the size limit failed, the file would still parse, and the
    # expected line would not appear.
    (root / "huge.yaml").write_bytes(b"# padding line\n" * (MAX_FILE_BYTES // 15 + 10))
    return [f"huge.yaml: file is larger than {MAX_FILE_BYTES} bytes; refusing"]


def _deep(root: Path) -> list[str]:
    # 100 levels: the composer refuses level MAX_DEPTH + 1, at that '['.
    (root / "deep.yaml").write_text("a: " + "[" * 100 + "]" * 100 + "\n")
    return [f"deep.yaml:1:{3 + MAX_DEPTH + 1}: nested deeper than {MAX_DEPTH} levels"]


def _very_deep(root: Path) -> list[str]:
    # Far past Python's recursion limit: refused at the same place, without RecursionError.
    (root / "deep.yaml").write_text("a:\n" + "".join("  " * i + "- \n" for i in range(1, 1500)))
    # Line i + 1 holds the sequence at level i, its '-' in column 2 * i + 1.
    level = MAX_DEPTH + 1
    return [f"deep.yaml:{level + 1}:{2 * level + 1}: nested deeper than {MAX_DEPTH} levels"]


def _deep_mappings(root: Path) -> list[str]:
    # Keys count as a level too: the key 'b' inside the mapping at level MAX_DEPTH.
    (root / "deep.yaml").write_text("a: " + "{b: " * 3000 + "1" + "}" * 3000 + "\n")
    return [f"deep.yaml:1:{4 + 4 * (MAX_DEPTH - 1) + 1}: nested deeper than {MAX_DEPTH} levels"]


def _binary(root: Path) -> list[str]:
    (root / "nodes.yaml").write_text(NODE)
    (root / "image.yaml").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00")
    return ["image.yaml: binary file (contains NUL bytes); expected YAML text"]


def _invalid_utf8(root: Path) -> list[str]:
    # Latin-1 'é' in a comment on line 2: the column counts characters, not bytes.
    (root / "nodes.yaml").write_bytes(
        b"apiVersion: fazai.dev/v1alpha1\nkind: Node # caf\xe9\nmetadata: {name: x}\n"
    )
    return ["nodes.yaml:2:17: invalid UTF-8 (byte 0xe9); YAML files must be UTF-8"]


def _huge_and_valid(root: Path) -> list[str]:
    # The refusal of one file does not hide the problems of the others.
    _huge(root)
    (root / "pkg.yaml").write_text(
        "apiVersion: fazai.dev/v1alpha1\nkind: Package\nmetadata: {name: curl}\n"
        "spec: {target: {node: nowhere}}\n"
    )
    return [
        f"huge.yaml: file is larger than {MAX_FILE_BYTES} bytes; refusing",
        "pkg.yaml:4:17: Package/curl: spec.target.node: no Node named 'nowhere'",
    ]


def _huge_sysctl_value(root: Path) -> list[str]:
    # 100 kB of a valid-looking value: refused by length, and the value is not echoed.
    (root / "nodes.yaml").write_text(
        NODE
        + "---\napiVersion: fazai.dev/v1alpha1\nkind: Sysctl\nmetadata: {name: rmem}\n"
        + "spec:\n  target: {node: web-1}\n  key: net.ipv4.tcp_rmem\n"
        + f"  value: '{'1 ' * 50000}'\n"
    )
    return [
        "nodes.yaml:12:3: Sysctl/rmem: spec.value: is 100000 characters long; at most 4096 allowed"
    ]


def _file_over_default_limit(root: Path) -> list[str]:
    # One byte over the default limit, sparse: the size is what counts, not a read.
    (root / "nodes.yaml").write_text(
        NODE
        + "---\napiVersion: fazai.dev/v1alpha1\nkind: File\nmetadata: {name: blob}\n"
        + "spec:\n  target: {node: web-1}\n  path: /srv/blob\n  source: blob.bin\n"
    )
    with open(root / "blob.bin", "wb") as handle:
        handle.truncate(DEFAULT_MAX_FILE_BYTES + 1)
    return [
        f"nodes.yaml:12:3: File/blob: spec.source: the file is {DEFAULT_MAX_FILE_BYTES + 1} "
        f"bytes; Node/web-1 takes files of at most {DEFAULT_MAX_FILE_BYTES} bytes (its "
        "spec.maxFileBytes)"
    ]


GENERATED: dict[str, Callable[[Path], list[str]]] = {
    "file-over-default-limit": _file_over_default_limit,
    "huge-sysctl-value": _huge_sysctl_value,
    "huge-file": _huge,
    "huge-file-beside-others": _huge_and_valid,
    "deep-nesting": _deep,
    "very-deep-nesting": _very_deep,
    "deep-mappings": _deep_mappings,
    "binary-file": _binary,
    "invalid-utf8": _invalid_utf8,
}


def _expected(case: Path) -> list[str]:
    return (case / "expected").read_text().splitlines()


def _is_warning(line: str) -> bool:
    return line.split(": ")[1:2] == ["warning"]


def _loader_lines(root: Path) -> list[str]:
    """What the loader reports: every diagnostic when it refuses, else the warnings."""
    try:
        state = loader.load(open_source(str(root)))
    except InvalidInputError as exc:
        return [str(d) for d in exc.diagnostics]
    return [str(w) for w in state.warnings]


def _run_cli(root: Path) -> subprocess.CompletedProcess[str]:
    # COLUMNS pinned: rich wraps at the terminal width, which must not decide the result.
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    env.pop("FAZAI_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", "validate", str(root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _check_cli(root: Path, expected: list[str]) -> None:
    result = _run_cli(root)
    assert "Traceback" not in result.stderr + result.stdout
    assert "internal error" not in result.stderr
    lines = result.stderr.splitlines()
    warnings_only = all(_is_warning(line) for line in expected)
    assert result.returncode == (0 if warnings_only else 2), result.stderr
    # The last line is the summary: "N error(s) ..." or "valid: ...".
    summary = lines[-1]
    if warnings_only:
        assert summary.startswith("valid: "), result.stderr
    else:
        errors = sum(not _is_warning(line) for line in expected)
        assert summary == f"{errors} error{'' if errors == 1 else 's'} in the desired state"
    assert lines[:-1] == expected


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 30
    for case in CASES:
        assert (case / "expected").is_file(), f"{case.name} has no expected file"
        assert _expected(case), f"{case.name}: expected is empty"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_loader_reports_expected(case: Path) -> None:
    lines = _loader_lines(case)
    assert lines == _expected(case)
    # A warning-only case loads; any error makes the loader refuse.
    if not all(_is_warning(line) for line in lines):
        with pytest.raises(InvalidInputError):
            loader.load(open_source(str(case)))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cli_prints_expected(case: Path) -> None:
    _check_cli(case, _expected(case))


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_loader(name: str, tmp_path: Path) -> None:
    expected = GENERATED[name](tmp_path)
    assert _loader_lines(tmp_path) == expected


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_cli(name: str, tmp_path: Path) -> None:
    expected = GENERATED[name](tmp_path)
    _check_cli(tmp_path, expected)


def test_cli_on_missing_path_is_one_clear_line(tmp_path: Path) -> None:
    result = _run_cli(tmp_path / "nope")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: {tmp_path / 'nope'}: no such file or directory"
