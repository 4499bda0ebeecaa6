"""``fazai.yaml``: the configuration of ``fazai serve``, loaded and checked like documents.

The file is read with the same hardened YAML reader as documents, validated against
``schemas/config.schema.json`` (with the sections other packages own composed in, see
:mod:`~controller.settings.sections`), then checked for what a schema cannot say. Every
problem is reported at once as ``FILE:LINE:COL: ControllerConfig: field.path: message``
in an :class:`~controller.errors.InvalidInputError`. Relative paths are relative to the
file's folder.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from controller.diagnostics import Diagnostic, format_path
from controller.errors import FazaiError, InvalidInputError, SettingsError
from controller.model.document import API_VERSION
from controller.model.yamlsource import FieldPath, RawDocument
from controller.reconcile.handle import Mode
from controller.settings import check, durations, sections
from controller.settings import read as reading
from controller.settings.read import InvalidConfigError

KIND = "ControllerConfig"
DEFAULT_FILE = "fazai.yaml"

# The schema's defaults (a unit test keeps them equal).
DEFAULT_DRIFT_CHECK = 600.0
DEFAULT_SETTLE = 0.1
DEFAULT_BACKOFF_INITIAL = 2.0
DEFAULT_BACKOFF_MAX = 300.0
DEFAULT_SHUTDOWN_GRACE = 120.0
DEFAULT_CONCURRENCY = 32
DEFAULT_BRANCH = "main"
DEFAULT_MODE = Mode.DETECT
DEFAULT_POLL = 60.0
DEFAULT_TIMEOUT = 60.0

_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+:")


@dataclass(frozen=True)
class SignatureConfig:
    allowed_signers: Path | None = None  # ssh-keygen allowed_signers file
    gpg_keys: tuple[Path, ...] = ()  # OpenPGP public key files


@dataclass(frozen=True)
class SourceConfig:
    name: str
    url: str  # a git URL, or the absolute path of a repository on this machine
    branch: str = DEFAULT_BRANCH
    path: str = ""  # folder inside the repository
    mode: Mode = DEFAULT_MODE
    node_modes: Mapping[str, Mode] = field(default_factory=dict)
    poll: float = DEFAULT_POLL  # seconds; 0: off
    watch: Path | None = None  # a working copy whose commits trigger
    prune: bool = False
    timeout: float = DEFAULT_TIMEOUT
    signatures: SignatureConfig | None = None

    def mode_for(self, node: str) -> Mode:
        return self.node_modes.get(node, self.mode)


@dataclass(frozen=True)
class ControllerConfig:
    sources: tuple[SourceConfig, ...]
    file: Path | None = None
    state: Path | None = None  # None: the store's default path
    cache_dir: Path | None = None  # None: the default git cache
    drift_check: float = DEFAULT_DRIFT_CHECK  # seconds; 0: off
    settle: float = DEFAULT_SETTLE
    backoff_initial: float = DEFAULT_BACKOFF_INITIAL
    backoff_max: float = DEFAULT_BACKOFF_MAX
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    concurrency: int = DEFAULT_CONCURRENCY
    # Section name -> its package's Settings (or the plain value while the package is
    # not installed); only sections present in the file.
    sections: Mapping[str, Any] = field(default_factory=dict)

    def source(self, name: str) -> SourceConfig | None:
        return next((s for s in self.sources if s.name == name), None)


@dataclass(frozen=True)
class Overrides:
    """Command-line flags that win over the file."""

    listen: str | None = None  # server.listen
    state: Path | None = None
    mode: Mode | None = None  # every node of every source (nodeModes included)
    poll: float | None = None  # every source


@cache
def base_schema() -> Mapping[str, Any]:
    text = resources.files("controller.reconcile").joinpath("schemas/config.schema.json")
    loaded: Mapping[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return loaded


def config_schema() -> dict[str, Any]:
    """The whole schema of fazai.yaml: the base, with the schema of each section whose
    package is installed in place of the section's placeholder."""
    schema = copy.deepcopy(dict(base_schema()))
    for section in sections.registered():
        sub = section.schema()
        # Kept as an embedded resource: its $id scopes its own "#/$defs/..." refs.
        schema["properties"][section.name] = {k: v for k, v in sub.items() if k != "$schema"}
    return schema


