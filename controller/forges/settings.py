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

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from controller.errors import InvalidInputError
from controller.forges.base import STATUS_CONTEXT
from controller.forges.clients import canonical
from controller.forges.http import DEFAULT_TIMEOUT, ForgeTarget
from controller.model import ecma
from controller.model.diagnostics import Diagnostic, Location, format_path
from controller.secrets import resolve

SECTION = "forges"
DEFAULT_API_URLS = {"github": "https://api.github.com", "gitlab": "https://gitlab.com/api/v4"}
DEFAULT_TOKEN_ENV = {"github": "GITHUB_TOKEN", "gitlab": "GITLAB_TOKEN", "gitea": "GITEA_TOKEN"}

FieldPath = tuple[str | int, ...]
Where = Callable[[FieldPath], Location]


@cache
def schema() -> Mapping[str, Any]:
    text = resources.files("controller.forges").joinpath("schemas/forges.schema.json").read_text()
    loaded: Mapping[str, Any] = json.loads(text)
    return loaded


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
                timeout=float(entry.get("timeout", DEFAULT_TIMEOUT)),
                verify=verify,
            )
        )
    if problems:
        raise InvalidInputError(problems)
    return ForgesSettings(tuple(out))


def _problems(section: Any, locate: Where) -> list[Diagnostic]:
    validator = ecma.validator_class(schema())(schema())
    found: list[Diagnostic] = []
    for error in sorted(validator.iter_errors(section), key=lambda e: list(e.absolute_path)):
        path: FieldPath = (SECTION, *error.absolute_path)
        message = _message(error)
        for extra in _refused(error):
            path, message = (*path, extra[0]), extra[1]
        found.append(Diagnostic(locate(path), message, path=format_path(path)))
    return found


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "oneOf" and list(error.absolute_path)[-1:] == ["tokenRef"]:
        return "give exactly one of env or file"
    if error.validator == "enum" and isinstance(error.validator_value, list):
        return f"{error.instance!r} is not one of: {', '.join(map(str, error.validator_value))}"
    return str(error.message)


def _refused(error: jsonschema.ValidationError) -> Sequence[tuple[str, str]]:
    if error.validator != "additionalProperties" or not isinstance(error.instance, Mapping):
        return ()
    refused = error.schema.get("x-fazai-refused", {}) if isinstance(error.schema, dict) else {}
    allowed = set(error.schema.get("properties", {})) if isinstance(error.schema, dict) else set()
    extras = [k for k in error.instance if k not in allowed]
    return [
        (k, refused.get(k) or f"unknown field {k!r}; allowed: {', '.join(sorted(allowed))}")
        for k in extras[:1]
    ]
