"""The ``models`` section of ``fazai.yaml``, parsed: which backends answer for each role,
in which order, and the worker's limits.

``from_config(value, base=..., file=...)`` checks the section against
``schemas/models.schema.json`` (the config loader composes the same file into the whole
config's schema, so a bad value is reported at its line) and then what a schema cannot
say: unique names, an embedded model that fits its role, a local file that exists. The
API key of an endpoint stays a reference (:class:`SecretRef`): it is read when a request
is sent, never kept in a settings object, which can therefore be logged.

With no section (``value`` None) the embedded defaults serve: :data:`DEFAULT_BRAIN` and
:data:`DEFAULT_EXECUTOR` from the shipped GGUF packages, :data:`DEFAULT_EMBEDDER`
through fastembed. Which of the two GGUF models is the brain was measured
(``bench/model_choice.py``: the one that answered more planning prompts with a valid and
sensible action under the same JSON-Schema grammar).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from controller.errors import SettingsError
from controller.llm.completion import Role
from controller.settings import check, sections
from controller.settings.check import FieldPath

SECTION = "models"

EmbeddedName = Literal["gemma3-270m", "smollm2-135m", "minilm"]
# Which embedded model may serve which role: a GGUF text model cannot embed well
# (llm-notes: unrelated texts scored 0.35-0.48), and MiniLM cannot generate.
EMBEDDED_ROLES: Mapping[str, frozenset[Role]] = {
    "gemma3-270m": frozenset({Role.BRAIN, Role.EXECUTOR}),
    "smollm2-135m": frozenset({Role.BRAIN, Role.EXECUTOR}),
    "minilm": frozenset({Role.EMBEDDER}),
}
# bench/model_choice.py: under the same action grammar both models stayed valid (40/40),
# SmolLM2-135M-Instruct chose the right action 12/20 and a sensible action+target 3/20,
# Gemma 3 270M (a base model) 8/20 and 0/20: SmolLM2 is the brain.
DEFAULT_BRAIN: EmbeddedName = "smollm2-135m"
DEFAULT_EXECUTOR: EmbeddedName = "gemma3-270m"
DEFAULT_EMBEDDER: EmbeddedName = "minilm"

DEFAULT_CONTEXT = 2048
DEFAULT_THREADS = 2
DEFAULT_SLOTS = 1
DEFAULT_QUEUE = 8
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_TOKEN_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 1
DEFAULT_FAILURES = 3
DEFAULT_RESET = 30.0
SOCKET_NAME = "fazai-model.sock"

_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kKMGT]i?B|B)?\s*")
_UNITS = {
    None: 1,
    "B": 1,
    "kB": 1000,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "kiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}
MIN_BUDGET = 64 * 1024**2  # below this not even the smallest shipped model loads


@dataclass(frozen=True)
class SecretRef:
    """``{env: NAME}`` or ``{file: PATH}``: where the API key is, never the key."""

    env: str | None = None
    file: str | None = None

    def as_mapping(self) -> dict[str, str]:
        return {"env": self.env} if self.env is not None else {"file": self.file or ""}

    def __str__(self) -> str:
        return f"env:{self.env}" if self.env is not None else f"file:{self.file}"


@dataclass(frozen=True)
class LocalModel:
    """A model the worker serves: an ``embedded`` one (a package ships it) or a ``path``."""

    embedded: EmbeddedName | None = None
    path: Path | None = None

    def __post_init__(self) -> None:
        if (self.embedded is None) == (self.path is None):
            raise ValueError("a LocalModel takes exactly one of embedded and path")


@dataclass(frozen=True)
class EndpointSettings:
    """An OpenAI-compatible API. ``url`` is its base, up to and including ``/v1``."""

    url: str
    model: str
    api_key: SecretRef | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    token_timeout: float = DEFAULT_TOKEN_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    response_format: Literal["json_schema", "json_object"] = "json_schema"


@dataclass(frozen=True)
class BackendSettings:
    """One entry of ``backends``: exactly one of ``local`` and ``endpoint``."""

    name: str
    role: Role
    local: LocalModel | None = None
    endpoint: EndpointSettings | None = None
    context_size: int = DEFAULT_CONTEXT
    threads: int = DEFAULT_THREADS
    slots: int = DEFAULT_SLOTS

    def __post_init__(self) -> None:
        if (self.local is None) == (self.endpoint is None):
            raise ValueError("a BackendSettings takes exactly one of local and endpoint")

    @property
    def model(self) -> str:
        """The model's name as answers report it."""
        if self.endpoint is not None:
            return self.endpoint.model
        assert self.local is not None
        return self.local.embedded or (self.local.path.name if self.local.path else self.name)


