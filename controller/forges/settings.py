"""The ``forges`` section of ``fazai.yaml``: where to post pull request plans.

    forges:
      - {type: github, tokenRef: {env: GITHUB_TOKEN}}
      - {type: gitea, name: home, apiUrl: https://git.example/api/v1,
         tokenRef: {file: /etc/fazai/gitea.token}, tls: {caBundle: /etc/fazai/ca.pem}}

Its JSON Schema is ``schemas/forges.schema.json`` beside this module (the core loader
validates the section against it with file and line); :func:`from_config` reads a
validated config into :class:`ForgesSettings`, and checks it again so a config built in
code gets the same errors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.diagnostics import Diagnostic, Location, format_path
from controller.errors import InvalidInputError
from controller.forges.base import STATUS_CONTEXT
from controller.forges.clients import canonical
from controller.forges.http import DEFAULT_TIMEOUT, ForgeTarget
from controller.secrets import resolve
from controller.settings import check, durations, sections

SECTION = "forges"
DEFAULT_API_URLS = {"github": "https://api.github.com", "gitlab": "https://gitlab.com/api/v4"}
DEFAULT_TOKEN_ENV = {"github": "GITHUB_TOKEN", "gitlab": "GITLAB_TOKEN", "gitea": "GITEA_TOKEN"}

MAX_TIMEOUT = 600.0

FieldPath = tuple[str | int, ...]
Where = Callable[[FieldPath], Location]


def schema() -> Mapping[str, Any]:
    return check.load_schema("controller.forges", "forges.schema.json")


@dataclass(frozen=True)
class ForgeSettings:
    type: str  # github, gitlab, gitea (forgejo is read as gitea)
    name: str
    api_url: str
    token_ref: Mapping[str, str] = field(repr=False)
    status_context: str = STATUS_CONTEXT
    timeout: float = DEFAULT_TIMEOUT
    verify: bool | str = True

    def target(self) -> ForgeTarget:
        """Resolve the token (SecretError names the reference, never the value)."""
        token = resolve(self.token_ref, self.name, "tokenRef")
        return ForgeTarget(self.type, self.api_url, token, self.timeout, self.verify)


@dataclass(frozen=True)
class ForgesSettings:
    forges: tuple[ForgeSettings, ...] = ()

    def get(self, name: str) -> ForgeSettings | None:
        """The entry named ``name``, or the only entry of that type."""
        named = [f for f in self.forges if f.name == name]
        if named:
            return named[0]
        typed = [f for f in self.forges if f.type == canonical_or_none(name)]
        return typed[0] if len(typed) == 1 else None


def canonical_or_none(name: str) -> str | None:
    try:
        return canonical(name)
    except ValueError:
        return None


def from_config(
    config: Mapping[str, Any], where: Where | None = None, base: Path | None = None
) -> ForgesSettings:
    """The ``forges`` section of a whole ``fazai.yaml`` mapping. ``where`` maps a field
    path (from the config's root) to its file position, for diagnostics; relative file
    paths (``tokenRef.file``, ``tls.caBundle``) are taken from ``base``, the config's
    folder, when given."""
    locate = where or (lambda path: Location("fazai.yaml"))

    def path_of(text: str) -> str:
        if base is None or text.startswith(("/", "~")):
            return text
        return str(base / text)

    section = config.get(SECTION, [])
    problems = _problems(section, locate)
    if problems:
        raise InvalidInputError(problems)
    out: list[ForgeSettings] = []
    names: dict[str, int] = {}
    for index, entry in enumerate(section):
        kind = canonical(entry["type"])
        name = entry.get("name", kind)
        if name in names:
            path: FieldPath = (SECTION, index, "name")
            problems.append(
                Diagnostic(
                    locate(path),
                    f"a second forge named {name!r} (the first is {SECTION}[{names[name]}]); "
                    "give each a distinct name",
                    path=format_path(path),
                )
            )
            continue
        names[name] = index
        api_url = entry.get("apiUrl") or DEFAULT_API_URLS.get(kind)
        if api_url is None:
            path = (SECTION, index)
            problems.append(
                Diagnostic(
                    locate(path),
                    f"a {entry['type']} forge needs apiUrl (https://HOST/api/v1)",
                    path=format_path(path),
                )
            )
            continue
        tls = entry.get("tls", {})
        verify: bool | str = bool(tls.get("verify", True))
        if verify and "caBundle" in tls:
            verify = path_of(str(tls["caBundle"]))
        try:
            timeout = durations.parse(entry.get("timeout", DEFAULT_TIMEOUT))
        except ValueError:  # what the schema cannot refuse: YAML's .inf
            timeout = -1.0
        if not 0 < timeout <= MAX_TIMEOUT:
            path = (SECTION, index, "timeout")
            problems.append(
                Diagnostic(
                    locate(path), "must be more than 0 and at most 10m", path=format_path(path)
                )
            )
            continue
        token_ref = dict(entry.get("tokenRef") or {"env": DEFAULT_TOKEN_ENV[kind]})
        if "file" in token_ref:
            token_ref["file"] = path_of(token_ref["file"])
        out.append(
            ForgeSettings(
                type=kind,
                name=name,
                api_url=str(api_url).rstrip("/"),
                token_ref=token_ref,
                status_context=entry.get("statusContext", STATUS_CONTEXT),
                timeout=timeout,
                verify=verify,
            )
        )
    if problems:
        raise InvalidInputError(problems)
    return ForgesSettings(tuple(out))


def _problems(section: Any, locate: Where) -> list[Diagnostic]:
    return [
        Diagnostic(locate((SECTION, *path)), message, path=format_path((SECTION, *path)))
        for path, message in check.problems(schema(), section)
    ]


# fazai.yaml's loader (below this package) knows the section only through this registration.
sections.register(sections.Section("forges", "controller.forges", from_config, whole=True))
