"""``fazai plan --base --head`` and ``fazai review``: the work behind the two commands
(``controller.cli`` declares their options and calls in here).

``fazai review`` plans a pull request (see :mod:`review`), prints the plan to the job's
log, then on the forge updates its one plan comment on the pull request and sets a commit
status on the head: ``pending`` while planning, then ``success`` (the plan was made, with
or without changes), ``failure`` (the head is wrong: invalid documents, a resource that
cannot be planned, a node whose connection the head changes) or ``error`` (a node could
not be read). Its exit code is the plan's: 0 in sync, 1 changes, 2 trouble, including a
forge that could not be told.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.errors import FazaiError, ForgeError, InvalidInputError, SourceError
from controller.forges import comment, review
from controller.forges.base import STATUS_CONTEXT, CommitState, ForgeClient
from controller.forges.clients import CLIENTS, canonical, open_client
from controller.forges.http import DEFAULT_TIMEOUT, ForgeTarget
from controller.forges.settings import DEFAULT_API_URLS, DEFAULT_TOKEN_ENV, ForgeSettings
from controller.forges.settings import from_config as forges_from_config
from controller.model.state import DesiredState
from controller.output import review_markdown
from controller.pipeline import source
from controller.plan import review as reviewed
from controller.secrets import resolve
from controller.settings import read as reading
from controller.source.open import default_cache_dir, open_source

# CI systems say where their forge's API is.
API_URL_ENV = {"github": "GITHUB_API_URL", "gitlab": "CI_API_V4_URL"}
NODE_TROUBLE = "UntrustedNodeError"  # a head problem, not the environment's


@dataclass(frozen=True)
class Pair:
    base: DesiredState | None
    base_error: str | None
    head: DesiredState
    author: str | None = None  # the head commit's author: the actor the policies see


def load_pair(location: str, base_ref: str, head_ref: str, subdir: str) -> Pair:
    """Both states; InvalidInputError when the head is invalid. An invalid base is
    reported in ``base_error`` (a pull request may be the fix); an unknown ref of either
    is a SourceError."""
    head = source.load(open_source(location, head_ref, subdir))
    author = _author(location, head.revision)
    base_tree = open_source(location, base_ref, subdir)
    try:
        return Pair(source.load(base_tree), None, head, author)
    except InvalidInputError as exc:
        errors = [d for d in exc.diagnostics if d.is_error]
        first = f": {errors[0]}" if errors else ""
        return Pair(None, f"{len(errors)} error(s) in its documents{first}", head, author)


def plan_pair(
    pair: Pair,
    *,
    only: Sequence[str] = (),
    concurrency: int = 32,
    show_unmanaged: bool = False,
    trust_head: bool = False,
    prune: Callable[[DesiredState], DesiredState] | None = None,
) -> reviewed.Review:
    head = prune(pair.head) if prune else pair.head
    base = prune(pair.base) if prune and pair.base is not None else pair.base
    return asyncio.run(
        review.build(
            base,
            head,
            base_source=base.source.description if base is not None else "",
            base_error=pair.base_error,
            only=only,
            concurrency=concurrency,
            show_unmanaged=show_unmanaged,
            trust_head=trust_head,
            author=pair.author,
        )
    )


def parse_token_ref(text: str) -> dict[str, str]:
    """``env:NAME`` or ``file:PATH`` as a secret reference."""
    kind, _, value = text.partition(":")
    if kind not in ("env", "file") or not value:
        raise ValueError(f"--token-ref {text!r}: give env:NAME or file:PATH")
    return {kind: value}


def forge_settings(
    forge: str,
    *,
    api_url: str | None,
    token_ref: str | None,
    config: Path | None,
    environ: dict[str, str],
) -> ForgeSettings:
    """The forge to talk to: the ``forges`` entry of ``config`` named (or typed) ``forge``
    when given, with flags overriding; else flags, then the CI's environment, then the
    forge's defaults."""
    entry: ForgeSettings | None = None
    if config is not None:
        # The settings kit's reader: positions for every field, the hardened YAML rules.
        raw = reading.read_file(config)
        entry = forges_from_config(raw.value, raw.location, config.parent).get(forge)
        if entry is None:
            raise SourceError(f"{config}: no forge named {forge!r} in its forges section")
    kind = entry.type if entry else canonical(forge)
    url = (
        api_url
        or (entry.api_url if entry else None)
        or environ.get(API_URL_ENV.get(kind, ""), "")
        or DEFAULT_API_URLS.get(kind)
    )
    if not url:
        raise ValueError(f"{forge}: give --api-url (https://HOST/api/v1)")
    ref = (
        parse_token_ref(token_ref)
        if token_ref
        else dict(entry.token_ref)
        if entry
        else {"env": DEFAULT_TOKEN_ENV[kind]}
    )
    return ForgeSettings(
        type=kind,
        name=entry.name if entry else kind,
        api_url=url.rstrip("/"),
        token_ref=ref,
        status_context=entry.status_context if entry else STATUS_CONTEXT,
        timeout=entry.timeout if entry else DEFAULT_TIMEOUT,
        verify=entry.verify if entry else True,
    )


