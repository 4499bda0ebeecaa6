"""The agent's knowledge base: verified solutions, failed attempts and reference text.

Three Qdrant collections (cosine distance, the dimension learned from the first
embedding): ``fazai_solutions`` (a Tool that made a goal so, verified on a node),
``fazai_failures`` (what was tried and why it did not work) and ``fazai_reference`` (the
corpus shipped under ``controller/agent/reference/``, chunked by heading). The storage is
Qdrant's local mode in a folder (``path``: the embedded default) or a Qdrant server
(``url``), with the same client code.

Local mode lets one process open a folder at a time: the process that runs the agent
loop owns the knowledge base, and a second one gets :class:`KnowledgeLockedError`
naming the folder, at once.

Retrieval (:meth:`KnowledgeBase.search`) is filtered by platform in the query itself, so
a Linux solution never reaches an OPNsense prompt. Hits are ordered by their cosine
score plus a bonus: :data:`SOLUTION_BONUS` for a verified solution, and
:data:`SAME_OS_BONUS` more when it was verified on the same operating system; failures
and reference chunks get none (a failure before a reference chunk on a tie). So at
equal-ish scores a same-OS solution comes first, then other solutions, then failures
and reference; a much closer failure or reference chunk still wins. ``Hit.score`` is
the cosine score itself, without the bonus, so thresholds mean the same everywhere.

Solutions and failures are embedded by their goal's description alone: queries are goal
descriptions, and ``min_score`` then means how close the two goals are.

Every point id is deterministic (uuid5), so adding the same thing twice leaves one
point: a solution by platform, tool, params and goal (a newer verification replaces the
older one's node and time), a failure by platform, spec, params, goal and why, a
reference chunk by its source and the SHA-256 of its text.

Payloads are JSON and hold only what the dataclasses below hold: a Tool spec and its
params are desired state already in git; a failure's ``why`` has anything shaped like a
password hash masked, and is capped. Nothing else is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

import portalocker
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from controller.agent.errors import (
    KnowledgeError,
    KnowledgeLockedError,
    KnowledgeUnavailableError,
)
from controller.hashes import mask_hashes

log = logging.getLogger("fazai.agent")

Embed = Callable[[Sequence[str]], Awaitable[list[list[float]]]]

SOLUTIONS = "fazai_solutions"
FAILURES = "fazai_failures"
REFERENCE = "fazai_reference"
COLLECTIONS = (SOLUTIONS, FAILURES, REFERENCE)

TEXT_CAP = 1500  # characters of a hit's text: a prompt holds several
WHY_CAP = 2000  # characters of a failure's why kept
SOLUTION_BONUS = 0.05
SAME_OS_BONUS = 0.05
ANY_PLATFORM = "any"  # a reference chunk that applies to every platform
PAYLOAD_VERSION = 1
EMBED_BATCH = 32  # texts per call to the embedder when seeding

# Fixed for ever: ids must come out the same in every version, or re-adding duplicates.
_NAMESPACE = uuid.UUID("3c9f1a52-6b0e-4d6a-9a57-2f1d8e0c4b71")
_KIND_ORDER = {"solution": 0, "failure": 1, "reference": 2}


@dataclass(frozen=True)
class Solution:
    """A Tool that made a goal so, verified on ``node`` at ``verified_at`` (run ``run``)."""

    goal: str  # the goal's description
    platform: str
    os: str | None
    tool: str  # the Tool's metadata.name
    spec: Mapping[str, Any]  # the Tool's spec
    params: Mapping[str, Any]
    node: str
    verified_at: str
    run: int | None = None


@dataclass(frozen=True)
class Failure:
    """A tool spec with params that did not make a goal so, and why."""

    goal: str
    platform: str
    os: str | None
    spec: Mapping[str, Any]
    params: Mapping[str, Any]
    why: str
    node: str


@dataclass(frozen=True)
class Hit:
    """One search result: ``text`` is a short rendering for a prompt (at most
    :data:`TEXT_CAP` characters); ``score`` the cosine score, without bonus."""

    kind: Literal["solution", "failure", "reference"]
    score: float
    text: str
    solution: Solution | None = None
    failure: Failure | None = None
    source: str | None = None  # a reference chunk's file and heading: kinds-linux.md#file


@dataclass(frozen=True)
class Chunk:
    """A section of the reference corpus: ``source`` is ``file#heading-slug``."""

    source: str
    title: str  # the heading trail, "FazAI kinds on Linux > File"
    platform: str  # linux, opnsense or any
    text: str


