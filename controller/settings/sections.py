"""Sections of ``fazai.yaml`` that other packages own, and the registry that composes
them into the config.

A package that reads a section ships its schema as
``controller/<package>/schemas/<section>.schema.json`` and registers the section from
its ``settings`` module, with its ``from_config(value) -> Settings`` (see
:meth:`Section.parse` for the arguments it may take): the config loader, below those
packages, knows them only through this registry, and the entry points (``fazai serve``
and ``serve --sandbox``, the test session) import the owners first
(:func:`controller.daemon.register_sections`). The loader validates the section with
that schema (through the settings kit: a schema refers to the shared duration by
``$ref``) and hands the Settings on; what ``from_config`` finds beyond the schema it
raises as a :class:`~controller.errors.SettingsError`, which the loader pins to the
file's lines. Loading a file with a section no owner registered is refused (a
programming error of the entry point, never passed through unchecked).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from controller.diagnostics import Location


@dataclass(frozen=True)
class Section:
    name: str  # the key in fazai.yaml
    package: str  # the package that reads it (its schemas/ folder holds the section's)
    parser: Callable[..., Any]  # the package's settings.from_config
    whole: bool = False  # its from_config takes the whole file's mapping, not the section

    def schema(self) -> Mapping[str, Any]:
        text = resources.files(self.package).joinpath(f"schemas/{self.name}.schema.json")
        loaded: Mapping[str, Any] = json.loads(text.read_text(encoding="utf-8"))
        return loaded

    def parse(
        self,
        config: Mapping[str, Any],
        *,
        base: Path | None = None,
        where: Callable[[tuple[str | int, ...]], Location] | None = None,
        file: str = "",
    ) -> Any:
        """The package's Settings for this section of ``config`` (the whole file's
        mapping).

        The parser gets the section's value (or, for a ``whole`` section, the whole
        mapping), plus ``base`` (the config file's folder) and ``where`` (field path from
        the root -> file position) and ``file`` (the config file's path, for the errors
        it raises) when its signature takes them. Whatever it raises
        propagates; the loader maps it to positions."""
        value = config.get(self.name)
        accepted = inspect.signature(self.parser).parameters
        options: dict[str, Any] = {}
        if "base" in accepted and base is not None:
            options["base"] = base
        if "where" in accepted and where is not None:
            options["where"] = where
        if "file" in accepted and file:
            options["file"] = file
        return self.parser(config if self.whole else value, **options)


# The order sections are read in (and their problems listed); names only, owners register.
ORDER = ("server", "reports", "notifications", "forges", "models")
_registered: dict[str, Section] = {}


def register(section: Section) -> None:
    """Called by the owning package's settings module when it is imported."""
    if section.name not in ORDER:
        raise ValueError(f"{section.name!r} is not a section of fazai.yaml")
    _registered[section.name] = section


def registered() -> tuple[Section, ...]:
    return tuple(_registered[n] for n in ORDER if n in _registered)


def get(name: str) -> Section | None:
    return _registered.get(name)
