"""Commit back with real parts: a git working copy with a bare remote, FazAI's own
loader, and the local forge serving the production clients over HTTP.

What must hold: the goal's file keeps every byte but the inserted resolvedBy lines; the
tool file loads and the goal resolves to it; the branch reaches the remote and one pull
request (never two) carries the evidence; ``direct`` fast-forwards the base and refuses
a base behind its remote; ``off`` writes nothing; a person's resolvedBy is never
overwritten; a refused push leaves the working copy as it was."""

from __future__ import annotations

import dataclasses
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import git
import pytest

from controller import providers
from controller.agent import commitback
from controller.agent.commitback import (
    CommitMode,
    Proposal,
    commit_back,
    pull_request_body,
    tool_file_text,
)
from controller.agent.errors import CommitBackRefused, PushRejected
from controller.errors import SourceError
from controller.forges.base import ForgeClient
from controller.forges.clients import open_client
from controller.forges.http import ForgeTarget
from controller.model import loader
from controller.model import tool as tools
from controller.model.state import DesiredState
from controller.secrets import Secret
from controller.source import git as gitsource
from controller.testing.forges import ForgeServer

GOALS = """\
# Goals of the Lisbon servers. Keep this header: people read it.
apiVersion: fazai.dev/v1alpha1
kind: Package
metadata: {name: openssh-server}
spec:
  target: {matchLabels: {site: lisbon}}   # every Lisbon server
---
# Passwords must expire: the agent may find how.
apiVersion: fazai.dev/v1alpha1
kind: Goal
metadata: {name: passwords-expire}
spec:
  target: {matchLabels: {site: lisbon}}
  description: 'local passwords expire after 90 days'
  checks:
    - name: max-days-90
      command: [grep, -qxE, "PASS_MAX_DAYS[[:space:]]+90", /etc/login.defs]
      expect: {exitCode: 0}   # grep found it

  # (a comment after the goal, before the next document)
---
apiVersion: fazai.dev/v1alpha1
kind: Goal
metadata: {name: motd-set}
spec:
  target: {matchLabels: {site: lisbon}}
  description: "the motd says who manages the host"
  checks:
    - name: motd
      command: [grep, -q, FazAI, /etc/motd]
      expect: {exitCode: 0}
  resolvedBy: {tool: motd-line, params: {text: managed by FazAI}}
"""

INSERTED = """\
  resolvedBy:
    tool: login-defs-agent
    params: {key: PASS_MAX_DAYS, value: '90'}
"""
ANCHOR = "      expect: {exitCode: 0}   # grep found it\n"

NODES = """\
apiVersion: fazai.dev/v1alpha1
kind: Node
metadata:
  name: web-1
  labels: {role: web, site: lisbon}
spec:
  platform: linux
  address: 10.231.0.11
  user: root
  auth: {privateKeyFile: /var/lib/fazai/sandbox/id_ed25519}
  knownHostsFile: /var/lib/fazai/sandbox/known_hosts
"""

MOTD_TOOL = """\
apiVersion: fazai.dev/v1alpha1
kind: Tool
metadata: {name: motd-line}
spec:
  platform: linux
  description: add a line to /etc/motd
  params:
    type: object
    required: [text]
    properties: {text: {type: string}}
  check:
    command: [grep, -qxF, "${text}", /etc/motd]
  apply:
    script: printf '%s\\n' "$FAZAI_PARAM_text" >> /etc/motd
"""

SPEC = {
    "platform": "linux",
    "description": "set one KEY VALUE setting in /etc/login.defs",
    "params": {
        "type": "object",
        "required": ["key", "value"],
        "properties": {
            "key": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
            "value": {"type": "string", "pattern": "^[A-Za-z0-9_./-]+$"},
        },
    },
    "check": {"command": ["grep", "-qxE", "${key}[[:space:]]+${value}", "/etc/login.defs"]},
    "apply": {
        "script": "set -eu\n"
        "f=/etc/login.defs\n"
        'sed -i "s/^$FAZAI_PARAM_key.*/$FAZAI_PARAM_key\\t$FAZAI_PARAM_value/" "$f"\n'
    },
    "snapshot": {"paths": ["/etc/login.defs"]},
}

GOAL_FILE = "linux/goals.yaml"  # as the loader names it, relative to the source folder
BRANCH = "fazai/resolve/passwords-expire"


