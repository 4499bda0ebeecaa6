"""The forges section of fazai.yaml: schema, defaults, errors with field paths."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from controller.diagnostics import Location
from controller.errors import InvalidInputError, SecretError
from controller.forges import settings


def test_schema_is_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(settings.schema())


def test_defaults_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "gitea.token"
    token_file.write_text("tok-from-file\n")
    config = {
        "apiVersion": "fazai.dev/v1alpha1",
        "forges": [
            {"type": "github"},
            {"type": "gitlab", "apiUrl": "https://gitlab.example/api/v4/", "timeout": 5},
            {
                "type": "forgejo",
                "name": "home",
                "apiUrl": "https://git.example/api/v1",
                "tokenRef": {"file": str(token_file)},
                "statusContext": "fazai/edge",
                "tls": {"caBundle": "/etc/fazai/ca.pem"},
            },
        ],
    }
    parsed = settings.from_config(config)
    github, gitlab, home = parsed.forges
    assert (github.name, github.api_url, dict(github.token_ref)) == (
        "github",
        "https://api.github.com",
        {"env": "GITHUB_TOKEN"},
    )
    assert (gitlab.api_url, gitlab.timeout) == ("https://gitlab.example/api/v4", 5.0)
    assert (home.type, home.name, home.status_context, home.verify) == (
        "gitea",
        "home",
        "fazai/edge",
        "/etc/fazai/ca.pem",
    )
    assert parsed.get("home") is home and parsed.get("gitlab") is gitlab
    assert parsed.get("gitea") is home  # the only one of its type
    target = home.target()
    assert target.token.reveal() == "tok-from-file" and "tok-from-file" not in repr(target)
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    with pytest.raises(SecretError, match="GITHUB_TOKEN is not set"):
        github.target()


def test_no_section_is_no_forges() -> None:
    assert settings.from_config({"apiVersion": "fazai.dev/v1alpha1"}).forges == ()


def test_errors_name_the_field_and_position() -> None:
    where = {("forges", 1, "token"): Location("fazai.yaml", 12, 7)}
    config = {
        "forges": [
            {"type": "bitbucket"},
            {"type": "github", "token": "ghp_inline"},
            {"type": "gitea"},
            {"type": "gitlab", "tokenRef": {"env": "A", "file": "/b"}},
        ]
    }
    with pytest.raises(InvalidInputError) as caught:
        settings.from_config(config, lambda p: where.get(p, Location("fazai.yaml")))
    shown = sorted(str(d) for d in caught.value.diagnostics)
    assert (
        "fazai.yaml:12:7: forges[1].token: inline tokens are refused; give the token by "
        "reference: tokenRef: {env: NAME} or {file: PATH}" in shown
    )
    assert any("forges[0].type: must be one of" in s for s in shown)
    assert any("forges[3].tokenRef: give exactly one of env or file" in s for s in shown)
    assert all("ghp_inline" not in s for s in shown)
    # Schema errors come first; the gitea entry's missing apiUrl once those are fixed.
    with pytest.raises(InvalidInputError) as caught:
        settings.from_config(
            {"forges": [{"type": "gitea"}, {"type": "github"}, {"type": "github"}]}
        )
    shown = sorted(str(d) for d in caught.value.diagnostics)
    assert shown == [
        "fazai.yaml: forges[0]: a gitea forge needs apiUrl (https://HOST/api/v1)",
        "fazai.yaml: forges[2].name: a second forge named 'github' (the first is forges[1]); "
        "give each a distinct name",
    ]


def test_relative_files_are_taken_from_the_config_folder(tmp_path: Path) -> None:
    config = {
        "forges": [
            {
                "type": "gitea",
                "apiUrl": "https://git.example/api/v1",
                "tokenRef": {"file": "secrets/gitea.token"},
                "tls": {"caBundle": "ca.pem"},
            }
        ]
    }
    (entry,) = settings.from_config(config, base=tmp_path).forges
    assert entry.token_ref == {"file": str(tmp_path / "secrets/gitea.token")}
    assert entry.verify == str(tmp_path / "ca.pem")
    (unchanged,) = settings.from_config(config).forges
    assert unchanged.token_ref == {"file": "secrets/gitea.token"}
