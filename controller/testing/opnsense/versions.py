"""The OPNsense releases the emulator imitates, and what differs between them.

Every difference is one field of :class:`Version`, read from opnsense/core at the release
tag, so a test can pick a release and a reader can see at once what that choice changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RowStyle = Literal["described", "raw"]
RuleSearch = Literal["fields3", "fields4", "floating", "all"]


@dataclass(frozen=True)
class Version:
    name: str
    product_version: str
    # Filter.xml: IntegerField 1..99999 until 25.1, FilterSequenceField 1..999999 from 25.7,
    # whose default is the highest sequence in use plus 100.
    sequence_max: int
    sequence_auto: bool
    # UIModelGrid: rows of display values until 25.1; raw values plus "%field" labels after.
    row_style: RowStyle
    # FilterController::searchRuleAction, which changed nearly every release.
    rule_search: RuleSearch
    # Filter.xml rule fields that appeared over time.
    rule_extended: bool  # statetype, interfacenot, multi-value nets, inet46, TCP/UDP
    inet46_label: str
    direction_any: bool
    # Alias.xml: urljson type, url auth fields.
    alias_urljson: bool
    # Unbound.xml host overrides.
    host_ttl: bool
    host_txt: bool
    host_addptr: bool
    host_dnsname: bool  # HostnameField IsDNSName/IpAllowed=N
    mx_label: str
    # FilterBaseController: savepoint/apply($revision)/cancelRollback/revert, gone in 26.7
    # (core PR 10411), where apply also reloads with skip_alias.
    rollback_api: bool

    @property
    def before_25_7(self) -> bool:
        return self.sequence_max == 99999

    @property
    def series(self) -> tuple[int, int]:
        major, minor = self.name.split(".")
        return int(major), int(minor)

    @property
    def rule_upload(self) -> bool:
        """FilterController::uploadRulesAction (CSV import of rules), new in 26.1."""
        return self.series >= (26, 1)

    @property
    def rule_upload_checks_uuid(self) -> bool:
        """importRecordSet refuses a malformed @uuid and importCsv skips blank lines (26.7)."""
        return self.series >= (26, 7)


VERSIONS: dict[str, Version] = {
    v.name: v
    for v in (
        Version(
            "24.7",
            "24.7.12",
            99999,
            False,
            "described",
            "fields3",
            False,
            "",
            False,
            False,
            False,
            False,
            False,
            False,
            "MX (Mail server)",
            True,
        ),
        Version(
            "25.1",
            "25.1.12",
            99999,
            False,
            "described",
            "fields4",
            True,
            "IPv4+IPv6",
            False,
            True,
            False,
            False,
            False,
            True,
            "MX (Mail server)",
            True,
        ),
        Version(
            "25.7",
            "25.7.11",
            999999,
            True,
            "raw",
            "floating",
            True,
            "IPv4+IPv6",
            False,
            True,
            True,
            False,
            False,
            True,
            "MX (Mail server)",
            True,
        ),
        Version(
            "26.1",
            "26.1.11",
            999999,
            True,
            "raw",
            "floating",
            True,
            "IPv4+IPv6",
            True,
            True,
            True,
            True,
            False,
            True,
            "MX (mail server)",
            True,
        ),
        Version(
            "26.7",
            "26.7.2",
            999999,
            True,
            "raw",
            "all",
            True,
            "any",
            True,
            True,
            True,
            True,
            True,
            True,
            "MX (mail server)",
            False,
        ),
    )
}

DEFAULT_VERSION = "26.1"


def get_version(name: str) -> Version:
    """The imitated release called ``name`` ("24.7" ... "26.7"); ValueError when unknown."""
    try:
        return VERSIONS[name]
    except KeyError:
        known = ", ".join(VERSIONS)
        raise ValueError(f"unknown OPNsense version {name!r}; known: {known}") from None
