"""`fazai plan --base/--head` and `fazai review` as a user meets them: refusals before any
node is read, messages naming the problem, never a secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import git
import jsonschema
import pytest

from controller.errors import ForgeAuthError
from controller.forges import command
from controller.testing.forges import ForgeServer

AUTHOR = git.Actor("Test", "test@example.invalid")
NODE = (
    "apiVersion: fazai.dev/v1alpha1\nkind: Node\nmetadata: {name: web-1}\n"
    "spec: {platform: linux, address: 127.0.0.1, port: 1, connectTimeout: 1}\n"
)
BROKEN = "apiVersion: fazai.dev/v1alpha1\nkind: File\nmetadata: {name: Bad_Name}\n"


def fazai(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "infra"
    repository = git.Repo.init(root, initial_branch="main")
    (root / "nodes.yaml").write_text(NODE)
    repository.index.add(["nodes.yaml"])
    repository.index.commit("base", author=AUTHOR, committer=AUTHOR)
    repository.create_head("broken").checkout()
    (root / "bad.yaml").write_text(BROKEN)
    repository.index.add(["bad.yaml"])
    repository.index.commit("broken", author=AUTHOR, committer=AUTHOR)
    repository.heads["main"].checkout()
    return root


def test_base_and_head_go_together(repo: Path) -> None:
    done = fazai("plan", str(repo), "--base", "main")
    assert done.returncode == 2 and "give both --base and --head" in done.stderr
    done = fazai("plan", str(repo), "--base", "main", "--head", "main", "--ref", "main")
    assert done.returncode == 2 and "no --ref" in done.stderr


def test_unknown_ref_and_invalid_head(repo: Path) -> None:
    done = fazai("plan", str(repo), "--base", "main", "--head", "nope")
    assert done.returncode == 2 and "unknown ref 'nope'" in done.stderr
    done = fazai("plan", str(repo), "--base", "main", "--head", "broken")
    assert done.returncode == 2 and "bad.yaml:" in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_node_is_trouble_in_json(repo: Path) -> None:
    done = fazai("plan", str(repo), "--base", "main", "--head", "main", "-o", "json")
    assert done.returncode == 2
    rendered = json.loads(done.stdout)
    from controller.plan import plan_json

    jsonschema.validate(rendered, plan_json.schema())
    assert rendered["nodes"][0]["status"] == "error"
    assert rendered["review"]["reads"] == {"web-1": 1}


def test_schema_of_plans_stays_valid() -> None:
    done = fazai("schema", "--plan")
    schema = json.loads(done.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert "review" in schema["properties"]


def test_review_refuses_bad_options_before_planning(repo: Path) -> None:
    base = ["review", str(repo), "--base", "main", "--head", "main", "--pr", "1"]
    done = fazai(*base, "--forge", "github", "--repo", "just-a-name")
    assert done.returncode == 2 and "give OWNER/NAME" in done.stderr
    done = fazai(*base, "--forge", "github", "--repo", "a/b", "--token-ref", "vault:x")
    assert done.returncode == 2 and "give env:NAME or file:PATH" in done.stderr
    done = fazai(*base, "--forge", "gitea", "--repo", "a/b", "--token-ref", "env:X")
    assert done.returncode == 2 and "give --api-url" in done.stderr
    done = fazai(*base, "--forge", "github", "--repo", "a/b", "--token-ref", "env:FZ_UNSET_TOKEN")
    assert done.returncode == 2 and "FZ_UNSET_TOKEN is not set" in done.stderr


def test_review_of_an_invalid_head_comments_and_fails(repo: Path) -> None:
    with ForgeServer("github", repo="acme/infra", pulls=[4]) as server:
        done = fazai(
            "review", str(repo), "--base", "main", "--head", "broken", "--forge", "github",
            "--repo", "acme/infra", "--pr", "4", "--api-url", server.api_url, "--sha", "broken",
            env={"GITHUB_TOKEN": server.token},
        )  # fmt: skip
        assert done.returncode == 2
        (note,) = server.comments(4)
        assert "invalid documents" in note["body"] and "bad.yaml" in note["body"]
        sha = git.Repo(repo).heads["broken"].commit.hexsha
        assert [s["state"] for s in server.statuses(sha)] == ["failure"]


def test_config_file_names_the_forge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "fazai.yaml"
    config.write_text(
        "apiVersion: fazai.dev/v1alpha1\nkind: ControllerConfig\nforges:\n"
        "  - {type: gitea, name: home, apiUrl: 'https://git.example/api/v1/',"
        " tokenRef: {env: HOME_TOKEN}, statusContext: infra/plan}\n"
    )
    chosen = command.forge_settings("home", api_url=None, token_ref=None, config=config, environ={})
    assert (chosen.type, chosen.api_url, dict(chosen.token_ref), chosen.status_context) == (
        "gitea",
        "https://git.example/api/v1",
        {"env": "HOME_TOKEN"},
        "infra/plan",
    )
    from_env = command.forge_settings(
        "gitlab",
        api_url=None,
        token_ref="file:/run/secrets/gl",
        config=None,
        environ={"CI_API_V4_URL": "https://gl.example/api/v4"},
    )
    assert (from_env.api_url, dict(from_env.token_ref)) == (
        "https://gl.example/api/v4",
        {"file": "/run/secrets/gl"},
    )


def test_review_with_an_unknown_sha(repo: Path) -> None:
    with ForgeServer("github", repo="acme/infra", pulls=[4]) as server:
        done = fazai(
            "review", str(repo), "--base", "main", "--head", "main", "--forge", "github",
            "--repo", "acme/infra", "--pr", "4", "--api-url", server.api_url, "--sha", "nope",
            env={"GITHUB_TOKEN": server.token},
        )  # fmt: skip
        assert done.returncode == 2 and "unknown commit 'nope'" in done.stderr
        assert server.requests == []


async def test_a_comment_that_cannot_be_written_leaves_no_pending_status() -> None:
    from controller.forges.base import CommitState
    from controller.forges.settings import ForgeSettings

    sha = "9fceb02d0ae598e95dc970b74767f19372d61af8"
    with ForgeServer("github", repo="acme/infra", pulls=[4]) as server:
        os.environ["FZ_TEST_GH"] = server.token
        try:
            settings = ForgeSettings("github", "github", server.api_url, {"env": "FZ_TEST_GH"})
            posting = command.prepare_posting(settings, "acme/infra", 4)
        finally:
            del os.environ["FZ_TEST_GH"]
        server.fail(403, method="POST", path="/comments")
        with pytest.raises(ForgeAuthError, match="403"):
            await command.publish(posting, sha, "plan", CommitState.SUCCESS, "ok")
        (status,) = server.statuses(sha)
        assert status["state"] == "error"
        assert status["description"] == "the plan comment could not be written (403)"
