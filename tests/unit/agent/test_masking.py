"""Secrets out of text before a prompt or a transcript sees it."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from controller.agent.masking import mask


def _private_key() -> str:
    """A fresh OpenSSH private key, made for this run (none is kept in the tree)."""
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    return pem.decode()


def test_known_secrets_hashes_keys_and_named_values_are_masked() -> None:
    key = _private_key()
    text = (
        "api key in use: s3cr3t-value-123\n"
        "DB_PASSWORD=hunter2 mode=new\n"
        "token: abcdef\n"
        "Authorization: Bearer eyJabc.def\n"
        "root:$6$saltsalt$0123456789abcdefghijABCDEFGHIJ0123456789abcdef:19000:0:99999:7:::\n" + key
    )
    out = mask(text, known=["s3cr3t-value-123"])
    body = key.splitlines()[1]  # a line of the key's base64
    for secret in ("s3cr3t-value-123", "hunter2", "abcdef\n", "eyJabc", "$6$saltsalt", body):
        assert secret not in out, secret
    assert "mode=new" in out  # plain settings stay readable
    assert "DB_PASSWORD=***" in out


def test_short_known_values_are_not_masked_everywhere() -> None:
    # A one-letter "secret" would mask every 'a' of the text: values under 4 are left.
    assert mask("a cat", known=["a"]) == "a cat"


@pytest.mark.parametrize(
    "text",
    [
        "export DB_PASSWORD=hunter2xyzSECRET",
        "foo password=hunter2xyzSECRET",
        "a b c password=hunter2xyzSECRET",
        "Environment=API_KEY=hunter2xyzSECRET",
        "requirepass hunter2xyzSECRET",
        "masterauth: hunter2xyzSECRET",
        '{"password": "hunter2xyzSECRET", "user": "app"}',
        '{"SecretAccessKey" : "hunter2xyzSECRET"}',
        "password password=hunter2xyzSECRET",
        "client_secret='hunter2xyzSECRET'",
    ],
)
def test_every_form_a_setting_is_written_in(text: str) -> None:
    out = mask(text)
    assert "hunter2xyzSECRET" not in out, out
    assert "***" in out


def test_switches_and_loop_words_stay_readable() -> None:
    # The model must see how sshd is set, and the loop's own words about a tool.
    assert mask("PasswordAuthentication no") == "PasswordAuthentication no"
    assert mask("tool sshd-auth-dropin accepted") == "tool sshd-auth-dropin accepted"
    assert "hunter2xyz" not in mask("db_pass=hunter2xyz")


def test_a_check_named_like_a_secret_keeps_its_verdict_readable() -> None:
    assert mask("checks failing: password (exit 1)") == "checks failing: password (exit 1)"


def test_a_password_in_a_url_is_masked() -> None:
    said = mask("fatal: unable to access 'https://bot:ghp_x9secretvalue@git.example.org/a.git'")
    assert "ghp_x9secretvalue" not in said and "https://bot:***@git.example.org" in said
