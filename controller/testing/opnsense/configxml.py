"""A config.xml-like rendering of a backup, for ``download`` and ``diff``.

Deterministic (fields in model order, items in insertion order) so that diffs between
two backups show exactly the items that changed.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from controller.testing.opnsense.models import collections
from controller.testing.opnsense.state import Backup, EmulatorState

_SECTIONS = (
    ("alias", '    <Firewall>\n      <Alias version="1.0.1">', "      </Alias>"),
    ("rule", '      <Filter version="1.0.4">', "      </Filter>\n    </Firewall>"),
    ("host", '    <unboundplus version="1.0.12">', "    </unboundplus>"),
)


def render(state: EmulatorState, backup: Backup) -> str:
    colls = collections(state.version.name)
    lines = [
        '<?xml version="1.0"?>',
        "<opnsense>",
        "  <system>",
        f"    <hostname>{escape(state.hostname)}</hostname>",
        f"    <domain>{escape(state.domain)}</domain>",
        "  </system>",
        "  <revision>",
        f"    <username>{escape(backup.username)}</username>",
        f"    <time>{backup.time}</time>",
        f"    <description>{escape(backup.description)}</description>",
        "  </revision>",
        "  <OPNsense>",
    ]
    for kind, opening, closing in _SECTIONS:
        coll = colls[kind]
        outer, inner = coll.path
        lines.append(opening)
        lines.append(f"        <{outer}>")
        for uuid, item in backup.items[kind].items():
            lines.append(f"          <{inner} uuid={quoteattr(uuid)}>")
            for f in coll.fields:
                value = item.get(f.name, "")
                if value == "":
                    lines.append(f"            <{f.name}/>")
                else:
                    lines.append(f"            <{f.name}>{escape(value)}</{f.name}>")
            lines.append(f"          </{inner}>")
        lines.append(f"        </{outer}>")
        lines.append(closing)
    lines += ["  </OPNsense>", "</opnsense>", ""]
    return "\n".join(lines)
