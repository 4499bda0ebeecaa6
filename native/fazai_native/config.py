"""The worker's config file: ``{"memory_budget": BYTES or null, "models": [ModelSpec]}``
(JSON). A model's ``path`` may be ``embedded:NAME`` (see :mod:`fazai_native.catalog`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fazai_native.protocol import ProtocolError
from fazai_native.residency import MAX_MODELS
from fazai_native.types import ModelSpec

MAX_CONFIG = 1 << 20


class ConfigError(ValueError):
    """A config file that cannot be read; the message names the field."""


@dataclass(frozen=True)
class Config:
    memory_budget: int | None = None
    models: tuple[ModelSpec, ...] = ()


def parse(value: Any) -> Config:
    if not isinstance(value, dict):
        raise ConfigError("the config must be a JSON object")
    unknown = sorted(set(value) - {"memory_budget", "models"})
    if unknown:
        raise ConfigError(f"unknown field {unknown[0]!r}")
    budget = value.get("memory_budget")
    if budget is not None and (
        isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0
    ):
        raise ConfigError("memory_budget: must be a positive number of bytes or null")
    models = value.get("models", [])
    if not isinstance(models, list):
        raise ConfigError("models: must be a list")
    if len(models) > MAX_MODELS:
        raise ConfigError(f"models: at most {MAX_MODELS} models may be declared")
    specs = []
    for i, item in enumerate(models):
        if not isinstance(item, dict):
            raise ConfigError(f"models[{i}]: must be an object")
        try:
            specs.append(ModelSpec.from_dict(item))
        except (ProtocolError, TypeError) as exc:
            raise ConfigError(f"models[{i}]: {exc}") from exc
    names = [s.name for s in specs]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"models: {name!r} is declared twice")
    return Config(budget, tuple(specs))


def load(path: str) -> Config:
    file = Path(path)
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_CONFIG + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    if len(raw) > MAX_CONFIG:
        raise ConfigError(f"{path} is larger than {MAX_CONFIG} bytes")
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not JSON: {exc}") from exc
    return parse(value)
