"""A config.xml-like rendering of a backup, for ``download`` and ``diff``.

Deterministic (fields in model order, items in insertion order) so that diffs between
two backups show exactly the items that changed; :func:`running` renders the running
configuration without its revision, for tests that compare configurations byte for byte.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from controller.testing.opnsense.models import collections
from controller.testing.opnsense.settings import sections_of
from controller.testing.opnsense.state import Backup, EmulatorState

# The model whose settings sections open each item section's model (Unbound's general
# and advanced come before its hosts).
_SETTINGS_OF = {"host": "unbound"}

_SECTIONS = (
    ("alias", '    <Firewall>\n      <Alias version="1.0.1">', "      </Alias>"),
    ("rule", '      <Filter version="1.0.4">', "      </Filter>\n    </Firewall>"),
    ("host", '    <unboundplus version="1.0.12">', "    </unboundplus>"),
)


def running(state: EmulatorState) -> str:
    """The running configuration (saved or not), without a revision."""
    with state.lock:
        current = Backup("", "", "", state.items, state.settings)
        return _render(state, current, revision=False)


def render(state: EmulatorState, backup: Backup) -> str:
    return _render(state, backup, revision=True)


def _render(state: EmulatorState, backup: Backup, *, revision: bool) -> str:
    colls = collections(state.version.name)
    lines = [
        '<?xml version="1.0"?>',
        "<opnsense>",
        "  <system>",
        f"    <hostname>{escape(state.hostname)}</hostname>",
        f"    <domain>{escape(state.domain)}</domain>",
        "  </system>",
    ]
    if revision:
        lines += [
            "  <revision>",
            f"    <username>{escape(backup.username)}</username>",
            f"    <time>{backup.time}</time>",
            f"    <description>{escape(backup.description)}</description>",
            "  </revision>",
        ]
    lines.append("  <OPNsense>")
    for kind, opening, closing in _SECTIONS:
        coll = colls[kind]
        outer, inner = coll.path
        lines.append(opening)
        for section in sections_of(_SETTINGS_OF.get(kind, "")):
            values = backup.settings.get(section.key, {})
            lines.append(f"        <{section.name}>")
            for f in section.fields:
                lines.append(_leaf(f.name, values.get(f.name, ""), "          "))
            lines.append(f"        </{section.name}>")
        lines.append(f"        <{outer}>")
        for uuid, item in backup.items[kind].items():
            lines.append(f"          <{inner} uuid={quoteattr(uuid)}>")
            for f in coll.fields:
                lines.append(_leaf(f.name, item.get(f.name, ""), "            "))
            lines.append(f"          </{inner}>")
        lines.append(f"        </{outer}>")
        lines.append(closing)
    lines += ["  </OPNsense>", "</opnsense>", ""]
    return "\n".join(lines)


def _leaf(name: str, value: str, indent: str) -> str:
    return f"{indent}<{name}/>" if value == "" else f"{indent}<{name}>{escape(value)}</{name}>"