@dataclass(frozen=True)
class WorkerSettings:
    socket: Path | None = None  # None: default_socket()
    queue: int = DEFAULT_QUEUE

    @property
    def socket_path(self) -> Path:
        return self.socket if self.socket is not None else default_socket()


@dataclass(frozen=True)
class CircuitSettings:
    failures: int = DEFAULT_FAILURES
    reset: float = DEFAULT_RESET  # seconds open before a probe


def _default_backends() -> tuple[BackendSettings, ...]:
    return (
        BackendSettings(DEFAULT_BRAIN, Role.BRAIN, LocalModel(embedded=DEFAULT_BRAIN)),
        BackendSettings(DEFAULT_EXECUTOR, Role.EXECUTOR, LocalModel(embedded=DEFAULT_EXECUTOR)),
        BackendSettings(DEFAULT_EMBEDDER, Role.EMBEDDER, LocalModel(embedded=DEFAULT_EMBEDDER)),
    )


@dataclass(frozen=True)
class ModelsSettings:
    backends: tuple[BackendSettings, ...] = field(default_factory=_default_backends)
    memory_budget: int | None = None  # bytes; None: no limit
    worker: WorkerSettings = WorkerSettings()
    circuit: CircuitSettings = CircuitSettings()

    def chain(self, role: Role | str) -> tuple[BackendSettings, ...]:
        """The backends of ``role``, in the order they are tried."""
        wanted = Role(role)
        return tuple(b for b in self.backends if b.role is wanted)

    def backend(self, name: str) -> BackendSettings | None:
        return next((b for b in self.backends if b.name == name), None)


