"""A model's settings sections: fields without items (Unbound's ``general`` and
``advanced``), read in the model's whole ``get`` and written by its ``set``.

``set`` is ``ApiMutableModelControllerBase::setAction()``: the body's wrapper (``{"unbound":
{"general": {...}}}``) is set on the model (unknown keys ignored, a list or object for a
scalar field a PHP error), the model is validated, and then either ``{"result":
"failed", "validations": {"unbound.general.port": "..."}}`` with nothing changed, or the
configuration saved (a new backup, only when a value changed) and ``{"result":
"saved"}``. Nothing is live before the subsystem's reconfigure, as with items.

Only the fields a tool is likely to set are kept; like every unknown key, the others are
ignored on write and absent on read.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from controller.testing.opnsense.fields import Context, Field, check_field, normalize, render

if TYPE_CHECKING:
    from controller.testing.opnsense.state import EmulatorState

Settings = dict[str, dict[str, str]]  # "unbound.general" -> field -> value


@dataclass(frozen=True)
class Section:
    model: str  # the wrapper of get and set bodies: unbound
    name: str  # general, advanced
    subsystem: str  # what reconfigure brings live
    fields: tuple[Field, ...]

    @property
    def key(self) -> str:
        return f"{self.model}.{self.name}"


def _bool(name: str, default: str = "0", required: bool = False) -> Field:
    # A BooleanField holds "0" until set: the API never answers "" for one.
    return Field(name, "bool", default=default, required=required)


# Unbound.xml (``//OPNsense/unboundplus``), the same on 24.7 to 26.7 for these fields.
SECTIONS: tuple[Section, ...] = (
    Section(
        "unbound",
        "general",
        "unbound",
        (
            _bool("enabled", "0", required=True),
            # PortField without EnableWellKnown/EnableRanges: a number 1..65535.
            Field(
                "port", "int", default="53", required=True, low=1, high=65535, message="port_number"
            ),
            _bool("stats"),
            _bool("dnssec"),
            _bool("dns64"),
            _bool("noarecords"),
            _bool("regdhcp"),
            _bool("regdhcpstatic"),
            _bool("txtsupport"),
            _bool("cacheflush"),
            Field(
                "local_zone_type",
                "option",
                default="transparent",
                required=True,
                options=tuple(
                    (o, o)
                    for o in (
                        "transparent",
                        "always_nxdomain",
                        "always_refuse",
                        "always_transparent",
                        "deny",
                        "inform",
                        "inform_deny",
                        "nodefault",
                        "refuse",
                        "static",
                        "typetransparent",
                    )
                ),
            ),
            _bool("enable_wpad"),
        ),
    ),
    Section(
        "unbound",
        "advanced",
        "unbound",
        (
            _bool("hideidentity"),
            _bool("hideversion"),
            _bool("prefetch"),
            _bool("prefetchkey"),
            _bool("dnssecstripped"),
            _bool("aggressivensec", "1", required=True),
            _bool("serveexpired"),
            _bool("qnameminstrict"),
            _bool("logqueries"),
            _bool("logreplies"),
        ),
    ),
)

# What a stock installation's config.xml holds besides the model defaults.
_STOCK = {"unbound.general": {"enabled": "1"}}


def initial() -> Settings:
    """The settings of a freshly installed firewall."""
    out: Settings = {}
    for section in SECTIONS:
        values = {f.name: f.default for f in section.fields}
        values.update(_STOCK.get(section.key, {}))
        out[section.key] = values
    return out


def sections_of(model: str) -> tuple[Section, ...]:
    return tuple(s for s in SECTIONS if s.model == model)


def _context(state: EmulatorState, values: Mapping[str, str]) -> Context:
    return Context(state.version, values, [], {}, state.interfaces)


def nodes(state: EmulatorState, model: str) -> dict[str, Any]:
    """The sections of ``model`` as its ``get`` shows them (option maps, "0"/"1")."""
    out: dict[str, Any] = {}
    for section in sections_of(model):
        values = state.settings[section.key]
        ctx = _context(state, values)
        out[section.name] = {f.name: render(f, values.get(f.name, ""), ctx) for f in section.fields}
    return out


def _set_nodes(section: Section, values: dict[str, str], data: Mapping[str, Any]) -> None:
    for f in section.fields:
        if f.name not in data or data[f.name] is None:
            continue
        value = data[f.name]
        if isinstance(value, list | dict):
            # A PHP error upstream: the dispatcher answers a plain 500.
            raise ValueError(f"Invalid input type for {f.name}: expected a single value")
        if value is True:
            text = "1"
        elif value is False:
            text = ""
        elif isinstance(value, float) and value.is_integer():
            text = str(int(value))
        else:
            text = str(value)
        values[f.name] = normalize(f, text)


def set_model(state: EmulatorState, model: str, data: Any, who: str, where: str) -> dict[str, Any]:
    """``setAction()`` of ``model`` with the body's wrapper ``data``."""
    with state.lock:
        proposed = copy.deepcopy(state.settings)
        if isinstance(data, Mapping):
            for section in sections_of(model):
                given = data.get(section.name)
                if isinstance(given, Mapping):
                    _set_nodes(section, proposed[section.key], given)
        validations: dict[str, str | list[str]] = {}
        for section in sections_of(model):
            values = proposed[section.key]
            ctx = _context(state, values)
            for f in section.fields:
                found = check_field(f, ctx)
                if found:
                    key = f"{model}.{section.name}.{f.name}"
                    validations[key] = found[0] if len(found) == 1 else found
        if validations:
            return {"result": "failed", "validations": validations}
        if proposed != state.settings:
            state.settings = proposed
            state.save(f"{where} made changes", who)
        return {"result": "saved"}
