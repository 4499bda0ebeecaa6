"""The static check that an NftTable definition is one table's body, and nothing more."""

from __future__ import annotations

import pytest

from controller.providers.linux import nftbody

GOOD = [
    "chain input {\n  type filter hook input priority 0; policy drop;\n"
    "  tcp dport { 22, 443 } accept\n}",
    # Braces inside comments and quoted strings are text, not structure.
    'chain c {\n  # } flush ruleset\n  comment "} table inet x {"\n}',
    'set blocked {\n  type ipv4_addr\n  elements = { 192.0.2.1 }\n  comment "multi\nline"\n}',
    "counter hits { packets 0 bytes 0 }\nflags dormant\nchain a { jump b; }\nchain b { }",
    # "owner" in a chain (a comment, a name) is no table flag.
    'chain owner {\n  comment "flags owner"\n}\nset persist { type ipv4_addr; flags interval; }',
]

BAD = [
    # The exploit of issue 9.
    ("chain c { }\n}\nflush ruleset\ntable inet x {",
     "definition line 2: '}' closes the table itself; a definition is only the table's body"),
    ("flush ruleset", "definition line 1: 'flush' cannot stand in a table's body"),
    ("chain c { }\ntable inet x { }", "definition line 2: 'table' cannot stand in a table's body"),
    ("chain c { };delete table inet filter", "definition line 1: 'delete' cannot stand"),
    ('include "/root/x"', "definition line 1: 'include' is not allowed in a definition"),
    ("chain c {\n  define x = 1\n}", "definition line 2: 'define' is not allowed"),
    ("chain c {\n  counter\n", "definition line 1: '{' is never closed"),
    ('chain c { comment "open }', "definition line 1: a quoted string is never closed"),
    ("chain c { }\x00", "definition line 1: control character U+0000 is not allowed"),
    # The kernel deletes an owner table when the loading nft exits: at once.
    ("chain c { }\nflags owner", "definition line 2: table flag 'owner' is not allowed"),
    ("flags dormant,persist;chain c { }", "definition line 1: table flag 'persist' is not"),
    ("flags dormant, owner\nchain c { }", "definition line 1: table flag 'owner' is not"),
]  # fmt: skip


@pytest.mark.parametrize("definition", GOOD)
def test_table_bodies_pass(definition: str) -> None:
    assert nftbody.check(definition) is None


@pytest.mark.parametrize(("definition", "message"), BAD)
def test_anything_else_is_refused_with_its_line(definition: str, message: str) -> None:
    problem = nftbody.check(definition)
    assert problem is not None
    assert str(problem).startswith(message)
