"""Sections of ``fazai.yaml`` that other packages own, composed into the config.

Each package that reads a section ships its schema as
``controller/<package>/schemas/<section>.schema.json`` and parses it with
``controller.<package>.settings.from_config(value) -> Settings`` (see :meth:`Section.parse`
for the arguments it may take). The loader validates the
section with that schema (through the settings kit, :mod:`controller.settings`: a
schema refers to the shared duration by ``$ref``) and hands the Settings on; what
``from_config`` finds beyond the schema it raises as a
:class:`~controller.errors.SettingsError`, which the loader pins to the file's lines.
While a package is not installed its section is only checked for its JSON type and
passed through as plain data. A new section is one more :class:`Section` in
:data:`SECTIONS`.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.model.diagnostics import Location


@dataclass(frozen=True)
class Section:
    name: str  # the key in fazai.yaml
    package: str  # the package that reads it
    whole: bool = False  # its from_config takes the whole file's mapping, not the section

    def schema_file(self) -> Path | None:
        """The package's schema of this section, when the package is installed."""
        try:
            spec = importlib.util.find_spec(self.package)
        except ImportError:
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        for folder in spec.submodule_search_locations:
            path = Path(folder) / "schemas" / f"{self.name}.schema.json"
            if path.is_file():
                return path
        return None

    def schema(self) -> Mapping[str, Any] | None:
        path = self.schema_file()
        if path is None:
            return None
        loaded: Mapping[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return loaded

    def parser(self) -> Any | None:
        """``from_config`` of the package's ``settings`` module, when there is one."""
        module_name = f"{self.package}.settings"
        try:
            if importlib.util.find_spec(module_name) is None:
                return None
        except ImportError:
            return None
        module = importlib.import_module(module_name)
        return getattr(module, "from_config", None)

    def parse(
        self,
        config: Mapping[str, Any],
        *,
        base: Path | None = None,
        where: Callable[[tuple[str | int, ...]], Location] | None = None,
        file: str = "",
    ) -> Any:
        """The package's Settings for this section of ``config`` (the whole file's
        mapping), or the section's plain value while the package is absent.

        The parser gets the section's value (or, for a ``whole`` section, the whole
        mapping), plus ``base`` (the config file's folder) and ``where`` (field path from
        the root -> file position) and ``file`` (the config file's path, for the errors
        it raises) when its signature takes them. Whatever it raises
        propagates; the loader maps it to positions."""
        value = config.get(self.name)
        parser = self.parser()
        if parser is None:
            return value
        accepted = inspect.signature(parser).parameters
        options: dict[str, Any] = {}
        if "base" in accepted and base is not None:
            options["base"] = base
        if "where" in accepted and where is not None:
            options["where"] = where
        if "file" in accepted and file:
            options["file"] = file
        return parser(config if self.whole else value, **options)


SECTIONS: tuple[Section, ...] = (
    Section("server", "controller.server"),
    Section("reports", "controller.reports"),
    Section("notifications", "controller.notify"),
    Section("forges", "controller.forges", whole=True),
)


def get(name: str) -> Section | None:
    return next((s for s in SECTIONS if s.name == name), None)
