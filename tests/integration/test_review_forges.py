"""`fazai review` end to end: plan a pull request against a real SSH node and an emulated
firewall, then keep one plan comment on it and set a status on its head, on each forge's
API served locally over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.errors import InvalidInputError
from controller.forges import command, comment
from controller.forges.settings import ForgeSettings
from controller.testing.fleet import Fleet
from controller.testing.forges import ForgeServer
from tests.integration.reviewkit import (
    PullRequest,
    opened,
    review_fleet,
)

__all__ = ["review_fleet"]
TOKEN_ENV = "FAZAI_TEST_FORGE_TOKEN"


@pytest.fixture
def pull_request(
    review_fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PullRequest]:
    with opened(review_fleet, tmp_path, monkeypatch) as (pr, _):
        yield pr


def fazai(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        env={**os.environ, **env},
    )  # fmt: skip


def ours(server: ForgeServer, pr: int) -> list[dict[str, Any]]:
    return [c for c in server.comments(pr) if comment.is_ours(c["body"], comment.MARKER)]


def test_github_review_comment_updated_in_place_and_status_on_head(
    pull_request: PullRequest,
) -> None:
    pr = pull_request
    with ForgeServer("github", repo="acme/infra", pulls=[7]) as github:
        github.add_comment(7, "Please have a look")
        args = [
            "review", str(pr.root), "--base", "main", "--head", "feature",
            "--forge", "github", "--repo", "acme/infra", "--pr", "7",
            "--api-url", github.api_url, "--token-ref", f"env:{TOKEN_ENV}",
            "--target-url", "https://ci.example/runs/1", "-o", "json",
        ]  # fmt: skip
        first = fazai(*args, env={TOKEN_ENV: github.token})
        assert first.returncode == 1, first.stderr
        assert json.loads(first.stdout)["review"]["summary"]["introduced"] == 2
        assert "posted the plan comment" in first.stderr
        (posted,) = ours(github, 7)
        assert "#### Introduced or changed by this pull request (3)" in posted["body"]
        assert "**File/banner** update · **changed**" in posted["body"]
        statuses = github.statuses(pr.head)
        assert [s["state"] for s in statuses] == ["pending", "success"]
        assert statuses[-1]["context"] == "fazai/plan"
        assert statuses[-1]["target_url"] == "https://ci.example/runs/1"
        assert statuses[-1]["description"] == (
            "1 to create, 3 to update, 0 to delete; 2 introduced, 1 changed, "
            "1 already pending on the base, 1 no longer done"
        )

        # A second push: the banner goes back to the base's content, so its change is
        # the base's drift now, not the pull request's.
        docs = {**pr.head_docs}
        docs["linux.yaml"] = [
            {**d, "spec": {**d["spec"], "content": "v1\n"}} if d["metadata"]["name"] == "banner"
            else d
            for d in docs["linux.yaml"]
        ]  # fmt: skip
        second_head = pr.push_head(docs, "banner as on main")
        second = fazai(*args, env={TOKEN_ENV: github.token})
        assert second.returncode == 1, second.stderr
        assert "updated the plan comment" in second.stderr
        (updated,) = ours(github, 7)
        assert updated["id"] == posted["id"]
        assert "**File/banner** update · **changed**" not in updated["body"]
        assert (
            "Already pending on the base: drift the nodes have whatever this pull "
            "request says (2)" in updated["body"]
        )
        assert len(github.comments(7)) == 2  # the human's and ours, nothing more
        assert [s["state"] for s in github.statuses(second_head)] == ["pending", "success"]

        # A refused token fails at once, before any node is read, and never shows.
        github.app.requests.clear()
        wrong = "ghp_" + "0" * 36
        refused = fazai(*args, env={TOKEN_ENV: wrong})
        assert refused.returncode == 2
        assert "github: the token was refused (401 Unauthorized)" in refused.stderr
        assert f"token from {{env: {TOKEN_ENV}}}" in refused.stderr
        assert wrong not in refused.stderr + refused.stdout
        assert refused.stdout == ""  # nothing planned
        assert [r.method for r in github.requests] == ["POST"]


@pytest.mark.parametrize("forge", ["gitlab", "gitea"])
def test_gitlab_and_gitea_review(pull_request: PullRequest, forge: str) -> None:
    pr = pull_request
    with ForgeServer(forge, repo="acme/infra", pulls=[3]) as server:
        settings = ForgeSettings(forge, forge, server.api_url, {"env": TOKEN_ENV})
        os.environ[TOKEN_ENV] = server.token
        try:
            posting = command.prepare_posting(settings, "acme/infra", 3)
            emitted: list[Any] = []
            said: list[str] = []
            for _ in range(2):
                code = command.run_review(
                    str(pr.root), "main", "feature", posting,
                    plan_options={}, emit=emitted.append, say=said.append,
                )  # fmt: skip
                assert code == 1, said
        finally:
            del os.environ[TOKEN_ENV]
        (note,) = ours(server, 3)
        assert "FirewallRule/allow-ssh** create · **introduced**" in note["body"]
        posted = [r.body["state"] for r in server.requests if r.path.endswith(pr.head)]
        assert posted == ["pending", "success"] * 2
        final = server.statuses(pr.head)[-1]
        assert final["status"] == "success"
        assert (final["name"] if forge == "gitlab" else final["context"]) == "fazai/plan"
        assert said[0].startswith(f"{forge}: posted the plan comment")
        assert said[1].startswith(f"{forge}: updated the plan comment")


def test_invalid_head_is_reported_on_the_pull_request(pull_request: PullRequest) -> None:
    pr = pull_request
    docs = {**pr.head_docs, "linux.yaml": [*pr.head_docs["linux.yaml"]]}
    docs["linux.yaml"].append(
        {"apiVersion": "fazai.dev/v1alpha1", "kind": "File", "metadata": {"name": "Bad_Name"},
         "spec": {"target": {"node": "rv-web"}, "path": "relative/path"}}
    )  # fmt: skip
    head = pr.push_head(docs, "a broken document")
    with ForgeServer("gitea", repo="acme/infra", pulls=[5]) as server:
        os.environ[TOKEN_ENV] = server.token
        try:
            settings = ForgeSettings("gitea", "gitea", server.api_url, {"env": TOKEN_ENV})
            posting = command.prepare_posting(settings, "acme/infra", 5)
            with pytest.raises(InvalidInputError):
                command.run_review(
                    str(pr.root), "main", "feature", posting,
                    plan_options={}, emit=lambda r: None, say=lambda s: None,
                )  # fmt: skip
        finally:
            del os.environ[TOKEN_ENV]
        (note,) = ours(server, 5)
        assert "❌ invalid documents" in note["body"]
        assert "linux.yaml:" in note["body"] and "Bad_Name" in note["body"]
        (status,) = server.statuses(head)
        assert (
            status["status"] == "failure" and "error(s) in the documents" in status["description"]
        )
