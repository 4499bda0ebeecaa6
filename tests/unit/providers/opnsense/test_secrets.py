"""Secrets by reference: resolved from env or file, and never shown once resolved."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.errors import SecretError
from controller.secrets import Secret, resolve

VALUE = "Zm9vYmFyLXNlY3JldC12YWx1ZQ=="


def test_env_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAZAI_T_SECRET", f"  {VALUE}\n")
    secret = resolve({"env": "FAZAI_T_SECRET"}, "fw", "apiSecretRef")
    assert secret.reveal() == VALUE


def test_file_reference_strips_the_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "fw.secret"
    path.write_text(VALUE + "\n")
    assert resolve({"file": str(path)}, "fw", "apiSecretRef").reveal() == VALUE


def test_file_reference_expands_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "k").write_text(VALUE)
    assert resolve({"file": "~/k"}, "fw", "apiKeyRef").reveal() == VALUE


def _refused(ref: dict[str, str], field: str = "apiSecretRef") -> SecretError:
    with pytest.raises(SecretError) as caught:
        resolve(ref, "fw", field)
    error = caught.value
    assert error.node == "fw"
    assert not error.retryable
    assert str(error).startswith(f"fw: {field}: ")
    assert VALUE not in str(error) and VALUE not in repr(error)
    return error


def test_missing_env_var_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAZAI_T_NOPE", raising=False)
    error = _refused({"env": "FAZAI_T_NOPE"}, "apiKeyRef")
    assert error.message == "apiKeyRef: environment variable FAZAI_T_NOPE is not set"


@pytest.mark.parametrize("blank", ["", "   ", "\n\n"])
def test_empty_env_var_is_refused_not_sent(monkeypatch: pytest.MonkeyPatch, blank: str) -> None:
    monkeypatch.setenv("FAZAI_T_BLANK", blank)
    error = _refused({"env": "FAZAI_T_BLANK"})
    assert error.message == "apiSecretRef: environment variable FAZAI_T_BLANK is empty"


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    error = _refused({"file": str(tmp_path / "nope")})
    assert (
        error.message == f"apiSecretRef: cannot read {tmp_path / 'nope'}: No such file or directory"
    )


def test_directory_is_not_a_secret_file(tmp_path: Path) -> None:
    error = _refused({"file": str(tmp_path)})
    assert error.message.startswith(f"apiSecretRef: cannot read {tmp_path}: ")


def test_path_through_a_file_is_unreadable(tmp_path: Path) -> None:
    # Unreadable even for root, unlike a chmod 0 file.
    (tmp_path / "plain").write_text(VALUE)
    error = _refused({"file": str(tmp_path / "plain" / "secret")})
    assert error.message.endswith(": Not a directory")


@pytest.mark.parametrize("blank", ["", "\n", "  \n\t"])
def test_empty_file(tmp_path: Path, blank: str) -> None:
    path = tmp_path / "empty"
    path.write_text(blank)
    error = _refused({"file": str(path)})
    assert error.message == f"apiSecretRef: {path} is empty"


def test_file_of_two_lines_is_refused(tmp_path: Path) -> None:
    # OPNsense's downloaded apikey.txt holds "key=...\nsecret=...": not a single value.
    path = tmp_path / "apikey.txt"
    path.write_text(f"key=abc\nsecret={VALUE}\n")
    error = _refused({"file": str(path)})
    assert (
        error.message
        == f"apiSecretRef: {path} holds more than one line; it must hold only the value"
    )


def test_file_not_utf8_is_refused_without_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "binary"
    path.write_bytes(b"\xff\xfe" + VALUE.encode())
    error = _refused({"file": str(path)})
    assert error.message == f"apiSecretRef: {path} is not UTF-8 text"
    # Not chained to the decode error, whose .object holds the file's bytes.
    assert error.__cause__ is None
    assert error.__suppress_context__


def test_reference_without_env_or_file() -> None:
    error = _refused({})
    assert error.message == "apiSecretRef: give {env: NAME} or {file: PATH}"


def test_secret_masks_itself() -> None:
    secret = Secret(VALUE)
    shown = [
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        f"{secret:>40}",
        "%s" % secret,  # noqa: UP031 - the old style is what logging uses
        repr([secret]),
        repr({"k": secret}),
    ]
    for text in shown:
        assert VALUE not in text
        assert "***" in text
    assert secret.reveal() == VALUE


def test_secret_equality_compares_values() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert len({Secret("a"), Secret("a")}) == 1
