"""The knowledge base over real Qdrant local mode in a temporary folder, with a
deterministic embedder (a hashed bag of words, 64 dimensions, normalised), so every
score and ranking below is stable: retrieval is filtered by platform and prefers
solutions of the same OS; adding is idempotent; failures come back as failures; the
shipped reference corpus seeds once and re-seeds only what changed; a second opener of
the same folder (in this process or another) gets FazAI's error naming the folder."""

from __future__ import annotations

import hashlib
import math
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from controller.agent.errors import KnowledgeError, KnowledgeLockedError
from controller.agent.knowledge import (
    TEXT_CAP,
    Failure,
    KnowledgeBase,
    Solution,
    reference_chunks,
    shipped_corpus,
)
from controller.errors import FazaiError, StoreError, retry_decision

REPO = Path(__file__).resolve().parents[3]
DIMS = 64


def bag_of_words(text: str, dims: int = DIMS) -> list[float]:
    """Each word adds ±1 at a position its SHA-256 picks; normalised to length 1."""
    vector = [0.0] * dims
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        digest = hashlib.sha256(word.encode()).digest()
        vector[digest[0] % dims] += 1.0 if digest[1] % 2 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0:
        vector[0], norm = 1.0, 1.0
    return [x / norm for x in vector]


class Embedder:
    """The deterministic embedder, counting the texts it was given."""

    def __init__(self, dims: int = DIMS) -> None:
        self.dims = dims
        self.texts = 0

    async def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        self.texts += len(texts)
        return [bag_of_words(t, self.dims) for t in texts]


LOGIN_DEFS: dict[str, Any] = {
    "platform": "linux",
    "description": "set one KEY VALUE setting in /etc/login.defs, keeping the rest of the file",
    "params": {
        "type": "object",
        "required": ["key", "value"],
        "properties": {"key": {"type": "string"}, "value": {"type": "string"}},
    },
    "check": {"command": ["grep", "-qxE", "${key}[[:space:]]+${value}", "/etc/login.defs"]},
    "apply": {"script": "set -eu\n: apply\n"},
}
ALIAS_TOOL: dict[str, Any] = {
    "platform": "opnsense",
    "description": "add hosts to a firewall alias",
    "check": {"get": "firewall/alias/searchItem", "expect": {"path": "rows", "exists": True}},
    "apply": {"calls": [{"post": "firewall/alias/addItem", "body": {"alias": {"name": "x"}}}]},
}
EXPIRE = "local passwords expire after 90 days"


def solution(
    os: str | None = "debian-12",
    *,
    goal: str = EXPIRE,
    tool: str = "login-defs-setting",
    platform: str = "linux",
    spec: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    verified_at: str = "2026-12-01T10:00:00Z",
    node: str = "web1",
) -> Solution:
    return Solution(
        goal=goal,
        platform=platform,
        os=os,
        tool=tool,
        spec=spec if spec is not None else LOGIN_DEFS,
        params=params if params is not None else {"key": "PASS_MAX_DAYS", "value": "90"},
        node=node,
        verified_at=verified_at,
        run=7,
    )


@pytest_asyncio.fixture
async def kb(tmp_path: Path) -> AsyncIterator[KnowledgeBase]:
    async with KnowledgeBase(Embedder(), path=tmp_path / "kb") as opened:
        yield opened


async def test_solutions_of_the_same_os_rank_first(kb: KnowledgeBase) -> None:
    # The same goal and tool on two OSes: equal cosine scores, so the OS bonus decides.
    await kb.add_solution(solution("rocky-9", tool="login-defs-rocky", node="db1"))
    await kb.add_solution(solution("debian-12", tool="login-defs-debian", node="web1"))
    await kb.add_failure(
        Failure(EXPIRE, "linux", "debian-12", LOGIN_DEFS, {}, "the check still failed", "web1")
    )
    for os, first, second in (
        ("debian-12", "login-defs-debian", "login-defs-rocky"),
        ("rocky-9", "login-defs-rocky", "login-defs-debian"),
    ):
        hits = await kb.search(EXPIRE, "linux", os)
        assert [h.kind for h in hits[:3]] == ["solution", "solution", "failure"]
        assert hits[0].solution is not None and hits[0].solution.tool == first
        assert hits[1].solution is not None and hits[1].solution.tool == second
        assert hits[0].score == pytest.approx(hits[1].score)  # the raw score, no bonus
        found = await kb.solutions_for(EXPIRE, "linux", os)
        assert [s.tool for s in found] == [first, second]
    # No OS given: no OS is preferred, and both come back.
    assert {s.tool for s in await kb.solutions_for(EXPIRE, "linux", None)} == {
        "login-defs-debian",
        "login-defs-rocky",
    }