def verdict(result: reviewed.Review) -> tuple[CommitState, str]:
    """The commit status a review earns, and its description."""
    plan = result.head
    unread = [n for n in plan.nodes if n.error and n.error_type != NODE_TROUBLE]
    untrusted = [n for n in plan.nodes if n.error_type == NODE_TROUBLE]
    broken = sum(1 for n in plan.nodes for i in n.items if i.error is not None)
    if unread:
        names = ", ".join(n.node for n in unread)
        return CommitState.ERROR, f"{len(unread)} node(s) could not be read: {names}"
    if untrusted:
        names = ", ".join(n.node for n in untrusted)
        return CommitState.FAILURE, f"not read, the head changes how to reach: {names}"
    if broken:
        return CommitState.FAILURE, f"{broken} resource(s) cannot be planned"
    if plan.denied:
        return CommitState.FAILURE, f"{len(plan.denied)} change(s) denied by policy"
    counts = plan.counts()
    if not plan.has_changes:
        return CommitState.SUCCESS, "in sync with the live nodes"
    return CommitState.SUCCESS, (
        f"{counts['create']} to create, {counts['update']} to update, "
        f"{counts['delete']} to delete; {review_markdown.summary(result)}"
    )


@dataclass(frozen=True)
class Posting:
    forge: ForgeSettings
    target: ForgeTarget
    repo: str
    pr: int
    mark: str = comment.MARKER
    context: str = STATUS_CONTEXT
    target_url: str | None = None


def prepare_posting(
    settings: ForgeSettings,
    repo: str,
    pr: int,
    *,
    comment_key: str = "",
    context: str | None = None,
    target_url: str | None = None,
) -> Posting:
    """Resolve the token and check the repository's form before anything is planned."""
    CLIENTS[settings.type].check_repo(repo)  # ValueError for a repository in the wrong form
    token = resolve(settings.token_ref, settings.name, "token")
    target = ForgeTarget(settings.type, settings.api_url, token, settings.timeout, settings.verify)
    default_context = settings.status_context
    if comment_key and context is None:
        default_context = f"{default_context} ({comment_key})"
    return Posting(
        settings,
        target,
        repo,
        pr,
        comment.marker(comment_key),
        context or default_context,
        target_url,
    )


async def set_pending(posting: Posting, sha: str) -> None:
    await _set_status(posting, sha, CommitState.PENDING, "planning against the live nodes")


async def _set_status(posting: Posting, sha: str, state: CommitState, description: str) -> None:
    async with _client(posting) as forge:
        await forge.set_status(
            sha, state, description, context=posting.context, target_url=posting.target_url
        )


async def publish(
    posting: Posting, sha: str, body: str, state: CommitState, description: str
) -> tuple[bool, int]:
    """Upsert the comment and set the final status; (created, comment id). When the
    comment cannot be written, the status still leaves ``pending`` (as ``error``)."""
    async with _client(posting) as forge:
        try:
            done = await forge.upsert_comment(posting.pr, body, posting.mark)
        except ForgeError as exc:
            with contextlib.suppress(ForgeError):
                await forge.set_status(
                    sha,
                    CommitState.ERROR,
                    f"the plan comment could not be written ({getattr(exc, 'status', 0)})",
                    context=posting.context,
                    target_url=posting.target_url,
                )
            raise
        await forge.set_status(
            sha, state, description, context=posting.context, target_url=posting.target_url
        )
    return done.created, done.comment.id