@dataclass(frozen=True)
class Seeded:
    """What :meth:`KnowledgeBase.seed_reference` did: chunks embedded and stored,
    stale ones removed, unchanged ones kept."""

    added: int
    removed: int
    kept: int


class KnowledgeBase:
    """The knowledge base, opened as ``async with KnowledgeBase(embed, path=...) as kb``.

    ``embed`` turns texts into vectors (``ModelRuntime.embed``: the embedder role). Give
    exactly one of ``path`` (a local folder, owned by this process while open) and
    ``url`` (a Qdrant server; ``api_key`` and ``timeout`` in seconds apply to it)."""

    def __init__(
        self,
        embed: Embed,
        *,
        path: Path | None = None,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 10,
    ) -> None:
        if (path is None) == (url is None):
            raise ValueError("a KnowledgeBase takes exactly one of path and url")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._embed = embed
        self.path = Path(path).expanduser() if path is not None else None
        self.url = url
        self._api_key = api_key
        self._timeout = timeout
        self._client: AsyncQdrantClient | None = None
        self._dims: dict[str, int] = {}  # the collections that exist, by dimension
        self._creating = asyncio.Lock()

    @property
    def where(self) -> str:
        """The folder, or the server's URL without credentials: for messages and logs."""
        if self.path is not None:
            return str(self.path)
        return _redacted(self.url or "")

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Open the client (local mode takes the folder's lock here) and learn which
        collections exist. Opening twice is a no-op."""
        if self._client is not None:
            return
        if self.path is not None and _held(self.path):
            raise self._locked_error()
        try:
            if self.path is not None:
                client = AsyncQdrantClient(path=str(self.path))
            else:
                client = AsyncQdrantClient(
                    url=self.url,
                    api_key=self._api_key,
                    timeout=max(1, math.ceil(self._timeout)),
                    # Its check runs a request in a thread at construction; the first
                    # real call says plainly enough whether the server answers.
                    check_compatibility=False,
                )
        except RuntimeError as exc:
            if _locked(exc):  # taken between our look and the client's
                raise self._locked_error() from exc
            raise KnowledgeError(self.where, f"cannot be opened: {exc}") from exc
        except (OSError, ValueError) as exc:  # not writable, a corrupt meta.json
            raise KnowledgeError(self.where, f"cannot be opened: {exc}") from exc
        self._client = client
        try:
            await self._learn_collections()
        except BaseException:
            self._client = None
            await client.close()
            raise

    def _locked_error(self) -> KnowledgeLockedError:
        return KnowledgeLockedError(
            self.where,
            "another process has it open: one process owns a local knowledge base (the "
            "one that runs the agent); go through that process, or use a Qdrant server "
            "(url) to share one",
        )

    async def close(self) -> None:
        """Close the client, releasing a local folder's lock. Closing twice is a no-op."""
        client, self._client = self._client, None
        self._dims.clear()
        if client is not None:
            await client.close()

    # -- writing ------------------------------------------------------------------------

    async def add_solution(self, solution: Solution) -> str:
        """Store ``solution`` (again: the same id replaces it); returns its point id."""
        payload = _solution_payload(solution)
        point_id = solution_id(solution)
        [vector] = await self._vectors([_solution_embedding_text(solution)])
        await self._upsert(
            SOLUTIONS, [models.PointStruct(id=point_id, vector=vector, payload=payload)]
        )
        return point_id

    async def add_failure(self, failure: Failure) -> str:
        """Store ``failure`` (again: the same id replaces it); returns its point id."""
        payload = _failure_payload(failure)
        point_id = failure_id(failure)
        [vector] = await self._vectors([_failure_embedding_text(failure)])
        await self._upsert(
            FAILURES, [models.PointStruct(id=point_id, vector=vector, payload=payload)]
        )
        return point_id

    async def seed_reference(self, corpus: Traversable | None = None) -> Seeded:
        """Load the reference corpus (default: the shipped one): chunks not stored yet are
        embedded and added, stored chunks no longer in it (edited or gone) are removed,
        the rest are left alone, so seeding at every start costs no embedding."""
        chunks = reference_chunks(corpus)
        wanted = {chunk_id(c): c for c in chunks}
        existing = await self._ids(REFERENCE)
        new = [(i, c) for i, c in wanted.items() if i not in existing]
        stale = sorted(existing - wanted.keys())
        for start in range(0, len(new), EMBED_BATCH):
            batch = new[start : start + EMBED_BATCH]
            vectors = await self._vectors([c.text for _, c in batch])
            points = [
                models.PointStruct(id=i, vector=v, payload=_chunk_payload(c))
                for (i, c), v in zip(batch, vectors, strict=True)
            ]
            await self._upsert(REFERENCE, points)
        if stale:
            client = self._open_client()
            with self._answers():
                await client.delete(
                    REFERENCE, points_selector=models.PointIdsList(points=list(stale)), wait=True
                )
        return Seeded(added=len(new), removed=len(stale), kept=len(wanted) - len(new))

    # -- reading ------------------------------------------------------------------------

    async def search(
        self, query: str, platform: str, os: str | None = None, limit: int = 5
    ) -> list[Hit]:
        """The ``limit`` best hits for ``query`` on ``platform``: solutions, failures and
        reference chunks of that platform (and reference for any), ordered as the module
        says (cosine score plus a bonus for solutions, more for the same ``os``)."""
        if limit < 1:
            return []
        [vector] = await self._vectors([query])
        hits: list[Hit] = []
        for solution, score in await self._solutions(vector, platform, os, limit, None):
            hits.append(Hit("solution", score, render_solution(solution), solution=solution))
        for point in await self._query(FAILURES, vector, _platform_filter(platform), limit):
            failure = _failure_of(point.payload)
            if failure is not None:
                hits.append(Hit("failure", point.score, render_failure(failure), failure=failure))
        reference = _platform_filter(platform, ANY_PLATFORM)
        for point in await self._query(REFERENCE, vector, reference, limit):
            payload = point.payload or {}
            text, source = payload.get("text"), payload.get("source")
            if isinstance(text, str) and isinstance(source, str):
                hits.append(Hit("reference", point.score, _clip(text, TEXT_CAP), source=source))
        hits.sort(key=lambda h: (-(h.score + _bonus(h, os)), _KIND_ORDER[h.kind]))
        return hits[:limit]

    async def solutions_for(
        self,
        goal_description: str,
        platform: str,
        os: str | None,
        min_score: float = 0.6,
        *,
        limit: int = 5,
    ) -> list[Solution]:
        """Verified solutions of ``platform`` whose goal scores at least ``min_score``
        (cosine) against ``goal_description``, best first (same ``os`` bonus as in
        search): for the loop's "retrieved tool, the model fills only params" path."""
        if limit < 1:
            return []
        [vector] = await self._vectors([goal_description])
        found = await self._solutions(vector, platform, os, limit, min_score)
        return [solution for solution, _ in found]

    async def counts(self) -> dict[str, int]:
        """Points stored per kind: ``{"solutions": n, "failures": n, "reference": n}``."""
        client = self._open_client()
        out: dict[str, int] = {}
        for key, name in zip(("solutions", "failures", "reference"), COLLECTIONS, strict=True):
            if name not in self._dims:
                out[key] = 0
                continue
            with self._answers():
                out[key] = (await client.count(name, exact=True)).count
        return out

    # -- the parts ----------------------------------------------------------------------

    def _open_client(self) -> AsyncQdrantClient:
        if self._client is None:
            raise RuntimeError("the knowledge base is not open (use: async with ...)")
        return self._client

    async def _learn_collections(self) -> None:
        client = self._open_client()
        for name in COLLECTIONS:
            with self._answers():
                if not await client.collection_exists(name):
                    continue
                info = await client.get_collection(name)
            vectors = info.config.params.vectors
            if not isinstance(vectors, models.VectorParams):
                raise KnowledgeError(self.where, f"{name} is not a collection FazAI made")
            self._dims[name] = vectors.size

    async def _vectors(self, texts: Sequence[str]) -> list[list[float]]:
        """The embedder's vectors for ``texts``, refused unless one finite, non-zero
        vector per text, all of one dimension."""
        vectors = await self._embed(list(texts))
        if len(vectors) != len(texts):
            raise KnowledgeError(
                self.where, f"the embedder gave {len(vectors)} vectors for {len(texts)} texts"
            )
        if len({len(v) for v in vectors}) > 1 or any(not v for v in vectors):
            raise KnowledgeError(self.where, "the embedder gave vectors of mixed or no size")
        out = [[float(x) for x in v] for v in vectors]
        for v in out:
            if not all(math.isfinite(x) for x in v) or not any(v):
                raise KnowledgeError(
                    self.where, "the embedder gave a vector that is zero or not finite"
                )
        return out

    def _exists(self, name: str, dim: int) -> bool:
        """Whether collection ``name`` exists; refuses a vector of another dimension."""
        known = self._dims.get(name)
        if known is not None and known != dim:
            raise KnowledgeError(
                self.where,
                f"the embedder gives {dim}-dimensional vectors but {name} holds "
                f"{known}-dimensional ones: the embedding model changed; give FazAI a new "
                "knowledge base (or remove this one) so it is built again",
            )
        return known is not None

    async def _ensure(self, name: str, dim: int) -> None:
        if self._exists(name, dim):
            return
        client = self._open_client()
        async with self._creating:
            if self._exists(name, dim):  # another task made it while we waited
                return
            with self._answers():
                await client.create_collection(
                    name,
                    vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
                )
                if self.url is not None:  # local mode has no payload indexes (it warns)
                    for field in ("platform", "os"):
                        await client.create_payload_index(
                            name, field, field_schema=models.PayloadSchemaType.KEYWORD
                        )
            self._dims[name] = dim

    async def _upsert(self, name: str, points: list[models.PointStruct]) -> None:
        first = points[0].vector
        assert isinstance(first, list)
        await self._ensure(name, len(first))
        client = self._open_client()
        with self._answers():
            await client.upsert(name, points=points, wait=True)

    async def _query(
        self,
        name: str,
        vector: list[float],
        where: models.Filter,
        limit: int,
        threshold: float | None = None,
    ) -> list[models.ScoredPoint]:
        if not self._exists(name, len(vector)):
            return []
        client = self._open_client()
        with self._answers():
            answer = await client.query_points(
                name,
                query=vector,
                query_filter=where,
                limit=limit,
                score_threshold=threshold,
                with_payload=True,
            )
        return list(answer.points)

    async def _solutions(
        self,
        vector: list[float],
        platform: str,
        os: str | None,
        limit: int,
        threshold: float | None,
    ) -> list[tuple[Solution, float]]:
        """The best solutions of ``platform`` by score plus the same-OS bonus. Same-OS
        and other solutions are queried apart, ``limit`` each: the top ``limit`` of the
        merged ranking is always among them, whatever the bonus reorders."""
        if os is None:
            wheres = [_platform_filter(platform)]
        else:
            same = models.FieldCondition(key="os", match=models.MatchValue(value=os))
            base = _platform_filter(platform)
            wheres = [
                models.Filter(must=[*_conditions(base), same]),
                models.Filter(must=_conditions(base), must_not=[same]),
            ]
        found: list[tuple[Solution, float]] = []
        for where in wheres:
            for point in await self._query(SOLUTIONS, vector, where, limit, threshold):
                solution = _solution_of(point.payload)
                if solution is not None:
                    found.append((solution, point.score))
        found.sort(key=lambda f: -(f[1] + (SAME_OS_BONUS if _same_os(f[0].os, os) else 0.0)))
        return found[:limit]

    async def _ids(self, name: str) -> set[str]:
        if name not in self._dims:
            return set()
        client = self._open_client()
        ids: set[str] = set()
        offset: models.ExtendedPointId | None = None
        while True:
            with self._answers():
                points, offset = await client.scroll(
                    name, limit=256, offset=offset, with_payload=False, with_vectors=False
                )
            ids.update(str(p.id) for p in points)
            if offset is None:
                return ids

    @contextlib.contextmanager
    def _answers(self) -> Iterator[None]:
        """Qdrant's failures (a server's, mostly) as FazAI's: never quoting the answer's
        body or the API key."""
        try:
            yield
        except ResourceExhaustedResponse as exc:
            error = KnowledgeUnavailableError(self.where, "the server is rate limiting (429)")
            error.delay = float(exc.retry_after_s)
            raise error from exc
        except UnexpectedResponse as exc:
            status = exc.status_code or 0
            said = f"{status} {exc.reason_phrase}".strip()
            if status in (401, 403):
                raise KnowledgeError(
                    self.where, f"the server refused the API key ({said})"
                ) from exc
            if status == 429 or status >= 500:
                raise KnowledgeUnavailableError(self.where, f"the server failed ({said})") from exc
            raise KnowledgeError(self.where, f"the server refused a request ({said})") from exc
        except ResponseHandlingException as exc:
            cause = type(exc.source).__name__
            raise KnowledgeUnavailableError(
                self.where, f"the server did not answer ({cause})"
            ) from exc


# -- ids, payloads and renderings -------------------------------------------------------


def solution_id(solution: Solution) -> str:
    """The point id of a solution: uuid5 of platform, tool, params and goal."""
    key = [solution.platform, solution.tool, _plain(solution.params, "params"), solution.goal]
    return str(uuid.uuid5(_NAMESPACE, "solution\0" + _canonical(key)))


def failure_id(failure: Failure) -> str:
    """The point id of a failure: uuid5 of platform, spec, params, goal and why."""
    key = [
        failure.platform,
        _plain(failure.spec, "spec"),
        _plain(failure.params, "params"),
        failure.goal,
        _why(failure.why),
    ]
    return str(uuid.uuid5(_NAMESPACE, "failure\0" + _canonical(key)))


def chunk_id(chunk: Chunk) -> str:
    """The point id of a reference chunk: uuid5 of its source and its text's SHA-256."""
    digest = hashlib.sha256(chunk.text.encode()).hexdigest()
    return str(uuid.uuid5(_NAMESPACE, f"reference\0{chunk.source}\0{digest}"))


def render_solution(s: Solution) -> str:
    """A solution as a prompt shows it, at most :data:`TEXT_CAP` characters."""
    where = s.platform + (f", {s.os}" if s.os else "")
    lines = [
        f"Verified solution ({where}) for the goal: {_clip(s.goal, 300)}",
        f"Tool {s.tool}: {_clip(str(s.spec.get('description', '')), 600)}",
    ]
    schema = _param_schema(s.spec)
    if schema:
        lines.append(f"Tool params: {schema}")
    lines.append(f"Params used: {_clip(_canonical(_plain(s.params, 'params')), 300)}")
    run = f", run {s.run}" if s.run is not None else ""
    lines.append(f"Verified on {s.node} at {s.verified_at}{run}")
    return _clip("\n".join(lines), TEXT_CAP)


def render_failure(f: Failure) -> str:
    """A failure as a prompt shows it, at most :data:`TEXT_CAP` characters."""
    where = f.platform + (f", {f.os}" if f.os else "")
    tried = f.spec.get("description")
    lines = [f"Failed attempt ({where}) for the goal: {_clip(f.goal, 300)}"]
    if isinstance(tried, str) and tried:
        lines.append(f"Tried: {_clip(tried, 400)}")
    if "apply" in f.spec:
        lines.append(f"Apply was: {_clip(_canonical(_plain(f.spec['apply'], 'spec')), 400)}")
    lines.append(f"Params: {_clip(_canonical(_plain(f.params, 'params')), 200)}")
    lines.append(f"Why it failed (on {f.node}): {_clip(_why(f.why), 400)}")
    return _clip("\n".join(lines), TEXT_CAP)


def _solution_embedding_text(s: Solution) -> str:
    # Queries are goal descriptions, and solutions_for's min_score means "how close is
    # this goal": the goal alone is embedded (a tool's description would dilute it).
    return s.goal


def _failure_embedding_text(f: Failure) -> str:
    return f.goal


def _solution_payload(s: Solution) -> dict[str, Any]:
    return {
        "v": PAYLOAD_VERSION,
        "goal": s.goal,
        "platform": s.platform,
        "os": s.os,
        "tool": s.tool,
        "spec": _plain(s.spec, "spec"),
        "params": _plain(s.params, "params"),
        "node": s.node,
        "verified_at": s.verified_at,
        "run": s.run,
    }


def _failure_payload(f: Failure) -> dict[str, Any]:
    return {
        "v": PAYLOAD_VERSION,
        "goal": f.goal,
        "platform": f.platform,
        "os": f.os,
        "spec": _plain(f.spec, "spec"),
        "params": _plain(f.params, "params"),
        "why": _why(f.why),
        "node": f.node,
    }


def _chunk_payload(c: Chunk) -> dict[str, Any]:
    return {
        "v": PAYLOAD_VERSION,
        "platform": c.platform,
        "source": c.source,
        "title": c.title,
        "text": c.text,
    }


def _solution_of(payload: Mapping[str, Any] | None) -> Solution | None:
    """The solution a payload holds; None (and a log line) for one that is not one."""
    try:
        assert payload is not None
        run = payload.get("run")
        return Solution(
            goal=str(payload["goal"]),
            platform=str(payload["platform"]),
            os=_optional_str(payload.get("os")),
            tool=str(payload["tool"]),
            spec=dict(payload["spec"]),
            params=dict(payload["params"]),
            node=str(payload["node"]),
            verified_at=str(payload["verified_at"]),
            run=run if isinstance(run, int) and not isinstance(run, bool) else None,
        )
    except (AssertionError, KeyError, TypeError, ValueError):
        log.warning("knowledge base: skipped a solution point that is not one")
        return None


def _failure_of(payload: Mapping[str, Any] | None) -> Failure | None:
    try:
        assert payload is not None
        return Failure(
            goal=str(payload["goal"]),
            platform=str(payload["platform"]),
            os=_optional_str(payload.get("os")),
            spec=dict(payload["spec"]),
            params=dict(payload["params"]),
            why=str(payload["why"]),
            node=str(payload["node"]),
        )
    except (AssertionError, KeyError, TypeError, ValueError):
        log.warning("knowledge base: skipped a failure point that is not one")
        return None


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _platform_filter(*platforms: str) -> models.Filter:
    if len(platforms) == 1:
        match: models.MatchValue | models.MatchAny = models.MatchValue(value=platforms[0])
    else:
        match = models.MatchAny(any=list(platforms))
    return models.Filter(must=[models.FieldCondition(key="platform", match=match)])


def _conditions(where: models.Filter) -> list[models.Condition]:
    must = where.must
    if must is None:
        return []
    return list(must) if isinstance(must, list) else [must]


def _same_os(found: str | None, wanted: str | None) -> bool:
    return wanted is not None and found == wanted


def _bonus(hit: Hit, os: str | None) -> float:
    if hit.solution is None:
        return 0.0
    return SOLUTION_BONUS + (SAME_OS_BONUS if _same_os(hit.solution.os, os) else 0.0)


def _param_schema(spec: Mapping[str, Any]) -> str:
    params = spec.get("params")
    properties = params.get("properties") if isinstance(params, Mapping) else None
    if not isinstance(properties, Mapping):
        return ""
    required = params.get("required", ()) if isinstance(params, Mapping) else ()
    parts = []
    for name, schema in properties.items():
        kind = schema.get("type", "any") if isinstance(schema, Mapping) else "any"
        parts.append(f"{name} ({kind}{', required' if name in required else ''})")
    return _clip(", ".join(parts), 300)


def _why(why: str) -> str:
    return _clip(mask_hashes(why), WHY_CAP)


def _clip(text: str, cap: int) -> str:
    return text if len(text) <= cap else text[: cap - 1] + "…"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _plain(value: Any, what: str) -> Any:
    """``value`` as plain JSON (Mappings to dicts, tuples to lists); ValueError when it
    holds anything else, or a number that is not finite."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v, what) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, what) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{what} is not JSON: {value!r}")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise ValueError(f"{what} is not JSON: holds a {type(value).__name__}")


def _redacted(url: str) -> str:
    """``url`` without a user or password in it."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _held(folder: Path) -> bool:
    """Whether another client holds the lock of the local storage ``folder``: looked at
    before qdrant opens it, because qdrant reads every collection's SQLite file first and,
    refused, leaves those and its lock file open (a retry loop would leak them)."""
    try:
        with (folder / ".lock").open("r+") as file:
            try:
                portalocker.lock(
                    file, portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING
                )
            except portalocker.exceptions.LockException:
                return True
            portalocker.unlock(file)
    except OSError:  # no such folder or lock file yet: nobody holds it
        return False
    return False


def _locked(exc: RuntimeError) -> bool:
    """Whether qdrant's local mode refused the folder because another client holds it
    (it raises a RuntimeError inside its handler of portalocker's LockException)."""
    return isinstance(exc.__context__, portalocker.exceptions.LockException) or (
        "already accessed by another instance" in str(exc)
    )


# -- the reference corpus ---------------------------------------------------------------

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_PLATFORM_MARK = re.compile(r"^<!--\s*platform:\s*([a-z]+)\s*-->\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def shipped_corpus() -> Traversable:
    """The folder of the reference corpus that ships with FazAI."""
    return resources.files("controller.agent").joinpath("reference")


def reference_chunks(corpus: Traversable | None = None) -> list[Chunk]:
    """The chunks of every ``*.md`` file in ``corpus`` (default: the shipped one), in
    file order: one per heading with text under it."""
    folder = corpus if corpus is not None else shipped_corpus()
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".md")), key=lambda f: f.name)
    out: list[Chunk] = []
    for file in files:
        out.extend(chunks_of(file.name, file.read_text(encoding="utf-8")))
    return out


def chunks_of(name: str, text: str) -> list[Chunk]:
    """``text`` (markdown, file ``name``) cut at its headings. A first line
    ``<!-- platform: linux -->`` says which platform its chunks are for (default: any);
    a heading inside a code fence is not one."""
    lines = text.splitlines()
    platform = ANY_PLATFORM
    if lines and (mark := _PLATFORM_MARK.match(lines[0])):
        platform = mark.group(1)
        lines = lines[1:]
    out: list[Chunk] = []
    trail: dict[int, str] = {}
    body: list[str] = []
    fenced = False

    def flush() -> None:
        content = "\n".join(body).strip()
        body.clear()
        if not content or not trail:
            return
        title = " > ".join(trail[level] for level in sorted(trail))
        source = f"{name}#{_slug(trail[max(trail)])}"
        out.append(Chunk(source, title, platform, f"{title}\n\n{content}"))

    for line in lines:
        if _FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else _HEADING.match(line)
        if heading is None:
            body.append(line)
            continue
        flush()
        level = len(heading.group(1))
        trail = {k: v for k, v in trail.items() if k < level}
        trail[level] = heading.group(2)
    flush()
    return out


def _slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")
