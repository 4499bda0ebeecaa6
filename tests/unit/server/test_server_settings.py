"""The ``server`` section: parsing, defaults, and the refusals that keep the API closed."""

from __future__ import annotations

import jsonschema
import pytest

from controller.errors import FazaiError
from controller.server.errors import ServerConfigError
from controller.server.settings import (
    Role,
    SecretRef,
    ServerSettings,
    check_exposure,
    from_config,
    is_loopback,
    parse_listen,
    schema,
)

TOKEN = {"name": "ci", "scope": "write", "tokenRef": {"env": "FAZAI_TOKEN_CI"}}


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())


def test_defaults_listen_on_loopback_without_tokens() -> None:
    empty: dict[str, object] | None
    for empty in (None, {}):
        settings = from_config(empty)
        assert (settings.host, settings.port, settings.tokens) == ("127.0.0.1", 8080, ())
        assert settings.loopback and settings.listen == "127.0.0.1:8080"


def test_a_full_section() -> None:
    settings = from_config(
        {
            "listen": "[::1]:9000",
            "tokens": [TOKEN, {"name": "grafana", "scope": "read", "tokenRef": {"file": "/t"}}],
            "webhooks": {
                "github": {"secretRef": {"env": "GH"}},
                "gitlab": {"tokenRef": {"file": "~/gl"}},
            },
            "tls": {"certFile": "/etc/fazai/cert.pem", "keyFile": "/etc/fazai/key.pem"},
        }
    )
    assert (settings.host, settings.port, settings.listen) == ("::1", 9000, "[::1]:9000")
    assert [(t.name, t.role) for t in settings.tokens] == [
        ("ci", Role.APPROVER),
        ("grafana", Role.VIEWER),
    ]
    assert settings.tokens[1].ref == SecretRef(file="/t")
    assert settings.webhook("github") is not None
    assert settings.webhook("github").ref.as_mapping() == {"env": "GH"}  # type: ignore[union-attr]
    assert settings.webhook("gitlab").ref == SecretRef(file="~/gl")  # type: ignore[union-attr]
    assert settings.webhook("gitea") is None
    assert settings.tls is not None and str(settings.tls.key_file) == "/etc/fazai/key.pem"


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "192.0.2.10:80", "[::]:8080", "fw.lan:8080"])
def test_a_reachable_address_without_a_token_is_refused(listen: str) -> None:
    with pytest.raises(ServerConfigError) as caught:
        from_config({"listen": listen})
    assert caught.value.path == ("listen",)
    assert "no token is configured" in str(caught.value)
    assert isinstance(caught.value, FazaiError)  # so the CLI exits 2 with the message
    # ... and with a token it is allowed.
    assert from_config({"listen": listen, "tokens": [TOKEN]}).loopback is False


def test_check_exposure_guards_settings_made_in_code() -> None:
    with pytest.raises(ServerConfigError):
        check_exposure(ServerSettings(host="0.0.0.0"))
    check_exposure(ServerSettings(host="::1"))
    check_exposure(ServerSettings(host="localhost"))


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("", False),
        ("10.0.0.1", False),
        ("localhost.evil.example", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("text", ["8080", "::1:8080", "[nothex]:80", "host:", "host:99999", ":80"])
def test_bad_listen_values(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


def test_a_port_zero_means_any_free_port() -> None:
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)


def test_duplicate_token_names_are_refused() -> None:
    with pytest.raises(ServerConfigError) as caught:
        from_config({"tokens": [TOKEN, dict(TOKEN)]})
    assert caught.value.path == ("tokens", 1, "name")


def test_schema_errors_name_the_field() -> None:
    with pytest.raises(ServerConfigError) as caught:
        from_config({"tokens": [{**TOKEN, "scope": "admin"}]})
    assert caught.value.path == ("tokens", 0, "scope")
    assert "read, write" in str(caught.value)
    with pytest.raises(ServerConfigError) as caught:
        from_config({"listn": "127.0.0.1:1"})
    assert "listn" in str(caught.value)


@pytest.mark.parametrize(
    "section",
    [
        {"tokens": [{**TOKEN, "tokenRef": "s3cr3t-value-pasted-inline"}]},
        {"tokens": [{**TOKEN, "tokenRef": {"value": "s3cr3t-value-pasted-inline"}}]},
        {"tokens": [{**TOKEN, "tokenRef": {"env": "s3cr3t-value-pasted-inline"}}]},
        {"webhooks": {"github": "s3cr3t-value-pasted-inline"}},
        {"webhooks": {"github": {"secret": "s3cr3t-value-pasted-inline"}}},
    ],
)
def test_a_secret_written_inline_is_refused_without_being_repeated(section: object) -> None:
    with pytest.raises(ServerConfigError) as caught:
        from_config(section)  # type: ignore[arg-type]
    assert "s3cr3t" not in str(caught.value)
    assert "{env: NAME} or {file: PATH}" in str(caught.value)


def test_secret_ref_parsing_for_cli_options() -> None:
    assert SecretRef.parse("env:FAZAI_TOKEN") == SecretRef(env="FAZAI_TOKEN")
    assert SecretRef.parse("file:/run/secrets/t") == SecretRef(file="/run/secrets/t")
    assert str(SecretRef(file="/x")) == "file:/x"
    for bad in ("FAZAI_TOKEN", "env:", "vault:x"):
        with pytest.raises(ValueError):
            SecretRef.parse(bad)


def test_slow_client_limits_have_defaults_and_can_be_set() -> None:
    defaults = from_config({})
    assert (defaults.head_timeout, defaults.body_timeout, defaults.max_connections) == (
        10.0,
        30.0,
        500,
    )
    limits = {"headTimeout": 2.5, "bodyTimeout": 60, "maxConnections": 2000}
    settings = from_config({"limits": limits})
    assert (settings.head_timeout, settings.body_timeout, settings.max_connections) == (
        2.5,
        60.0,
        2000,
    )
    with pytest.raises(ServerConfigError) as caught:
        from_config({"limits": {"headTimeout": 0}})
    assert caught.value.path == ("limits", "headTimeout")


def test_a_token_names_the_identities_its_owner_commits_under() -> None:
    token = {"name": "ops-alice", "role": "approver", "tokenRef": {"env": "FAZAI_T"}}
    settings = from_config({"tokens": [{**token, "identities": ["alice@example.com", "Alice"]}]})
    assert settings.tokens[0].identities == ("alice@example.com", "Alice")
    assert from_config({"tokens": [token]}).tokens[0].identities == ()
    for bad, where in (
        ([], ("tokens", 0, "identities")),
        ([""], ("tokens", 0, "identities", 0)),
        (["ok@example.com", "Alice <alice@example.com>"], ("tokens", 0, "identities", 1)),
    ):
        with pytest.raises(ServerConfigError) as caught:
            from_config({"tokens": [{**token, "identities": bad}]})
        assert caught.value.path == where, bad