def load(path: Path, overrides: Overrides | None = None) -> ControllerConfig:
    """Read and check ``path``; InvalidInputError lists every problem, with positions."""
    raw = reading.read_file(path)
    config = _checked(raw, path.resolve().parent, overrides)
    return dataclasses.replace(config, file=path)


def parse(
    data: bytes, file: str, base: Path, overrides: Overrides | None = None
) -> ControllerConfig:
    return _checked(reading.read_bytes(data, file), base, overrides)


def _checked(raw: RawDocument, base: Path, overrides: Overrides | None) -> ControllerConfig:
    overrides = overrides or Overrides()
    value = _with_overrides(raw.value, overrides)
    problems = [
        Diagnostic(raw.location(path), message, KIND, format_path(path))
        for path, message in _schema_problems(value)
    ]
    if problems:
        raise InvalidConfigError(sorted(problems))
    checker = _Checker(raw, base)
    config = checker.build(value, overrides)
    if checker.problems:
        raise InvalidConfigError(sorted(checker.problems))
    return config


def _with_overrides(value: Mapping[str, Any], overrides: Overrides) -> dict[str, Any]:
    out = dict(value)
    if overrides.listen is not None:
        server = out.get("server")
        out["server"] = {**(server if isinstance(server, dict) else {}), "listen": overrides.listen}
    return out


@cache
def _validator() -> jsonschema.protocols.Validator:
    return check.validator(config_schema())


def _schema_problems(value: Any) -> Iterator[tuple[FieldPath, str]]:
    yield from check.explain_all(_validator().iter_errors(value))


