"""The knowledge base with the real embedder: ModelRuntime's default settings (the
embedded all-MiniLM-L6-v2 through the worker it starts), Qdrant local mode in a temporary
folder. Paraphrased goals find the solution and the reference section they should."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from controller.agent.knowledge import KnowledgeBase, Solution, reference_chunks
from controller.llm.runtime import ModelRuntime
from controller.llm.settings import ModelsSettings, WorkerSettings

pytestmark = pytest.mark.asyncio(loop_scope="module")


def solution(goal: str, tool: str, description: str, platform: str = "linux") -> Solution:
    return Solution(
        goal=goal,
        platform=platform,
        os="debian-12" if platform == "linux" else None,
        tool=tool,
        spec={"platform": platform, "description": description},
        params={},
        node="web1",
        verified_at="2026-12-01T10:00:00Z",
        run=1,
    )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def kb(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[KnowledgeBase]:
    folder = tmp_path_factory.mktemp("kb")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")  # the model comes from a package, never a hub
        runtime = ModelRuntime(ModelsSettings(worker=WorkerSettings(socket=folder / "m.sock")))
        try:
            async with KnowledgeBase(runtime.embed, path=folder / "kb") as opened:
                done = await opened.seed_reference()
                assert done.added == len(reference_chunks())
                for s in (
                    solution(
                        "local passwords expire after 90 days on every Lisbon server",
                        "login-defs-setting",
                        "set one KEY VALUE setting in /etc/login.defs",
                    ),
                    solution(
                        "sshd refuses password logins",
                        "sshd-option",
                        "set one option in a drop-in of sshd_config",
                    ),
                    solution(
                        "the office alias holds the printer's address",
                        "alias-hosts",
                        "add hosts to a firewall alias",
                        "opnsense",
                    ),
                ):
                    await opened.add_solution(s)
                yield opened
        finally:
            await runtime.close()


async def test_a_paraphrased_goal_finds_its_solution(kb: KnowledgeBase) -> None:
    found = await kb.solutions_for("ssh must not accept passwords", "linux", "debian-12")
    assert [s.tool for s in found] == ["sshd-option"]
    hits = await kb.search("user passwords must be changed every 60 days", "linux", "debian-12")
    assert hits[0].solution is not None and hits[0].solution.tool == "login-defs-setting"
    # Never across platforms.
    assert await kb.solutions_for("ssh must not accept passwords", "opnsense", None) == []


async def test_the_reference_answers_by_meaning(kb: KnowledgeBase) -> None:
    hits = await kb.search("a kernel parameter enables ip forwarding", "linux", "debian-12")
    assert hits[0].kind == "reference" and hits[0].source == "kinds-linux.md#sysctl"
    hits = await kb.search("make intranet.example.com resolve to 10.0.0.7", "opnsense")
    references = [h.source for h in hits if h.kind == "reference"]
    assert references[0] == "kinds-opnsense.md#hostoverride"
    assert all(h.solution is None or h.solution.platform == "opnsense" for h in hits)
