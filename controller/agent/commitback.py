"""Commit back: a verified tool and the goal's ``resolvedBy`` become desired state.

``commitBack: pr`` (the default) opens a pull request from the branch
``fazai/resolve/<goal>`` through the forge client FazAI already has; ``direct`` pushes
the commit to the base branch; ``off`` writes nothing. Until the pull request is
merged, the loop takes the verified tool from the state store
(``StateStore.verified_tools``), so a solved goal never needs the model again.

What is written:

* ``tools/<tool>.yaml`` at the root of the desired-state folder (where the example
  keeps its tools: a Tool is untargeted, and one tool serves goals of several files),
  one Tool document with ``spec.provenance``. A Tool of that name that is already
  desired state is kept when its spec (provenance aside) is the same, and refused
  otherwise; so is a file of that name that holds something else;
* ``spec.resolvedBy: {tool, params}`` in the goal's own file, inserted as text after
  the last line of the goal's ``spec``, indented like its keys, so that every other
  byte of the file (comments, other documents, key order, quoting) stays as it was.
  The file is read with ruamel.yaml's composer (positions) and the lines are made by
  its emitter; the edit is then checked by loading both versions: the documents must be
  equal but for the new ``resolvedBy``. A goal that has a ``resolvedBy`` already is
  refused (a person's choice is never overwritten), unless it is this very one: then
  there is nothing to do. A ``spec`` in flow style (``spec: {...}``) is refused too:
  rewriting it would change the person's layout.

Nothing is checked out and the person's working copy is never touched (``direct``
aside, below): the commit is made from the object database, with a temporary index,
on top of the remote's base branch (``pr``; or on top of the existing branch, whose
pull request is then reused) or of the local base branch (``direct``, which must
contain the remote's: fetched first, fast-forward only). The new commit is loaded with
FazAI's own loader before it is pushed: the goal must resolve to the tool. Then the
push, never forced; after a ``direct`` push, the local base branch is fast-forwarded
too (``git merge --ff-only`` where it is checked out, which git refuses when local
edits are in the way; the push stands and ``local_updated`` says so).
"""

from __future__ import annotations

import asyncio
import io
import json
import posixpath
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import git
import yaml
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.scalarstring import LiteralScalarString

from controller.agent.episode import Episode
from controller.agent.errors import CommitBackRefused, PushRejected
from controller.errors import InvalidInputError, SourceError
from controller.forges.base import ForgeClient, PullRequest
from controller.model import tool as tools
from controller.model.document import API_VERSION, Document
from controller.source import git as gitsource
from controller.store.redact import MASK

AUTHOR = ("FazAI", "fazai@localhost")
BRANCH_PREFIX = "fazai/resolve/"
TOOLS_FOLDER = "tools"
GIT_TIMEOUT_S = gitsource.GIT_TIMEOUT_S
MAX_SUMMARY_LINES = 60
MAX_BODY_CHARS = 60_000  # under GitHub's 65,536, the strictest forge
_SPEC_ORDER = ("platform", "description", "params", "check", "apply", "rollback", "snapshot")
_NETWORK_ENV = {"GIT_TERMINAL_PROMPT": "0"}  # fail, never wait for a password prompt
# What git says when the remote refused the push itself (not the network, not auth).
_REJECTED = (
    "[rejected]",
    "[remote rejected]",
    "non-fast-forward",
    "fetch first",
    "hook declined",
    "protected branch",
)


class CommitMode(StrEnum):
    PR = "pr"
    DIRECT = "direct"
    OFF = "off"


