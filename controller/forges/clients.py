"""Pick the client for a forge by name."""

from __future__ import annotations

import httpx

from controller.forges.base import ForgeClient
from controller.forges.gitea import GiteaClient
from controller.forges.github import GitHubClient
from controller.forges.gitlab import GitLabClient
from controller.forges.http import ForgeTarget

CLIENTS: dict[str, type[ForgeClient]] = {
    "github": GitHubClient,
    "gitlab": GitLabClient,
    "gitea": GiteaClient,
    "forgejo": GiteaClient,  # Forgejo keeps Gitea's API
}


def canonical(forge: str) -> str:
    """``forgejo`` is served by the Gitea client; every other name is itself."""
    name = forge.lower()
    if name not in CLIENTS:
        raise ValueError(f"unknown forge {forge!r}; known: github, gitlab, gitea, forgejo")
    return "gitea" if name == "forgejo" else name


def open_client(
    target: ForgeTarget, repo: str, transport: httpx.AsyncBaseTransport | None = None
) -> ForgeClient:
    """A client for ``repo`` (OWNER/NAME, or a GitLab project's number or path) on the
    forge ``target`` names. Use it as ``async with open_client(...) as forge:``."""
    return CLIENTS[canonical(target.forge)](target, repo, transport)
