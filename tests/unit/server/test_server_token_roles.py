"""Token roles and scopes in fazai.yaml: the new form, the deprecated ``scope: read|write``
still honoured as before, and mistakes reported with file, line and field."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from controller.errors import InvalidInputError
from controller.reconcile import config
from controller.server.auth import TokenTable
from controller.server.settings import Role, TokenScope, from_config

HEAD = """\
apiVersion: fazai.dev/v1alpha1
kind: ControllerConfig
sources:
  - name: infra
    url: https://git.example/acme/infra.git
server:
  tokens:
"""


def problems(tmp_path: Path, tokens: str) -> list[str]:
    path = tmp_path / "fazai.yaml"
    path.write_text(HEAD + textwrap.indent(textwrap.dedent(tokens), "    "))
    with pytest.raises(InvalidInputError) as caught:
        config.load(path)
    return [str(d).removeprefix(f"{tmp_path}/") for d in caught.value.diagnostics]


def test_roles_and_scopes_are_read() -> None:
    settings = from_config(
        {
            "tokens": [
                {"name": "grafana", "role": "viewer", "tokenRef": {"env": "A"}},
                {
                    "name": "lab-approver",
                    "role": "approver",
                    "scope": {"sources": ["lab"], "nodes": {"matchLabels": {"site": "lisbon"}}},
                    "tokenRef": {"env": "B"},
                },
                {"name": "root", "role": "admin", "tokenRef": {"env": "C"}},
            ]
        }
    )
    grafana, lab, root = settings.tokens
    assert (grafana.role, grafana.scope, grafana.legacy) == (Role.VIEWER, TokenScope(), None)
    assert lab.role is Role.APPROVER
    assert lab.scope == TokenScope(frozenset({"lab"}), (("site", "lisbon"),))
    assert lab.scope.has_source("lab") and not lab.scope.has_source("infra")
    assert lab.scope.has_node({"site": "lisbon", "role": "web"})
    assert not lab.scope.has_node({"site": "porto"}) and not lab.scope.has_node(None)
    assert root.role is Role.ADMIN and root.scope.unrestricted


def test_the_old_scopes_keep_their_powers_and_are_flagged_deprecated(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``write`` could trigger, approve and abort: it is the approver role, no more (not
    admin) and no less (it keeps approving); ``read`` is the viewer."""
    settings = from_config(
        {
            "tokens": [
                {"name": "ci", "scope": "write", "tokenRef": {"env": "FAZAI_T_W"}},
                {"name": "grafana", "scope": "read", "tokenRef": {"env": "FAZAI_T_R"}},
            ]
        }
    )
    ci, grafana = settings.tokens
    assert (ci.role, ci.legacy, ci.scope.unrestricted) == (Role.APPROVER, "write", True)
    assert (grafana.role, grafana.legacy) == (Role.VIEWER, "read")
    monkeypatch.setenv("FAZAI_T_W", "w" * 32)
    monkeypatch.setenv("FAZAI_T_R", "r" * 32)
    with caplog.at_level(logging.WARNING, "fazai.server"):
        TokenTable.from_settings(settings)
    warned = [r.getMessage() for r in caplog.records]
    assert warned == [
        "server.tokens[0] (ci): scope: write is deprecated; write role: approver instead",
        "server.tokens[1] (grafana): scope: read is deprecated; write role: viewer instead",
    ]


def test_a_bad_role_names_file_line_and_field(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        - name: ci
          role: boss
          tokenRef: {env: CI_TOKEN}
        """,
    )
    assert found == [
        "fazai.yaml:9:7: ControllerConfig: server.tokens[0].role: "
        "must be one of: viewer, operator, approver, admin"
    ]


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        (
            "{source: [lab]}",
            "fazai.yaml:10:15: ControllerConfig: server.tokens[0].scope.source: "
            "unknown field 'source'; allowed: nodes, sources",
        ),
        (
            "{nodes: {matchLabels: {site: 1}}}",
            "fazai.yaml:10:37: ControllerConfig: server.tokens[0].scope.nodes.matchLabels.site: "
            "expected string, got number",
        ),
        (
            "{sources: lab}",
            "fazai.yaml:10:15: ControllerConfig: server.tokens[0].scope.sources: "
            "expected list, got string",
        ),
        (
            "{nodes: {site: lisbon}}",
            "fazai.yaml:10:23: ControllerConfig: server.tokens[0].scope.nodes.site: "
            "unknown field 'site'; allowed: matchLabels",
        ),
    ],
)
def test_a_bad_scope_names_file_line_and_field(tmp_path: Path, scope: str, expected: str) -> None:
    found = problems(
        tmp_path,
        f"""\
        - name: ci
          role: approver
          scope: {scope}
          tokenRef: {{env: CI_TOKEN}}
        """,
    )
    assert expected in found


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            "role: admin\n  scope: {sources: [infra]}",
            "fazai.yaml:10:7: ControllerConfig: server.tokens[0].scope: an admin token acts on "
            "every source and node",
        ),
        (
            "role: viewer\n  scope: write",
            "fazai.yaml:10:7: ControllerConfig: server.tokens[0].scope: scope: write is the old "
            "way to write a role",
        ),
        (
            "tokenRef: {env: X}\n  scope: {sources: [infra]}",
            "fazai.yaml:8:7: ControllerConfig: server.tokens[0]: needs a role",
        ),
    ],
)
def test_role_and_scope_that_cannot_go_together_are_refused_with_the_field(
    tmp_path: Path, entry: str, expected: str
) -> None:
    body = f"- name: ci\n  {entry}\n"
    if "tokenRef" not in entry:
        body += "  tokenRef: {env: CI_TOKEN}\n"
    (found,) = problems(tmp_path, body)
    assert found.startswith(expected)