@dataclass(frozen=True)
class Proposal:
    """A tool verified for a goal, to be committed back. ``goal_file`` is the goal's
    file relative to the desired-state folder, as loaded (``Document.raw.file``);
    ``summary`` is the transcript's summary, redacted by the caller."""

    goal: str
    goal_file: str
    tool: str
    spec: Mapping[str, Any] = field(compare=False)
    params: Mapping[str, Any] = field(compare=False)
    node: str
    evidence: tuple[str, ...] = ()
    tokens: int = 0
    calls: int = 0
    summary: tuple[str, ...] = ()
    description: str = ""  # the goal's
    run: int | None = None
    model: str = ""
    backend: str = ""
    transcript_sha256: str = ""
    verified_at: datetime | None = None

    def provenance(self) -> dict[str, Any]:
        """Where the tool came from, in the fields of tool.json's ``provenance``."""
        found: dict[str, Any] = {"goal": self.goal[:253], "verifiedOn": self.node[:253]}
        if self.run is not None:
            found["run"] = int(self.run)
        if self.model:
            found["model"] = self.model[:512]
        if self.backend:
            found["backend"] = self.backend[:512]
        found["tokens"] = max(0, int(self.tokens))
        if re.fullmatch(r"[0-9a-f]{64}", self.transcript_sha256):
            found["transcriptSha256"] = self.transcript_sha256
        if self.verified_at is not None:
            found["verifiedAt"] = self.verified_at.astimezone(UTC).isoformat()[:64]
        return found

    def tool_spec(self) -> dict[str, Any]:
        """The tool's spec as committed: plain JSON values, canonical key order, and
        this proposal's provenance."""
        plain = _plain(self.spec)
        ordered = {k: plain[k] for k in _SPEC_ORDER if k in plain}
        ordered |= {k: v for k, v in plain.items() if k not in ordered and k != "provenance"}
        ordered["provenance"] = self.provenance()
        return ordered

    def resolved_by(self) -> dict[str, Any]:
        params = _plain(self.params)
        return {"tool": self.tool, "params": params} if params else {"tool": self.tool}


def proposal_of(
    episode: Episode,
    goal: Document,
    *,
    run: int | None = None,
    summary: Sequence[str] = (),
    transcript_sha256: str = "",
    verified_at: datetime | None = None,
) -> Proposal:
    """The proposal of a resolved episode's verified tool (``episode.tool``) for
    ``goal`` as loaded (its file from ``goal.raw``)."""
    if episode.tool is None:
        raise ValueError(f"the episode of Goal/{episode.goal} verified no tool")
    if goal.raw is None:
        raise ValueError(f"Goal/{goal.name} was not loaded from a file")
    verified = episode.tool
    return Proposal(
        goal=goal.name,
        goal_file=goal.raw.file,
        tool=verified.name,
        spec=verified.spec,
        params=verified.params,
        node=episode.node,
        evidence=tuple(verified.evidence),
        tokens=episode.tokens,
        calls=episode.calls,
        summary=tuple(summary),
        description=str(goal.spec.get("description", "")),
        run=run,
        model=episode.model,
        backend=episode.backend,
        transcript_sha256=transcript_sha256,
        verified_at=verified_at or datetime.now(UTC),
    )


@dataclass(frozen=True)
class CommitBack:
    """What a commit back did."""

    mode: CommitMode
    branch: str | None = None  # the branch pushed to (pr: fazai/resolve/<goal>)
    commit: str | None = None  # the commit made; None: nothing new to commit
    pushed: bool = False
    pull: PullRequest | None = None
    created: bool = False  # the pull request was opened by this call
    already: bool = False  # the base branch has this resolution already: nothing to do
    local_updated: bool = False  # direct: the local base branch was fast-forwarded too

    @property
    def reference(self) -> str:
        """Where it went, for the state store: the pull request, else branch@commit."""
        if self.pull is not None:
            return self.pull.url or f"{self.branch}#{self.pull.number}"
        if self.branch and self.commit:
            return f"{self.branch}@{self.commit[:12]}"
        return ""


def branch_for(goal: str) -> str:
    """``fazai/resolve/<goal>``: one branch, and one pull request, per goal."""
    # Goal names are DNS-like; git refuses only ".." and a ".lock" end among them.
    name = re.sub(r"\.{2,}", ".", goal)
    name = name[: -len(".lock")] + "-lock" if name.endswith(".lock") else name
    return BRANCH_PREFIX + name