async def test_a_closer_failure_still_beats_a_distant_solution(kb: KnowledgeBase) -> None:
    await kb.add_solution(solution(goal="the ntp service runs and is enabled at boot"))
    await kb.add_failure(Failure(EXPIRE, "linux", None, LOGIN_DEFS, {}, "no such key", "web1"))
    hits = await kb.search(EXPIRE, "linux", "debian-12")
    assert hits[0].kind == "failure"  # the bonus only settles near-ties


async def test_a_linux_solution_never_comes_back_for_an_opnsense_search(
    kb: KnowledgeBase,
) -> None:
    await kb.add_solution(solution(goal="allow ssh from the office network"))
    await kb.add_failure(
        Failure("allow ssh from the office network", "linux", None, LOGIN_DEFS, {}, "x", "w")
    )
    await kb.seed_reference()
    hits = await kb.search("allow ssh from the office network", "opnsense", limit=50)
    assert hits, "the opnsense reference should answer"
    assert all(h.kind == "reference" for h in hits)
    linux_sources = {c.source for c in reference_chunks() if c.platform == "linux"}
    assert not linux_sources & {h.source for h in hits}
    assert await kb.solutions_for("allow ssh from the office network", "opnsense", None) == []
    # And the other way round.
    await kb.add_solution(
        solution(
            None,
            goal="the office hosts alias holds 10.0.0.5",
            tool="alias-hosts",
            platform="opnsense",
            spec=ALIAS_TOOL,
            params={"hosts": ["10.0.0.5"]},
        )
    )
    hits = await kb.search("the office hosts alias holds 10.0.0.5", "linux", limit=50)
    assert all(h.solution is None or h.solution.platform == "linux" for h in hits)


async def test_re_adding_is_idempotent(kb: KnowledgeBase) -> None:
    first = await kb.add_solution(solution(verified_at="2026-12-01T10:00:00Z"))
    again = await kb.add_solution(solution(verified_at="2026-12-02T11:00:00Z", node="web2"))
    assert first == again
    failure = Failure(EXPIRE, "linux", None, LOGIN_DEFS, {"key": "X"}, "no such key", "web1")
    assert await kb.add_failure(failure) == await kb.add_failure(failure)
    assert await kb.counts() == {"solutions": 1, "failures": 1, "reference": 0}
    [hit] = [h for h in await kb.search(EXPIRE, "linux", limit=10) if h.kind == "solution"]
    # The newer verification replaced the older one.
    assert hit.solution is not None
    assert (hit.solution.node, hit.solution.verified_at) == ("web2", "2026-12-02T11:00:00Z")
    # Other params or another why are other points.
    await kb.add_solution(solution(params={"key": "PASS_MAX_DAYS", "value": "60"}))
    await kb.add_failure(Failure(EXPIRE, "linux", None, LOGIN_DEFS, {"key": "X"}, "other", "w"))
    assert await kb.counts() == {"solutions": 2, "failures": 2, "reference": 0}