def proposal(**changes: object) -> Proposal:
    fields: dict[str, object] = {
        "goal": "passwords-expire",
        "goal_file": GOAL_FILE,
        "tool": "login-defs-agent",
        "spec": SPEC,
        "params": {"key": "PASS_MAX_DAYS", "value": "90"},
        "node": "web-1",
        "evidence": ("the goal's checks pass", "applying it again changed nothing"),
        "tokens": 1234,
        "calls": 5,
        "summary": ("turn 0: shell cat /etc/login.defs", "turn 1: toolspec login-defs-agent"),
        "description": "local passwords expire after 90 days",
        "run": 7,
        "model": "qwen-test",
        "backend": "local",
        "transcript_sha256": "ab" * 32,
        "verified_at": datetime(2026, 12, 4, 1, 0, tzinfo=UTC),
    }
    fields.update(changes)
    return Proposal(**fields)  # type: ignore[arg-type]


class Repos:
    """A bare remote, a working copy cloned from it, and the desired-state folder in it."""

    def __init__(self, root: Path) -> None:
        self.bare_path = root / "remote.git"
        self.bare = git.Repo.init(self.bare_path, bare=True, initial_branch="main")
        self.work_path = root / "work"
        self.work = git.Repo.init(self.work_path, initial_branch="main")
        with self.work.config_writer() as config:
            config.set_value("user", "name", "Alice")
            config.set_value("user", "email", "alice@example.org")
        self.state = self.work_path / "state"
        (self.state / "linux").mkdir(parents=True)
        (self.state / "nodes").mkdir()
        (self.state / "tools").mkdir()
        (self.state / GOAL_FILE).write_text(GOALS)
        (self.state / "nodes" / "web.yaml").write_text(NODES)
        (self.state / "tools" / "motd-line.yaml").write_text(MOTD_TOOL)
        (self.work_path / "README.md").write_text("infra\n")
        self.work.index.add(["README.md", "state"])
        self.work.index.commit("The desired state")
        self.work.create_remote("origin", str(self.bare_path))
        self.work.git.push("origin", "main:main")
        self.work.git.fetch("origin")
        self.work.git.branch("--set-upstream-to=origin/main", "main")

    def branches(self) -> set[str]:
        return {h.name for h in self.bare.heads}

    def refs(self) -> dict[str, str]:
        return {h.name: h.commit.hexsha for h in self.bare.heads}

    def file_at(self, ref: str, path: str) -> str:
        data: bytes = (self.bare.commit(ref).tree / f"state/{path}").data_stream.read()
        return data.decode()

    def load_at(self, ref: str) -> DesiredState:
        providers.load_all()
        sha = self.bare.commit(ref).hexsha
        return loader.load(gitsource.tree_at(self.bare, str(self.bare_path), sha, "state"))

    def assert_untouched(self, head: str) -> None:
        assert self.work.active_branch.name == "main"
        assert self.work.head.commit.hexsha == head
        assert not self.work.is_dirty(untracked_files=True)


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    return Repos(tmp_path)


@pytest.fixture(params=["github", "gitlab", "gitea"])
def forge(request: pytest.FixtureRequest, repos: Repos) -> Iterator[ForgeServer]:
    with ForgeServer(request.param, repo="acme/infra", pulls=[], branches=repos.branches) as s:
        yield s


def client(server: ForgeServer) -> ForgeClient:
    target = ForgeTarget(server.forge, server.api_url, Secret(server.token), timeout=5)
    return open_client(target, "acme/infra")


def _body(pull: dict[str, object]) -> str:
    return str(pull.get("description") or pull.get("body") or "")