async def commit_back(
    proposal: Proposal,
    source: Path,
    *,
    mode: CommitMode | str = CommitMode.PR,
    base: str | None = None,
    remote: str = "origin",
    forge: ForgeClient | None = None,
    author: tuple[str, str] = AUTHOR,
    known_secrets: Sequence[str] = (),
    timeout: float = GIT_TIMEOUT_S,
) -> CommitBack:
    """Commit ``proposal`` back to the repository holding the desired-state folder
    ``source`` (a working copy with the remote ``remote``), per ``mode``; ``base`` is
    the branch it goes into (default: the working copy's current branch). In ``pr``
    mode the pull request is opened (or the open one of the branch updated) through
    ``forge``; without one, the branch is pushed and no pull request is opened.

    CommitBackRefused before anything is written; PushRejected when the remote refused
    the push; SourceError when git cannot reach it (temporary; refused credentials:
    permanent); ForgeError from the forge."""
    chosen = CommitMode(mode)
    if chosen is CommitMode.OFF:
        return CommitBack(chosen)
    work = _Work(proposal, source, chosen, base, remote, author, known_secrets, timeout)
    done = await asyncio.to_thread(work.run)
    if chosen is CommitMode.DIRECT or done.already or forge is None or not done.branch:
        return done
    title = f"FazAI: resolve Goal/{proposal.goal} with Tool/{proposal.tool}"
    body = pull_request_body(
        proposal, work.tool_text, min(MAX_BODY_CHARS, forge.max_comment_chars), known_secrets
    )
    proposed = await forge.propose(done.branch, work.base, title, body)
    return CommitBack(
        chosen, done.branch, done.commit, done.pushed, proposed.pull, proposed.created
    )


# -- the pull request's body --------------------------------------------------------------