async def test_failures_come_back_as_failures_without_hashes(kb: KnowledgeBase) -> None:
    shadow = "root:$6$saltsalt$0123456789abcdefABCDEF./0123456789:19000:0:99999:7:::"
    failure = Failure(
        "sshd refuses password logins",
        "linux",
        "debian-12",
        LOGIN_DEFS,
        {"key": "PasswordAuthentication", "value": "no"},
        f"verify failed; the node printed {shadow}",
        "web1",
    )
    await kb.add_failure(failure)
    [hit] = await kb.search("sshd refuses password logins", "linux", "debian-12")
    assert hit.kind == "failure" and hit.solution is None and hit.failure is not None
    assert hit.failure.spec == LOGIN_DEFS and hit.failure.params == failure.params
    assert "$6$" not in hit.failure.why and "***" in hit.failure.why
    assert "$6$" not in hit.text
    assert "sshd refuses password logins" in hit.text and "verify failed" in hit.text


async def test_hit_text_is_short_and_says_what_the_prompt_needs(kb: KnowledgeBase) -> None:
    long_spec = {**LOGIN_DEFS, "description": "set a login.defs value " + "word " * 2000}
    await kb.add_solution(solution(spec=long_spec))
    [hit] = await kb.search(EXPIRE, "linux", "debian-12")
    assert len(hit.text) <= TEXT_CAP
    for part in (EXPIRE, "login-defs-setting", "PASS_MAX_DAYS", "key (string, required)"):
        assert part in hit.text


async def test_solutions_for_keeps_only_close_enough_goals(kb: KnowledgeBase) -> None:
    await kb.add_solution(solution())
    assert [s.tool for s in await kb.solutions_for(EXPIRE, "linux", "debian-12")] == [
        "login-defs-setting"
    ]
    unrelated = "nginx serves the status page on port 8080"
    assert await kb.solutions_for(unrelated, "linux", "debian-12") == []
    assert await kb.solutions_for(unrelated, "linux", "debian-12", min_score=-1.0) != []


async def test_reference_seeds_once_and_is_searchable(kb: KnowledgeBase) -> None:
    chunks = reference_chunks()
    kinds = {"Goal", "Tool", "File", "Package", "Service", "User", "Sysctl", "NftTable"}
    kinds |= {"FirewallAlias", "FirewallRule", "HostOverride"}
    assert kinds <= {c.title.rsplit(" > ", 1)[-1] for c in chunks}
    embedder = kb._embed
    assert isinstance(embedder, Embedder)
    done = await kb.seed_reference()
    assert (done.added, done.removed, done.kept) == (len(chunks), 0, 0)
    before = embedder.texts
    again = await kb.seed_reference()
    assert (again.added, again.removed, again.kept) == (0, 0, len(chunks))
    assert embedder.texts == before  # nothing embedded again
    assert (await kb.counts())["reference"] == len(chunks)

    hits = await kb.search("an nftables table replaced atomically", "linux")
    assert hits[0].kind == "reference" and hits[0].source == "kinds-linux.md#nfttable"
    hits = await kb.search("unbound dns host override", "opnsense")
    assert {h.source for h in hits} & {
        "kinds-opnsense.md#hostoverride",
        "opnsense-api.md#unbound-host-overrides",
    }
    assert all(len(h.text) <= TEXT_CAP for h in hits)


