"""The agent's success path, end to end, with real parts only: a git repository with a
bare remote, the local forge server, a real OpenSSH node, Qdrant local mode and the
scripted model server. Goal unmet -> tool synthesized -> approved -> verified -> applied
-> pull request opened -> the next run resolves it from the state store with zero model
calls -> once merged, the goal's resolvedBy makes it a plain plan/apply, no agent."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import git
import yaml

from controller import providers
from controller.agent.commitback import CommitMode
from controller.agent.episode import Episode, Outcome
from controller.agent.episode import Path as Via
from controller.agent.knowledge import KnowledgeBase
from controller.agent.run import CommitBackSettings, find_goal, resolve
from controller.forges.clients import open_client
from controller.forges.http import ForgeTarget
from controller.llm.runtime import ModelRuntime
from controller.model import loader
from controller.model import tool as tools
from controller.pipeline import context, planning, writes
from controller.pipeline import source as pipeline_source
from controller.plan.diff import Action
from controller.secrets import Secret
from controller.source import git as gitsource
from controller.source.open import open_source
from controller.store import StateStore
from controller.testing.fleet import Fleet
from controller.testing.forges import ForgeServer
from controller.testing.scripted_model import Transcript, serving, settings_for
from tests.integration.statekit import node_doc, resource

DATA = Path(__file__).parents[2] / "data" / "agent"
CONF = "/etc/fazai-agent/app.conf"
BRANCH = "fazai/resolve/app-mode-new"


def _reset(fleet: Fleet) -> None:
    fleet.nodes["web-1"].run(f"mkdir -p /etc/fazai-agent && printf 'mode=old\\n' > {CONF}")


def _mode(fleet: Fleet) -> str:
    return fleet.nodes["web-1"].run(f"cat {CONF}").stdout.decode()


def test_synthesized_verified_proposed_then_never_asked_again(fleet: Fleet, tmp_path: Path) -> None:
    _reset(fleet)
    bare = git.Repo.init(tmp_path / "remote.git", bare=True, initial_branch="main")
    work = git.Repo.init(tmp_path / "work", initial_branch="main")
    with work.config_writer() as config:
        config.set_value("user", "name", "Alice")
        config.set_value("user", "email", "alice@example.org")
    folder = tmp_path / "work" / "state"
    folder.mkdir()
    check = {"name": "mode-new", "command": ["grep", "-qx", "mode=new", CONF],
             "expect": {"exitCode": 0}}  # fmt: skip
    goal = resource("Goal", "app-mode-new", {"node": "web-1"},
                    description="the app runs in the new mode", checks=[check])  # fmt: skip
    (folder / "nodes.yaml").write_text(yaml.safe_dump(node_doc(fleet, "web-1")))
    (folder / "goals.yaml").write_text("# The app's goals.\n" + yaml.safe_dump(goal))
    work.index.add(["state"])
    work.index.commit("The desired state")
    work.create_remote("origin", str(tmp_path / "remote.git"))
    work.git.push("origin", "main:main")
    db, kb = tmp_path / "state.db", tmp_path / "kb"

    def branches() -> set[str]:
        return {h.name for h in bare.heads}

    with ForgeServer("gitea", repo="acme/infra", pulls=[], branches=branches) as forge:
        target = ForgeTarget("gitea", forge.api_url, Secret(forge.token), timeout=5)
        commit = CommitBackSettings(
            CommitMode.PR, folder, lambda: open_client(target, "acme/infra")
        )

        def run(transcript: Any, strict: bool = True) -> tuple[Episode, int]:
            state = pipeline_source.load(open_source(str(folder)))

            async def approve(*_: Any) -> bool:
                return True

            async def go() -> Episode:
                with serving(transcript, strict=strict) as server:
                    runtime = ModelRuntime(
                        settings_for(server.url, roles=("brain", "executor", "embedder"))
                    )
                    try:
                        async with KnowledgeBase(runtime.embed, path=kb) as base:
                            with StateStore(db) as store:
                                found, _ = find_goal(state, "app-mode-new", "web-1")
                                episode = await resolve(
                                    state, found, state.nodes["web-1"], store, runtime,
                                    context.cli("apply"), knowledge=base, approve=approve,
                                    commit=commit,
                                )  # fmt: skip
                    finally:
                        await runtime.close()
                    calls.append(server.calls)
                    return episode

            calls: list[int] = []
            episode = asyncio.run(go())
            return episode, calls[0]

        first, calls = run(DATA / "synthesize.yaml")
        assert (first.outcome, first.path, calls) == (Outcome.RESOLVED, Via.SYNTHESIZED, 4)
        assert _mode(fleet) == "mode=new\n"
        (pull,) = forge.pull_requests()
        assert first.committed is not None and first.committed.endswith(f"/{pull['number']}")
        assert BRANCH in branches() and "app-mode" in str(pull.get("body"))

        # Drift on the node before the pull request is merged: resolved from the state
        # store, with no model call (the transcript is empty; any call would fail).
        _reset(fleet)
        again, calls = run(Transcript.parse([]))
        assert (again.outcome, again.path, calls) == (Outcome.RESOLVED, Via.BOUND, 0)
        assert again.reason.startswith("Tool/app-mode from the state store (verified in run 1")
        assert _mode(fleet) == "mode=new\n"
        assert len(forge.pull_requests()) == 1  # nothing new to propose

        # The goal edited since: the tool was verified for another goal, not reused.
        goals_file = folder / "goals.yaml"
        original = goals_file.read_text()
        goals_file.write_text(original.replace("the new mode", "the newest mode"))
        _reset(fleet)
        edited, calls = run(Transcript.parse([]), strict=False)
        assert edited.outcome is Outcome.UNRESOLVED and calls >= 1
        assert _mode(fleet) == "mode=old\n"
        goals_file.write_text(original)

    # Merged: the goal's resolvedBy and the Tool are desired state; a plain plan and
    # apply resolve the next drift, no agent and no model anywhere.
    _reset(fleet)
    providers.load_all()
    merged = loader.load(gitsource.tree_at(bare, str(tmp_path / "remote.git"),
                                           bare.commit(BRANCH).hexsha, "state"))  # fmt: skip
    bound = next(d for d in merged.resources if d.name == "app-mode-new")
    assert tools.resolution_of(bound.spec) is not None
    checked = asyncio.run(planning.plan(merged, context.cli("apply")))
    (item,) = [i for n in checked.plan.nodes for i in n.items if i.kind == "Goal"]
    assert item.action is Action.UPDATE
    with StateStore(db) as store:
        done = asyncio.run(writes.apply(merged, checked, store))
    assert [n.status.value for n in done.nodes] == ["converged"]
    assert _mode(fleet) == "mode=new\n"