async def test_a_pull_request_proposes_the_tool_and_the_goal_file_keeps_its_bytes(
    repos: Repos, forge: ForgeServer
) -> None:
    head = repos.work.head.commit.hexsha
    async with client(forge) as api:
        done = await commit_back(proposal(), repos.state, mode="pr", base="main", forge=api)

    assert done.pushed and done.created and done.branch == BRANCH
    assert done.pull is not None and done.commit is not None
    assert repos.refs()[BRANCH] == done.commit
    assert repos.refs()["main"] == head  # the base is not touched
    # Every byte of the goal's file is kept; the lines of resolvedBy are the only new ones.
    assert repos.file_at(BRANCH, GOAL_FILE) == GOALS.replace(ANCHOR, ANCHOR + INSERTED, 1)
    # The tool file is a valid Tool, and the goal now resolves to it.
    state = repos.load_at(BRANCH)
    goal = next(d for d in state.resources if d.name == "passwords-expire")
    resolution = tools.resolution_of(goal.spec)
    assert resolution is not None and resolution.tool == "login-defs-agent"
    assert resolution.params == {"key": "PASS_MAX_DAYS", "value": "90"}
    written = next(d for d in state.controls if d.kind == "Tool" and d.name == "login-defs-agent")
    assert written.file == "tools/login-defs-agent.yaml"
    assert written.spec["apply"]["script"] == SPEC["apply"]["script"]  # type: ignore[index]
    assert written.spec["provenance"] == {
        "goal": "passwords-expire", "verifiedOn": "web-1", "run": 7, "model": "qwen-test",
        "backend": "local", "tokens": 1234, "transcriptSha256": "ab" * 32,
        "verifiedAt": "2026-12-04T01:00:00+00:00",
    }  # fmt: skip
    # The other goal, with its tool, is as it was.
    other = next(d for d in state.resources if d.name == "motd-set")
    assert tools.resolution_of(other.spec) is not None
    commit = repos.bare.commit(BRANCH)
    assert (commit.author.name, commit.author.email) == ("FazAI", "fazai@localhost")
    assert "Resolve Goal/passwords-expire with Tool/login-defs-agent" in str(commit.message)
    assert commit.parents[0].hexsha == head
    # The pull request, on the forge, says what was verified and what it cost.
    (pull,) = forge.pull_requests()
    body = _body(pull)
    for said in ("passwords-expire", "web-1", "login-defs-agent", "the goal's checks pass",
                 "1234 tokens", "5 model calls", "qwen-test", "turn 1: toolspec",
                 "```yaml", "transcriptSha256", "Merging this"):  # fmt: skip
        assert said in body, said
    assert done.pull.number == pull.get("number", pull.get("iid"))
    # The person's working copy: same branch, same commit, nothing changed.
    repos.assert_untouched(head)


async def test_a_second_run_reuses_the_branch_and_its_pull_request(
    repos: Repos, forge: ForgeServer
) -> None:
    async with client(forge) as api:
        first = await commit_back(proposal(), repos.state, base="main", forge=api)
        pushed = repos.refs()[BRANCH]
        second = await commit_back(proposal(tokens=99), repos.state, base="main", forge=api)

    assert first.created and not second.created
    assert second.pull is not None and first.pull is not None
    assert second.pull.number == first.pull.number
    assert not second.pushed and second.commit is None
    assert repos.refs()[BRANCH] == pushed  # no second commit for the same resolution
    (pull,) = forge.pull_requests()  # one pull request, its body brought up to date
    assert "99 tokens" in _body(pull)


async def test_a_branch_pushed_before_a_lost_pull_request_gets_one(
    repos: Repos, forge: ForgeServer
) -> None:
    alone = await commit_back(proposal(), repos.state, base="main", forge=None)
    assert alone.pushed and alone.pull is None and alone.reference.startswith(BRANCH + "@")
    async with client(forge) as api:
        again = await commit_back(proposal(), repos.state, base="main", forge=api)
    assert again.created and not again.pushed
    assert len(forge.pull_requests()) == 1


async def test_direct_pushes_to_the_base_and_fast_forwards_the_working_copy(
    repos: Repos,
) -> None:
    head = repos.work.head.commit.hexsha
    done = await commit_back(proposal(), repos.state, mode=CommitMode.DIRECT)

    assert done.pushed and done.branch == "main" and done.pull is None
    assert repos.refs() == {"main": done.commit}
    assert repos.bare.commit("main").parents[0].hexsha == head
    assert done.local_updated
    assert repos.work.head.commit.hexsha == done.commit
    assert not repos.work.is_dirty(untracked_files=True)
    on_disk = (repos.state / GOAL_FILE).read_text()
    assert on_disk == GOALS.replace(ANCHOR, ANCHOR + INSERTED, 1)
    assert (repos.state / "tools" / "login-defs-agent.yaml").is_file()
    # Once desired state, there is nothing left to do: no second commit, no error.
    again = await commit_back(proposal(), repos.state, mode="direct")
    assert again.already and not again.pushed
    # And a pull request for it is not opened either.
    proposed = await commit_back(proposal(), repos.state, mode="pr", base="main")
    assert proposed.already and BRANCH not in repos.branches()