async def test_reseeding_after_an_edit_replaces_only_the_changed_chunk(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    corpus = tmp_path / "reference"
    shutil.copytree(str(shipped_corpus()), corpus)
    await kb.seed_reference(corpus)
    linux = corpus / "kinds-linux.md"
    text = linux.read_text()
    linux.write_text(text.replace("A systemd unit:", "A systemd unit, zebra quokka:"))
    done = await kb.seed_reference(corpus)
    assert (done.added, done.removed) == (1, 1)
    assert (await kb.counts())["reference"] == len(reference_chunks(corpus))
    [top, *_] = await kb.search("zebra quokka", "linux")
    assert top.source == "kinds-linux.md#service" and "zebra quokka" in top.text
    # A section removed from the corpus is removed from the knowledge base.
    (corpus / "opnsense-api.md").unlink()
    done = await kb.seed_reference(corpus)
    assert done.added == 0 and done.removed == len(
        [c for c in reference_chunks() if c.source.startswith("opnsense-api.md")]
    )


async def test_a_second_opener_of_the_folder_gets_the_fazai_error(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    async with KnowledgeBase(Embedder(), path=folder) as kb:
        await kb.add_solution(solution())
        with pytest.raises(KnowledgeLockedError) as caught:
            async with KnowledgeBase(Embedder(), path=folder):
                pass
        error = caught.value
        assert isinstance(error, StoreError) and isinstance(error, FazaiError)
        assert error.path == str(folder) and str(folder) in str(error)
        assert "one process owns" in str(error)
        assert retry_decision(error).temporary  # it frees when the owner exits
        # Another process: refused at once, with the same words.
        done = subprocess.run(
            [sys.executable, "-c", OPEN_IN_ANOTHER_PROCESS, str(folder)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 3, done.stdout + done.stderr
        assert f"knowledge base {folder}:" in done.stdout and "one process owns" in done.stdout
    # Closed: the folder is free again, and what was added is still there.
    async with KnowledgeBase(Embedder(), path=folder) as reopened:
        assert (await reopened.counts())["solutions"] == 1
        assert await reopened.solutions_for(EXPIRE, "linux", "debian-12")


OPEN_IN_ANOTHER_PROCESS = """
import asyncio, sys
from pathlib import Path
from typing import Any
from controller.agent.errors import KnowledgeLockedError
from controller.agent.knowledge import KnowledgeBase

async def embed(texts):
    return [[1.0] for _ in texts]

async def main():
    try:
        async with KnowledgeBase(embed, path=Path(sys.argv[1])):
            print("opened")
    except KnowledgeLockedError as exc:
        print(exc)
        sys.exit(3)

asyncio.run(main())
"""


async def test_an_embedder_of_another_dimension_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    async with KnowledgeBase(Embedder(), path=folder) as kb:
        await kb.add_solution(solution())
    async with KnowledgeBase(Embedder(dims=32), path=folder) as kb:
        with pytest.raises(KnowledgeError, match="32-dimensional vectors but fazai_solutions"):
            await kb.search(EXPIRE, "linux")


async def test_an_embedder_that_answers_badly_is_refused(tmp_path: Path) -> None:
    async def too_few(texts: Sequence[str]) -> list[list[float]]:
        return []

    async def not_finite(texts: Sequence[str]) -> list[list[float]]:
        return [[math.nan, 1.0] for _ in texts]

    for embed, words in ((too_few, "gave 0 vectors for 1 texts"), (not_finite, "not finite")):
        async with KnowledgeBase(embed, path=tmp_path / embed.__name__) as kb:
            with pytest.raises(KnowledgeError, match=words):
                await kb.add_solution(solution())


async def test_payloads_must_be_json(kb: KnowledgeBase) -> None:
    with pytest.raises(ValueError, match="params is not JSON"):
        await kb.add_solution(solution(params={"when": object()}))
    assert await kb.counts() == {"solutions": 0, "failures": 0, "reference": 0}


async def test_an_empty_knowledge_base_answers_nothing(kb: KnowledgeBase) -> None:
    assert await kb.search(EXPIRE, "linux", "debian-12") == []
    assert await kb.solutions_for(EXPIRE, "linux", "debian-12") == []
    assert await kb.search(EXPIRE, "linux", limit=0) == []


def test_url_mode_is_constructed_without_touching_the_network() -> None:
    kb = KnowledgeBase(Embedder(), url="https://fazai:pw@qdrant.example:6333", api_key="k")
    assert kb.path is None and kb.where == "https://qdrant.example:6333"  # no password
    with pytest.raises(ValueError, match="exactly one of path and url"):
        KnowledgeBase(Embedder())
    with pytest.raises(ValueError, match="exactly one of path and url"):
        KnowledgeBase(Embedder(), path=Path("/tmp/x"), url="http://localhost:6333")


async def test_a_corrupt_folder_is_a_fazai_error_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "meta.json").write_text("{not json")
    with pytest.raises(KnowledgeError, match="cannot be opened") as caught:
        async with KnowledgeBase(Embedder(), path=folder):
            pass
    assert caught.value.path == str(folder) and not retry_decision(caught.value).temporary