def _client(posting: Posting) -> ForgeClient:
    return open_client(posting.target, posting.repo)


def comment_limit(posting: Posting) -> int:
    # Leave room for the marker line.
    return CLIENTS[posting.forge.type].max_comment_chars - len(posting.mark) - 1


def describe_forge_error(exc: FazaiError, settings: ForgeSettings) -> str:
    """The error plus where the token came from (its reference, never its value)."""
    ref = ", ".join(f"{k}: {v}" for k, v in settings.token_ref.items())
    if isinstance(exc, ForgeError) and getattr(exc, "status", 0) in (401, 403):
        return f"{exc} (token from {{{ref}}})"
    return str(exc)


def run_review(
    location: str,
    base_ref: str,
    head_ref: str,
    posting: Posting,
    *,
    subdir: str = "",
    sha: str | None = None,
    plan_options: dict[str, Any],
    emit: Callable[[reviewed.Review], None],
    say: Callable[[str], None],
) -> int:
    """The whole of ``fazai review``; returns the exit code."""
    try:
        pair = load_pair(location, base_ref, head_ref, subdir)
    except InvalidInputError as exc:
        # The head's documents are invalid: say so on the pull request, then fail.
        invalid_sha = _resolve_commit(location, sha or head_ref)
        body = review_markdown.render_invalid(exc.diagnostics, f"{location}@{head_ref}")
        errors = sum(1 for d in exc.diagnostics if d.is_error)
        description = f"{errors} error(s) in the documents"
        _post(posting, invalid_sha, body, CommitState.FAILURE, description, say)
        raise
    known = _resolve_commit(location, sha) if sha else pair.head.revision
    if known is None:
        raise SourceError(f"{location}@{head_ref}: no commit to set the status on; give --sha")
    head_sha: str = known
    try:
        asyncio.run(set_pending(posting, head_sha))
    except ForgeError as exc:
        # Told before planning: a wrong token or repository fails in a second, not after
        # every node was read.
        say(describe_forge_error(exc, posting.forge))
        return 2
    try:
        result = plan_pair(pair, **plan_options)
    except BaseException:
        # Whatever stopped the plan (an error, an exit, Ctrl-C), the status must not
        # stay "pending" for ever: a required check would block the pull request.
        with contextlib.suppress(ForgeError):
            asyncio.run(_set_status(posting, head_sha, CommitState.ERROR, "the plan failed"))
        raise
    emit(result)
    body = review_markdown.render(result, comment_limit(posting))
    state, description = verdict(result)
    if not _post(posting, head_sha, body, state, description, say):
        return 2
    return result.exit_code


def _post(
    posting: Posting,
    sha: str | None,
    body: str,
    state: CommitState,
    description: str,
    say: Callable[[str], None],
) -> bool:
    if sha is None:
        say(f"{posting.forge.type}: no head commit known; nothing posted")
        return False
    try:
        created, comment_id = asyncio.run(publish(posting, sha, body, state, description))
    except ForgeError as exc:
        say(describe_forge_error(exc, posting.forge))
        return False
    verb = "posted" if created else "updated"
    say(
        f"{posting.forge.type}: {verb} the plan comment {comment_id} on #{posting.pr}; "
        f"status {posting.context} = {state.value} on {sha[:12]}"
    )
    return True


def _author(location: str, revision: str | None) -> str | None:
    """The author of the head commit, ``Name <email>``, when the source is a git
    repository (the pull request's author as far as git tells; None otherwise)."""
    if revision is None:
        return None
    from controller.source import git

    try:
        repo = git.open_repository(location, default_cache_dir())
        author = repo.commit(revision).author
    except Exception:  # GitPython raises several kinds; the actor is then unknown
        return None
    name, email = str(author.name or "").strip(), str(author.email or "").strip()
    return f"{name} <{email}>" if email else (name or None)


def _resolve_commit(location: str, ref: str) -> str:
    """The SHA ``ref`` names in the repository (``HEAD^2``, a branch, a SHA)."""
    from controller.source import git

    repo = git.open_repository(location, default_cache_dir())
    try:
        return str(repo.commit(ref).hexsha)
    except Exception as exc:  # GitPython raises several kinds for a bad name
        raise SourceError(f"{git.redact(location)}: unknown commit {ref!r}") from exc