async def test_off_writes_nothing(repos: Repos, forge: ForgeServer) -> None:
    head = repos.work.head.commit.hexsha
    before = repos.refs()
    async with client(forge) as api:
        done = await commit_back(proposal(), repos.state, mode="off", forge=api)
    assert done == commitback.CommitBack(CommitMode.OFF)
    assert repos.refs() == before
    assert forge.requests == []
    repos.assert_untouched(head)


async def test_a_persons_resolved_by_is_never_overwritten(repos: Repos) -> None:
    head = repos.work.head.commit.hexsha
    before = repos.refs()
    other = proposal(goal="motd-set", description="the motd says who manages the host")
    for mode in ("pr", "direct"):
        with pytest.raises(CommitBackRefused, match="resolvedBy already"):
            await commit_back(other, repos.state, mode=mode, base="main")
    assert repos.refs() == before
    repos.assert_untouched(head)


async def test_a_different_tool_of_that_name_is_refused(repos: Repos) -> None:
    before = repos.refs()
    clash = proposal(tool="motd-line")
    with pytest.raises(CommitBackRefused, match="different Tool/motd-line"):
        await commit_back(clash, repos.state, base="main")
    assert repos.refs() == before


async def test_a_goal_not_in_its_file_is_refused(repos: Repos) -> None:
    with pytest.raises(CommitBackRefused, match="not in its file"):
        await commit_back(proposal(goal="no-such-goal"), repos.state, base="main")


async def test_direct_refuses_a_base_behind_its_remote(repos: Repos, tmp_path: Path) -> None:
    head = repos.work.head.commit.hexsha
    # Someone else pushes to main meanwhile.
    other = git.Repo.clone_from(str(repos.bare_path), tmp_path / "other")
    (Path(str(other.working_tree_dir)) / "README.md").write_text("infra, edited\n")
    other.index.add(["README.md"])
    other.index.commit("Someone else's change")
    other.git.push("origin", "main")
    moved = repos.refs()["main"]

    with pytest.raises(CommitBackRefused, match="behind origin/main"):
        await commit_back(proposal(), repos.state, mode="direct")

    assert repos.refs() == {"main": moved}
    repos.assert_untouched(head)


async def test_a_push_the_remote_refuses_leaves_the_working_copy_as_it_was(
    repos: Repos,
) -> None:
    head = repos.work.head.commit.hexsha
    hook = repos.bare_path / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'main is protected' >&2\nexit 1\n")
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)
    before = repos.refs()

    for mode in ("direct", "pr"):
        with pytest.raises(PushRejected, match="refused the push") as caught:
            await commit_back(proposal(), repos.state, mode=mode, base="main")
        assert "main is protected" in str(caught.value)

    assert repos.refs() == before
    repos.assert_untouched(head)
    assert repos.work.heads.main.commit.hexsha == head


async def test_an_unreachable_remote_is_a_source_error(repos: Repos, tmp_path: Path) -> None:
    repos.work.remote("origin").set_url(str(tmp_path / "gone.git"))
    with pytest.raises(SourceError):
        await commit_back(proposal(), repos.state, base="main")


def test_the_body_is_cut_to_fit_the_forge() -> None:
    many = tuple(f"turn {i}: " + "x" * 200 for i in range(500))
    body = commitback.pull_request_body(
        proposal(summary=many), commitback.tool_file_text(proposal()), 8000
    )
    assert len(body) <= 8000
    assert "```yaml" in body and "Merging this" in body


def test_a_yaml_1_1_word_in_params_stays_a_string() -> None:
    edited = commitback.add_resolved_by(
        GOALS, "passwords-expire", {"tool": "t", "params": {"value": "no", "mode": "0644"}}
    )
    found = commitback.resolved_by_in(edited, "passwords-expire")
    assert found == {"tool": "t", "params": {"value": "no", "mode": "0644"}}