class _Checker:
    """What the schema cannot say, and the typed config."""

    def __init__(self, raw: RawDocument, base: Path) -> None:
        self.raw = raw
        self.base = base
        self.problems: list[Diagnostic] = []

    def problem(self, path: FieldPath, message: str) -> None:
        self.problems.append(Diagnostic(self.raw.location(path), message, KIND, format_path(path)))

    def path(self, text: str) -> Path:
        expanded = Path(text).expanduser()
        return expanded if expanded.is_absolute() else (self.base / expanded).resolve()

    def duration(self, at: FieldPath, mapping: Mapping[str, Any], default: float) -> float:
        """The duration at ``at`` (its last part a key of ``mapping``); what the schema
        cannot refuse (YAML's ``.inf``) is a problem at its position, not a traceback."""
        try:
            return durations.parse(mapping.get(str(at[-1]), default))
        except ValueError as exc:
            self.problem(at, str(exc))
            return default

    def location(self, text: str) -> str:
        if "://" in text or _SCP_LIKE.match(text):
            return text
        return str(self.path(text))

    def build(self, value: Mapping[str, Any], overrides: Overrides) -> ControllerConfig:
        if value.get("apiVersion") != API_VERSION:  # pragma: no cover - the schema's const
            self.problem(("apiVersion",), f"expected {API_VERSION!r}")
        sources = tuple(
            self.source(i, s, overrides) for i, s in enumerate(value.get("sources", []))
        )
        names: dict[str, int] = {}
        for index, source in enumerate(sources):
            if source.name in names:
                self.problem(
                    ("sources", index, "name"),
                    f"duplicate source name {source.name!r} "
                    f"(first at sources[{names[source.name]}])",
                )
            names.setdefault(source.name, index)
        backoff = value.get("backoff", {})
        initial = self.duration(("backoff", "initial"), backoff, DEFAULT_BACKOFF_INITIAL)
        largest = self.duration(("backoff", "max"), backoff, DEFAULT_BACKOFF_MAX)
        if initial <= 0:
            self.problem(("backoff", "initial"), "must be more than 0")
        if largest < initial:
            self.problem(("backoff", "max"), "must be at least backoff.initial")
        state = overrides.state or (self.path(value["state"]) if "state" in value else None)
        return ControllerConfig(
            sources=sources,
            file=None,
            state=state,
            cache_dir=self.path(value["cacheDir"]) if "cacheDir" in value else None,
            drift_check=self.duration(("driftCheck",), value, DEFAULT_DRIFT_CHECK),
            settle=self.duration(("settle",), value, DEFAULT_SETTLE),
            backoff_initial=initial,
            backoff_max=largest,
            shutdown_grace=self.duration(("shutdownGrace",), value, DEFAULT_SHUTDOWN_GRACE),
            concurrency=int(value.get("concurrency", DEFAULT_CONCURRENCY)),
            sections=self.sections(value),
        )

    def source(self, index: int, value: Mapping[str, Any], overrides: Overrides) -> SourceConfig:
        at: FieldPath = ("sources", index)
        watch = self.path(value["watch"]) if "watch" in value else None
        if watch is not None and not (watch / ".git").exists():
            self.problem((*at, "watch"), f"{watch} is not a git working copy")
        if "url" in value:
            url = self.location(value["url"])
        elif watch is not None:
            url = str(watch)
        else:
            self.problem(at, "give url (a git URL or repository path) or watch (a working copy)")
            url = ""
        mode = Mode(value.get("mode", DEFAULT_MODE))
        node_modes = {str(k): Mode(v) for k, v in value.get("nodeModes", {}).items()}
        if overrides.mode is not None:
            mode, node_modes = overrides.mode, {}
        poll = self.duration((*at, "poll"), value, DEFAULT_POLL)
        if overrides.poll is not None:
            poll = overrides.poll
        return SourceConfig(
            name=value["name"],
            url=url,
            branch=str(value.get("branch", DEFAULT_BRANCH)).removeprefix("refs/heads/"),
            path=str(value.get("path", "")).strip("/"),
            mode=mode,
            node_modes=node_modes,
            poll=poll,
            watch=watch,
            prune=bool(value.get("prune", False)),
            timeout=self.duration((*at, "timeout"), value, DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT,
            signatures=self.signatures((*at, "signatures"), value.get("signatures")),
        )

    def signatures(self, at: FieldPath, value: Mapping[str, Any] | None) -> SignatureConfig | None:
        if value is None:
            return None
        signers = self.path(value["allowedSigners"]) if "allowedSigners" in value else None
        if signers is not None and not signers.is_file():
            self.problem((*at, "allowedSigners"), f"no such file: {signers}")
        keys = tuple(self.path(k) for k in value.get("gpgKeys", []))
        for i, key in enumerate(keys):
            if not key.is_file():
                self.problem((*at, "gpgKeys", i), f"no such file: {key}")
        return SignatureConfig(signers, keys)

    def sections(self, value: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in sections.ORDER:
            if name not in value:
                continue
            section = sections.get(name)
            if section is None:
                # Read unchecked, a section would start services on what nobody validated.
                raise RuntimeError(
                    f"fazai.yaml's {name!r} section has no registered owner: call "
                    "controller.daemon.register_sections() before loading the config"
                )
            try:
                out[name] = section.parse(
                    value, base=self.base, where=self.raw.location, file=self.raw.file
                )
            except SettingsError as exc:
                for inner, message in exc.problems:
                    self.problem((exc.section, *inner), message)
            except InvalidInputError as exc:
                self.problems.extend(
                    d if d.subject else dataclasses.replace(d, subject=KIND)
                    for d in exc.diagnostics
                )
            except (FazaiError, ValueError) as exc:
                for inner, message in _section_problems(exc):
                    self.problem((section.name, *inner), message)
        return out


def _section_problems(exc: Exception) -> list[tuple[FieldPath, str]]:
    """(path inside the section, message) of a package's settings error: its
    ``problems``, else its ``path`` and ``message``, else the whole section."""
    problems = getattr(exc, "problems", None)
    if isinstance(problems, list | tuple) and problems:
        return [(tuple(path), str(message)) for path, message in problems]
    path = getattr(exc, "path", ())
    message = str(getattr(exc, "message", None) or exc)
    return [(tuple(path) if isinstance(path, tuple | list) else (), message)]