def default_socket() -> Path:
    """``$XDG_RUNTIME_DIR/fazai-model.sock`` (a per-user tmpfs, mode 0700), else beside
    the state file's default folder."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / SOCKET_NAME
    state = os.environ.get("FAZAI_STATE")
    if state:
        return Path(state).expanduser().parent / SOCKET_NAME
    home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(home) / "fazai" / SOCKET_NAME


def parse_size(value: object) -> int:
    """Bytes of ``1GiB``, ``512 MiB``, ``1.5GB`` or a plain integer; ValueError otherwise
    (never quoting a string: a secret pasted into the field must not reach a log)."""
    if isinstance(value, bool):
        raise ValueError("is not a size (bytes, or like 512MiB, 1GiB)")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        if match is not None:
            return int(float(match.group(1)) * _UNITS[match.group(2)])
    raise ValueError("is not a size (bytes, or like 512MiB, 1GiB)")


def schema() -> Mapping[str, Any]:
    return check.load_schema("controller.llm", "models.schema.json")


def from_config(
    section: Mapping[str, Any] | None, *, base: Path | None = None, file: str = ""
) -> ModelsSettings:
    """Settings of the ``models`` mapping (None: the embedded defaults). Relative paths
    are resolved against ``base`` (the config file's folder; default: the working
    directory). Raises SettingsError naming every field at fault."""
    if section is None:
        return ModelsSettings()
    check.check(SECTION, schema(), section, file)
    root = (base or Path.cwd()).expanduser()
    problems: list[tuple[FieldPath, str]] = []
    budget = None
    if "memoryBudget" in section:
        budget = parse_size(section["memoryBudget"])  # the schema's pattern held
        if budget < MIN_BUDGET:
            problems.append((("memoryBudget",), "must be at least 64MiB"))
    raw_worker = section.get("worker", {})
    worker = WorkerSettings(
        socket=_path(root, raw_worker["socket"]) if "socket" in raw_worker else None,
        queue=int(raw_worker.get("queue", DEFAULT_QUEUE)),
    )
    raw_circuit = section.get("circuit", {})
    circuit = CircuitSettings(
        failures=int(raw_circuit.get("failures", DEFAULT_FAILURES)),
        reset=check.duration(
            raw_circuit.get("reset", DEFAULT_RESET), ("circuit", "reset"), problems
        ),
    )
    backends: tuple[BackendSettings, ...] = ModelsSettings().backends
    if "backends" in section:
        seen: set[str] = set()
        parsed = []
        for index, raw in enumerate(section["backends"]):
            at: FieldPath = ("backends", index)
            if raw["name"] in seen:
                problems.append(((*at, "name"), f"{raw['name']!r} names two backends"))
            seen.add(raw["name"])
            parsed.append(_backend(raw, at, root, problems))
        backends = tuple(parsed)
    if problems:
        raise SettingsError(SECTION, problems, file)
    return ModelsSettings(backends, budget, worker, circuit)


def _backend(
    raw: Mapping[str, Any], at: FieldPath, root: Path, problems: list[tuple[FieldPath, str]]
) -> BackendSettings:
    role = Role(raw["role"])
    local = endpoint = None
    if "local" in raw:
        embedded = raw["local"].get("embedded")
        if embedded is not None and role not in EMBEDDED_ROLES[embedded]:
            fits = ", ".join(sorted(r.value for r in EMBEDDED_ROLES[embedded]))
            problems.append(((*at, "local", "embedded"), f"{embedded} serves only: {fits}"))
        path = _path(root, raw["local"]["path"]) if "path" in raw["local"] else None
        if path is not None and not path.exists():
            problems.append(((*at, "local", "path"), f"no such file or folder: {path}"))
        local = LocalModel(embedded=embedded, path=path)
    else:
        endpoint = _endpoint(raw["endpoint"], (*at, "endpoint"), root, problems)
    return BackendSettings(
        name=raw["name"],
        role=role,
        local=local,
        endpoint=endpoint,
        context_size=int(raw.get("contextSize", DEFAULT_CONTEXT)),
        threads=int(raw.get("threads", DEFAULT_THREADS)),
        slots=int(raw.get("slots", DEFAULT_SLOTS)),
    )


def _endpoint(
    raw: Mapping[str, Any], at: FieldPath, root: Path, problems: list[tuple[FieldPath, str]]
) -> EndpointSettings:
    ref = None
    if "apiKeyRef" in raw:
        given = raw["apiKeyRef"]
        ref = (
            SecretRef(env=given["env"])
            if "env" in given
            else SecretRef(file=str(_path(root, given["file"])))
        )
    return EndpointSettings(
        url=_url(raw["url"], (*at, "url"), problems),
        model=raw["model"],
        api_key=ref,
        connect_timeout=check.duration(
            raw.get("connectTimeout", DEFAULT_CONNECT_TIMEOUT), (*at, "connectTimeout"), problems
        ),
        token_timeout=check.duration(
            raw.get("tokenTimeout", DEFAULT_TOKEN_TIMEOUT), (*at, "tokenTimeout"), problems
        ),
        max_retries=int(raw.get("maxRetries", DEFAULT_MAX_RETRIES)),
        response_format=raw.get("responseFormat", "json_schema"),
    )


def _url(value: str, at: FieldPath, problems: list[tuple[FieldPath, str]]) -> str:
    """The base URL, read as httpx will read it: the schema's pattern cannot see an
    empty host (``http://:80/v1``), a bad port or a broken IPv6 literal. The value is not
    quoted in the problem (the field is named)."""
    problem = "is not an http(s) URL with a host (like http://10.0.0.5:11434/v1)"
    try:
        url = httpx.URL(value)
        port = url.port
    except (httpx.InvalidURL, ValueError):
        problems.append((at, problem))
        return value
    if url.scheme not in ("http", "https") or not url.host:
        problems.append((at, problem))
    elif port is not None and not 0 < port < 65536:
        problems.append((at, "has a port outside 1-65535"))
    elif url.userinfo or url.query or url.fragment:
        problems.append(
            (at, "holds user:password@, a query or a fragment: the key goes in apiKeyRef")
        )
    return value.rstrip("/")


def _path(root: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


# fazai.yaml's loader (below this package) knows the section only through this registration.
sections.register(sections.Section(SECTION, "controller.llm", from_config))