def pull_request_body(
    proposal: Proposal,
    tool_text: str,
    limit: int = MAX_BODY_CHARS,
    known_secrets: Sequence[str] = (),
) -> str:
    """Markdown: the goal, the node, the tool, its params, the verification's evidence,
    what it cost and the transcript's summary (masked; cut to fit ``limit``)."""

    def masked(text: str) -> str:
        return _scrub(text, known_secrets)

    params = json.dumps(_plain(proposal.params), sort_keys=True)
    evidence = [f"- {masked(e)}" for e in proposal.evidence] or ["- (none recorded)"]
    model = proposal.model or "(unknown)"
    backend = f" on {proposal.backend}" if proposal.backend else ""
    head = [
        f"FazAI's agent resolved **Goal/{proposal.goal}** on node `{proposal.node}` with "
        f"**Tool/{proposal.tool}**, verified on the node in one transaction.",
        "",
        "## Goal",
        f"**{proposal.goal}**: {masked(proposal.description) or '(no description)'}",
        f"(in `{proposal.goal_file}`)",
        "",
        "## Verification",
        *evidence,
        "",
        "## Params",
        f"`{params}`",
        "",
        "## Cost",
        f"Model {model}{backend}: {proposal.tokens} tokens in {proposal.calls} model calls"
        + (f" (run {proposal.run})" if proposal.run is not None else "")
        + ".",
        "",
    ]
    tail = [
        "",
        "Merging this makes the tool and the goal's `resolvedBy` desired state: the goal "
        "is then resolved with no model call. Until then FazAI uses the verified tool it "
        "keeps in its state store.",
    ]
    # A fence longer than any run of backticks in the tool: its text cannot close it.
    longest = max((len(run) for run in re.findall(r"`+", tool_text)), default=0)
    fence = "`" * max(3, longest + 1)
    tool_lines = ["## Tool", f"{fence}yaml", tool_text.rstrip("\n"), fence, ""]
    # Each summary line quoted as code, one line each: a model's or a node's text must
    # not render as markup, links, mentions or HTML that hides part of the tool.
    summary = [_inert(masked(line)) for line in proposal.summary[:MAX_SUMMARY_LINES]]
    if len(proposal.summary) > MAX_SUMMARY_LINES:
        summary.append(f"(… {len(proposal.summary) - MAX_SUMMARY_LINES} more lines)")
    while True:
        part = (
            ["## Transcript (summary, redacted)", *(f"- {s}" for s in summary)] if summary else []
        )
        text = "\n".join([*head, *tool_lines, *part, *tail])
        if len(text) <= limit:
            return text
        if summary:
            summary = summary[: len(summary) // 2] if len(summary) > 1 else []
            continue
        # The tool alone is too long: the commit has it whole.
        tool_lines = ["## Tool", "(too long to show here: see the commit's tools file)", ""]
        text = "\n".join([*head, *tool_lines, *tail])
        return text[:limit]


def _inert(text: str) -> str:
    """``text`` as one inline code span: no newline, and a delimiter longer than any run
    of backticks in it, so nothing in it is markdown, HTML, a link or a mention."""
    flat = " ".join(text.split())
    longest = max((len(run) for run in re.findall(r"`+", flat)), default=0)
    tick = "`" * (longest + 1)
    return f"{tick} {flat} {tick}"


# -- editing the YAML ---------------------------------------------------------------------


def resolved_by_in(text: str, goal: str) -> Mapping[str, Any] | None:
    """The ``resolvedBy`` of Goal/``goal`` in a file's text; None when it has none.
    CommitBackRefused when the file does not hold that goal once."""
    _goal_spec(text, goal)  # there, once
    for document in _safe_load_all(text, goal):
        if _is_goal(document, goal):
            found = document.get("spec", {}).get("resolvedBy")
            return None if found is None else (found if isinstance(found, Mapping) else {})
    return None


def add_resolved_by(text: str, goal: str, resolved_by: Mapping[str, Any]) -> str:
    """``text`` with ``spec.resolvedBy`` added to Goal/``goal``, every other byte kept.
    CommitBackRefused when the goal has one already, or its spec is in flow style."""
    spec = _goal_spec(text, goal)
    if any(isinstance(k, ScalarNode) and k.value == "resolvedBy" for k, _ in spec.value):
        raise CommitBackRefused(goal, "the goal has a resolvedBy already; it is left as it is")
    if spec.flow_style or not spec.value:
        raise CommitBackRefused(
            goal,
            "its spec is written in flow style ({...}); FazAI adds resolvedBy only to a "
            "block mapping, so as not to rewrite the file's layout",
        )
    column = spec.value[0][0].start_mark.column
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = _dump({"resolvedBy": dict(resolved_by)}).splitlines()
    block = "".join(" " * column + line + newline for line in lines)
    before = _safe_load_all(text, goal)
    for at in _insertion_points(text, spec):
        prefix = text[:at]
        if prefix and not prefix.endswith("\n"):
            prefix += newline
        edited = prefix + block + text[at:]
        if _only_added(before, edited, goal, resolved_by):
            return edited
    raise CommitBackRefused(goal, "resolvedBy could not be added without changing anything else")


def tool_file_text(proposal: Proposal) -> str:
    """``tools/<tool>.yaml``: one Tool document, with a comment saying where it came from."""
    run = f" (run {proposal.run})" if proposal.run is not None else ""
    header = (
        f"# Written by FazAI's agent for Goal/{proposal.goal}, verified on {proposal.node}"
        f"{run}.\n# Desired state once merged; edit it as any other document.\n"
    )
    document = {
        "apiVersion": API_VERSION,
        "kind": "Tool",
        "metadata": {"name": proposal.tool},
        "spec": _literal(proposal.tool_spec()),
    }
    return header + _dump(document, flow_leaves=False)


def same_tool(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two tool specs are the same tool: equal but for their provenance."""

    def bare(spec: Mapping[str, Any]) -> str:
        plain = {k: v for k, v in _plain(spec).items() if k != "provenance"}
        return json.dumps(plain, sort_keys=True)

    return bare(a) == bare(b)


def _dump(value: Any, *, flow_leaves: bool = True) -> str:
    emitter = YAML(typ="rt")
    # FazAI reads YAML 1.1 (PyYAML): emitted as 1.1, a string like "no", "on" or "0644"
    # is quoted, where 1.2 would leave it plain and FazAI would read a bool or a number.
    emitter.version = (1, 1)
    emitter.width = 4096  # never fold a long line
    emitter.indent(mapping=2, sequence=4, offset=2)
    # A mapping or list of scalars in flow style ({key: X, value: "90"}), as people write
    # params; bigger values in blocks.
    emitter.default_flow_style = None if flow_leaves else False
    out = io.StringIO()
    emitter.dump(value, out)
    text = out.getvalue()
    if text.startswith("%YAML"):
        text = text.split("\n---\n", 1)[1]  # the directive: 1.1 is what FazAI reads anyway
    return text


def _literal(value: Any) -> Any:
    """Multi-line strings as ``|`` blocks (scripts stay readable); ruamel falls back to
    quoting what a block cannot hold (trailing spaces)."""
    if isinstance(value, str) and "\n" in value:
        return LiteralScalarString(value)
    if isinstance(value, Mapping):
        return {k: _literal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_literal(v) for v in value]
    return value


def _compose(text: str, goal: str) -> list[Node]:
    try:
        return [n for n in YAML(typ="rt").compose_all(text) if n is not None]
    except YAMLError as exc:
        raise CommitBackRefused(goal, f"its file is not YAML FazAI can edit: {exc}") from exc


def _scalar(node: Node | None) -> str | None:
    return str(node.value) if isinstance(node, ScalarNode) else None


def _get(node: Node, key: str) -> Node | None:
    if not isinstance(node, MappingNode):
        return None
    return next((v for k, v in node.value if _scalar(k) == key), None)


def _goal_spec(text: str, goal: str) -> MappingNode:
    found = []
    for document in _compose(text, goal):
        metadata = _get(document, "metadata")
        name = _scalar(_get(metadata, "name")) if metadata is not None else None
        if _scalar(_get(document, "kind")) == "Goal" and name == goal:
            found.append(document)
    if len(found) != 1:
        why = "is not in" if not found else "is more than once in"
        raise CommitBackRefused(goal, f"the goal {why} its file")
    spec = _get(found[0], "spec")
    if not isinstance(spec, MappingNode):
        raise CommitBackRefused(goal, "the goal's spec is not a mapping")
    return spec


def _is_goal(document: Any, goal: str) -> bool:
    return (
        isinstance(document, Mapping)
        and document.get("kind") == "Goal"
        and isinstance(document.get("metadata"), Mapping)
        and document["metadata"].get("name") == goal
        and isinstance(document.get("spec"), Mapping)
    )


def _insertion_points(text: str, spec: MappingNode) -> list[int]:
    """Where the new key may go, best first: after the last line of the spec's last
    value (a block scalar's trailing blank lines left after it), else right where the
    parser says that value ends."""
    node: Node = spec
    while isinstance(node, MappingNode | SequenceNode) and not node.flow_style and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(node, MappingNode) else last
    end = node.end_mark.index
    points = []
    if isinstance(node, ScalarNode) and node.style in ("|", ">"):
        start = end
        while start > 0:
            line_start = text.rfind("\n", 0, start - 1) + 1
            if text[line_start:start].strip():
                break
            start = line_start
        points.append(start)
    else:
        newline = text.find("\n", end)
        points.append(len(text) if newline < 0 else newline + 1)
    points.append(end)
    return list(dict.fromkeys(points))


def _safe_load_all(text: str, goal: str) -> list[Any]:
    """The documents as FazAI reads them (PyYAML, YAML 1.1)."""
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise CommitBackRefused(goal, f"its file is not YAML FazAI can edit: {exc}") from exc


def _only_added(before: list[Any], edited: str, goal: str, added: Mapping[str, Any]) -> bool:
    """Whether ``edited`` holds the documents of ``before`` and only ``added`` more."""
    try:
        after = _safe_load_all(edited, goal)
    except CommitBackRefused:
        return False
    if len(after) != len(before):
        return False
    for old, new in zip(before, after, strict=True):
        if not _is_goal(old, goal):
            if _canonical(old) != _canonical(new):
                return False
            continue
        if not isinstance(new, Mapping) or not isinstance(new.get("spec"), Mapping):
            return False
        expected = {**old, "spec": {**old["spec"], "resolvedBy": added}}
        if _canonical(expected) != _canonical(new):
            return False
    return True


def _scrub(text: str, known: Sequence[str]) -> str:
    """``text`` without the secrets the controller holds. Only those: the caller redacted
    the transcript already, and the agent's masking heuristics would mask this text's own
    words ("tokens 1234", a goal named passwords-expire)."""
    for secret in sorted({s for s in known if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _plain(value: Any) -> Any:
    """JSON values only: the loader's numerals, tuples and mappings made plain."""
    return json.loads(json.dumps(value, default=str))


# -- git ----------------------------------------------------------------------------------


@dataclass
class _Work:
    proposal: Proposal
    source: Path
    mode: CommitMode
    wanted_base: str | None
    remote: str
    author: tuple[str, str]
    known_secrets: Sequence[str]
    timeout: float
    base: str = ""
    tool_text: str = ""
    prefix: str = ""  # the desired-state folder in the repository ("": its root)
    top: Path = field(default_factory=Path)

    def run(self) -> CommitBack:
        goal = self.proposal.goal
        try:
            repo = git.Repo(self.source, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise CommitBackRefused(goal, f"{self.source} is in no git repository") from exc
        try:
            return self._run(repo)
        finally:
            repo.close()

    def _run(self, repo: git.Repo) -> CommitBack:
        goal = self.proposal.goal
        if repo.working_tree_dir is None:
            raise CommitBackRefused(goal, f"{self.source} is in a bare repository")
        top = Path(str(repo.working_tree_dir)).resolve()
        try:
            prefix = self.source.resolve().relative_to(top).as_posix()
        except ValueError as exc:
            raise CommitBackRefused(goal, f"{self.source} is outside {top}") from exc
        self.prefix = "" if prefix == "." else prefix
        self.top = top
        if self.remote not in [r.name for r in repo.remotes]:
            raise CommitBackRefused(goal, f"the repository has no remote {self.remote!r}")
        self.base = self.wanted_base or self._current_branch(repo)
        self.tool_text = tool_file_text(self.proposal)
        remote_base = self._fetch(repo, self.base)
        if remote_base is None:
            raise CommitBackRefused(goal, f"{self.remote} has no branch {self.base!r}")
        if self.mode is CommitMode.PR:
            return self._pull_request(repo, remote_base)
        return self._direct(repo, remote_base)

    def _pull_request(self, repo: git.Repo, remote_base: str) -> CommitBack:
        branch = branch_for(self.proposal.goal)
        if self._resolved(repo, remote_base, f"{self.remote}/{self.base}"):
            return CommitBack(self.mode, already=True)
        remote_head = self._fetch(repo, branch)
        parent = remote_head or remote_base
        if remote_head is not None:
            # Built on only when every commit it holds beyond the base is FazAI's own:
            # the pull request would vouch for whatever else is there.
            foreign = [
                c.hexsha[:12]
                for c in repo.iter_commits(f"{remote_base}..{remote_head}")
                if c.author.email != self.author[1]
            ]
            if foreign:
                raise CommitBackRefused(
                    self.proposal.goal,
                    f"the branch {branch} holds commits FazAI did not make "
                    f"({', '.join(foreign[:3])}); refusing to build a pull request on it",
                )
            self._resolved(repo, remote_head, f"the branch {branch}", ours=True)
        made = self._commit(repo, parent)
        if made is None:  # the branch has it already (an earlier run): reuse it
            return CommitBack(self.mode, branch, None, pushed=False)
        self._push(repo, made, branch)
        return CommitBack(self.mode, branch, made, pushed=True)

    def _direct(self, repo: git.Repo, remote_base: str) -> CommitBack:
        goal = self.proposal.goal
        local = next((h for h in repo.heads if h.name == self.base), None)
        parent = remote_base
        if local is not None:
            parent = str(local.commit.hexsha)
            if not repo.is_ancestor(repo.commit(remote_base), repo.commit(parent)):
                raise CommitBackRefused(
                    goal,
                    f"the local branch {self.base} is behind {self.remote}/{self.base} (or "
                    "has diverged from it); pull first: a direct commit is a fast-forward only",
                )
        made = self._commit(repo, parent)
        if made is None:
            return CommitBack(self.mode, already=True)
        self._push(repo, made, self.base)
        updated = local is not None and self._fast_forward(repo, local, parent, made)
        return CommitBack(self.mode, self.base, made, pushed=True, local_updated=updated)

    def _current_branch(self, repo: git.Repo) -> str:
        if repo.head.is_detached:
            raise CommitBackRefused(
                self.proposal.goal, "the working copy is on no branch: say which is the base"
            )
        return str(repo.active_branch.name)

    # -- reading and making commits -------------------------------------------------------

    def _path(self, relative: str) -> str:
        return posixpath.join(self.prefix, relative) if self.prefix else relative

    def _blob(self, commit: git.Commit, path: str) -> git.Blob | None:
        try:
            item = commit.tree / path
        except KeyError:
            return None
        return item if isinstance(item, git.Blob) else None

    def _goal_text(self, commit: git.Commit) -> tuple[str, bool, git.Blob]:
        goal = self.proposal.goal
        blob = self._blob(commit, self._path(self.proposal.goal_file))
        if blob is None:
            raise CommitBackRefused(
                goal, f"{self.proposal.goal_file} is not in {commit.hexsha[:12]} of the repository"
            )
        data: bytes = blob.data_stream.read()
        bom = data.startswith(b"\xef\xbb\xbf")
        try:
            return data.decode("utf-8-sig"), bom, blob
        except UnicodeDecodeError as exc:
            raise CommitBackRefused(goal, f"{self.proposal.goal_file} is not UTF-8") from exc

    def _resolved(self, repo: git.Repo, sha: str, where: str = "", *, ours: bool = False) -> bool:
        """Whether the goal at ``sha`` is resolved by this very tool already; refused
        when it is resolved by another (``ours``: on FazAI's own branch)."""
        text, _, _ = self._goal_text(repo.commit(sha))
        found = resolved_by_in(text, self.proposal.goal)
        if found is None:
            return False
        if _canonical(_plain(found)) == _canonical(self.proposal.resolved_by()):
            return True
        shown = json.dumps(_plain(found), sort_keys=True)
        place = where or sha[:12]
        if ours:
            raise CommitBackRefused(
                self.proposal.goal,
                f"{place} proposes another resolvedBy already ({shown}); merge or close its "
                "pull request and delete the branch first",
            )
        raise CommitBackRefused(
            self.proposal.goal,
            f"the goal has a resolvedBy already in {place} ({shown}); it is a person's "
            "choice and is left as it is",
        )

    def _commit(self, repo: git.Repo, parent: str) -> str | None:
        """The commit on ``parent`` that adds the resolution; None when ``parent`` has it."""
        goal = self.proposal.goal
        commit = repo.commit(parent)
        writes: dict[str, tuple[bytes, int]] = {}
        text, bom, blob = self._goal_text(commit)
        if not self._resolved(repo, parent):
            edited = add_resolved_by(text, goal, self.proposal.resolved_by())
            data = (b"\xef\xbb\xbf" if bom else b"") + edited.encode("utf-8")
            writes[self._path(self.proposal.goal_file)] = (data, blob.mode)
        state = self._load(repo, parent, "before the edit")
        existing = next(
            (d for d in state.controls if d.kind == "Tool" and d.name == self.proposal.tool), None
        )
        tool_path = self._path(posixpath.join(TOOLS_FOLDER, f"{self.proposal.tool}.yaml"))
        if existing is not None:
            if not same_tool(existing.spec, self.proposal.spec):
                raise CommitBackRefused(
                    goal,
                    f"a different Tool/{self.proposal.tool} is desired state already (in "
                    f"{existing.file}); name the new tool otherwise",
                )
        elif self._blob(commit, tool_path) is not None:
            raise CommitBackRefused(
                goal, f"{tool_path} exists and holds no Tool/{self.proposal.tool}; not replaced"
            )
        else:
            writes[tool_path] = (self.tool_text.encode("utf-8"), 0o100644)
        if not writes:
            return None
        made = self._write_commit(repo, parent, writes)
        self._verify(repo, made)
        return made

    def _write_commit(
        self, repo: git.Repo, parent: str, writes: Mapping[str, tuple[bytes, int]]
    ) -> str:
        name, email = self.author
        env = {
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
        }
        try:
            with tempfile.TemporaryDirectory(prefix="fazai-commit-") as folder:
                # A private index: the person's index and working tree are never touched.
                env["GIT_INDEX_FILE"] = str(Path(folder) / "index")
                repo.git.read_tree(parent, env=env)
                for number, (path, (data, mode)) in enumerate(writes.items()):
                    # Stored as the bytes are: no clean filter, no line-ending conversion.
                    staged = Path(folder) / f"blob-{number}"
                    staged.write_bytes(data)
                    sha = str(repo.git.hash_object("-w", "--no-filters", str(staged))).strip()
                    repo.git.update_index("--add", "--cacheinfo", f"{mode:o},{sha},{path}", env=env)
                tree = repo.git.write_tree(env=env)
                message = _scrub(self._message(), self.known_secrets)
                return str(repo.git.commit_tree(tree, "-p", parent, "-m", message, env=env)).strip()
        except git.GitCommandError as exc:
            raise SourceError(f"{self.top}: git failed making the commit: {_stderr(exc)}") from exc

    def _message(self) -> str:
        p = self.proposal
        run = f" (run {p.run})" if p.run is not None else ""
        lines = [
            f"Resolve Goal/{p.goal} with Tool/{p.tool}",
            "",
            f"FazAI's agent verified Tool/{p.tool} on {p.node}{run}, in one transaction of "
            "the node:",
            *(f"- {e}" for e in p.evidence[:20]),
            "",
            "Desired state once merged: the goal is then resolved with no model call.",
            f"Model: {p.model or 'unknown'}"
            + (f" on {p.backend}" if p.backend else "")
            + f"; {p.tokens} tokens in {p.calls} calls.",
        ]
        return "\n".join(lines) + "\n"

    def _load(self, repo: git.Repo, sha: str, when: str) -> Any:
        from controller import providers
        from controller.model import loader

        providers.load_all()
        tree = gitsource.tree_at(repo, str(self.top), sha, self.prefix)
        try:
            return loader.load(tree)
        except InvalidInputError as exc:
            problems = "; ".join(str(d) for d in exc.diagnostics[:5])
            raise CommitBackRefused(
                self.proposal.goal, f"the desired state does not load {when}: {problems}"
            ) from exc

    def _verify(self, repo: git.Repo, sha: str) -> None:
        """The new commit loads, and the goal resolves to the tool with its params."""
        goal = self.proposal.goal
        state = self._load(repo, sha, "after the edit")
        found = next((d for d in state.resources if d.kind == "Goal" and d.name == goal), None)
        resolution = tools.resolution_of(found.spec) if found is not None else None
        by = found.spec.get("resolvedBy", {}) if found is not None else {}
        shown = {k: v for k, v in by.items() if k != tools.BOUND}
        bound = by.get(tools.BOUND, {}).get("spec", {})
        if (
            resolution is None
            or resolution.tool != self.proposal.tool
            or _canonical(_plain(shown)) != _canonical(self.proposal.resolved_by())
            or not same_tool(bound, self.proposal.spec)
        ):
            raise CommitBackRefused(goal, "the edited desired state does not resolve the goal")

    # -- the remote -----------------------------------------------------------------------

    def _fetch(self, repo: git.Repo, branch: str) -> str | None:
        """The remote's tip of ``branch``, fetched; None when the remote lacks it."""
        shown = gitsource.redact(str(repo.remote(self.remote).url))
        ref = f"refs/heads/{branch}"
        try:
            listed = repo.git.ls_remote(
                self.remote, ref, env=_NETWORK_ENV, kill_after_timeout=self.timeout
            )
            if not any(line.split("\t")[-1] == ref for line in str(listed).splitlines()):
                return None
            tracking = f"refs/remotes/{self.remote}/{branch}"
            repo.git.fetch(
                self.remote, f"+{ref}:{tracking}", env=_NETWORK_ENV, kill_after_timeout=self.timeout
            )
            return str(repo.commit(tracking).hexsha)
        except git.GitCommandError as exc:
            raise gitsource.git_failure(
                f"{shown}: git fetch failed: {gitsource.redact(_stderr(exc))}"
            ) from exc

    def _push(self, repo: git.Repo, sha: str, branch: str) -> None:
        shown = gitsource.redact(str(repo.remote(self.remote).url))
        try:
            repo.git.push(
                "--porcelain",
                self.remote,
                f"{sha}:refs/heads/{branch}",
                env=_NETWORK_ENV,
                kill_after_timeout=self.timeout,
            )
        except git.GitCommandError as exc:
            said = gitsource.redact(_stderr(exc) + " " + str(exc.stdout or ""))
            if any(marker in said.lower() for marker in _REJECTED):
                raise PushRejected(
                    self.proposal.goal, f"{shown} refused the push to {branch}: {said.strip()}"
                ) from exc
            raise gitsource.git_failure(f"{shown}: git push failed: {said.strip()}") from exc
        # The remote-tracking ref follows, as git push does for a configured remote.
        repo.git.update_ref(f"refs/remotes/{self.remote}/{branch}", sha)

    def _fast_forward(self, repo: git.Repo, local: git.Head, old: str, new: str) -> bool:
        """The local base branch moved to the pushed commit, where that is safe."""
        try:
            checked_out = not repo.head.is_detached and repo.active_branch.name == local.name
            if checked_out:
                repo.git.merge("--ff-only", "--quiet", new)
                return True
            worktrees = str(repo.git.worktree("list", "--porcelain"))
            if f"branch refs/heads/{local.name}" in worktrees.splitlines():
                return False  # checked out in another worktree: left to it
            repo.git.update_ref(f"refs/heads/{local.name}", new, old)
            return True
        except git.GitCommandError:
            return False  # local edits in the way: the push stands, the branch is behind


def _stderr(exc: git.GitCommandError) -> str:
    text = str(exc.stderr or exc).strip()
    return text.removeprefix("stderr:").strip(" '\n")