async def test_a_branch_proposing_another_tool_is_refused(repos: Repos, forge: ForgeServer) -> None:
    async with client(forge) as api:
        await commit_back(proposal(), repos.state, base="main", forge=api)
        pushed = repos.refs()[BRANCH]
        other = proposal(tool="login-defs-other")
        with pytest.raises(CommitBackRefused, match="proposes another resolvedBy"):
            await commit_back(other, repos.state, base="main", forge=api)
    assert repos.refs()[BRANCH] == pushed
    assert len(forge.pull_requests()) == 1


def test_windows_line_endings_are_kept() -> None:
    crlf = GOALS.replace("\n", "\r\n")
    edited = commitback.add_resolved_by(crlf, "passwords-expire", {"tool": "t"})
    anchor = ANCHOR.replace("\n", "\r\n")
    assert edited == crlf.replace(anchor, anchor + "  resolvedBy: {tool: t}\r\n", 1)


def test_a_spec_in_flow_style_is_refused_not_rewritten() -> None:
    text = "apiVersion: fazai.dev/v1alpha1\nkind: Goal\nmetadata: {name: g}\nspec: {a: 1}\n"
    with pytest.raises(CommitBackRefused, match="flow style"):
        commitback.add_resolved_by(text, "g", {"tool": "t"})


def test_the_branch_of_a_goal_is_a_valid_ref_name() -> None:
    assert commitback.branch_for("passwords-expire") == BRANCH
    for name in ("a..b", "x.lock", "web.1"):
        branch = commitback.branch_for(name)
        assert git.Git().check_ref_format("--branch", branch) == branch


def test_the_proposal_of_an_episode_names_the_goal_file_as_loaded(repos: Repos) -> None:
    from controller.agent.episode import Episode, Outcome, VerifiedTool
    from controller.agent.episode import Path as Via

    state = repos.load_at("main")
    goal = next(d for d in state.resources if d.name == "passwords-expire")
    verified = VerifiedTool("login-defs-agent", SPEC, {"key": "PASS_MAX_DAYS"}, ("checks pass",))
    episode = Episode(
        "passwords-expire", "web-1", Outcome.RESOLVED, Via.SYNTHESIZED, "verified",
        tokens=321, calls=4, tool=verified, model="m", backend="b",
    )  # fmt: skip
    made = commitback.proposal_of(episode, goal, run=9, summary=("turn 0",))
    assert (made.goal_file, made.tool, made.node, made.tokens, made.calls) == (
        GOAL_FILE, "login-defs-agent", "web-1", 321, 4,
    )  # fmt: skip
    assert made.description == "local passwords expire after 90 days"
    assert made.provenance()["run"] == 9 and made.provenance()["model"] == "m"
    assert made.verified_at is not None
    with pytest.raises(ValueError, match="verified no tool"):
        commitback.proposal_of(dataclasses.replace(episode, tool=None), goal)


def test_the_pull_request_body_cannot_be_broken_out_of() -> None:
    script = "echo '```'\necho '~~~~'\necho '````'\n"
    spec = {**SPEC, "apply": {"script": script}}
    hostile = ("turn 1: <img src=x onerror=alert(1)> [click](http://evil) @everyone\n"
               "# Approved by @security-team")  # fmt: skip
    body = pull_request_body(proposal(spec=spec, summary=(hostile,)), tool_file_text(
        proposal(spec=spec)))  # fmt: skip
    fence = "`````"  # one longer than the longest run in the script
    assert f"{fence}yaml" in body and body.count(fence) == 2
    (line,) = [x for x in body.splitlines() if "onerror" in x]
    # One inline code span on one list line: no HTML, link, mention or heading survives.
    assert line.startswith("- ` ") and line.endswith(" `")
    assert "\n# Approved" not in body


async def test_a_branch_holding_someone_elses_commits_is_not_built_on(
    repos: Repos, forge: ForgeServer
) -> None:
    branch = BRANCH
    repos.work.git.checkout("-b", "mallory")
    (repos.state / "extra.yaml").write_text("# not FazAI's\n")
    repos.work.index.add(["state/extra.yaml"])
    repos.work.index.commit("mallory's change")
    repos.work.git.push("origin", f"mallory:{branch}")
    repos.work.git.checkout("main")
    async with client(forge) as api:
        with pytest.raises(CommitBackRefused, match="holds commits FazAI did not make"):
            await commit_back(proposal(), repos.state, mode="pr", base="main", forge=api)
    assert forge.pull_requests() == []
