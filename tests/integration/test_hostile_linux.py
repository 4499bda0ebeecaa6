"""Hostile desired state against real SSH nodes: what validate would stop, forced past it.

Validate refuses all of these (see tests/data/bad); here the checks further down are
proven on their own, because a document may reach them by another road (a future
loader, a bug): the node-side canonicalization, the apply's own refusal, the snapshot
of the whole ruleset and its rollback.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.errors import InvalidInputError
from controller.model import loader
from controller.model.document import Document
from controller.model.state import DesiredState
from controller.plan.diff import Observed
from controller.providers.base import Change
from controller.providers.linux import snapshot as snapshots
from controller.providers.linux.apply import (
    ApplyRefusedError,
    OutsideChangeError,
    RollbackIncompleteError,
)
from controller.providers.linux.provider import PROVIDER
from controller.source.open import open_source
from controller.store.redact import redact
from controller.testing.fleet import Fleet, FleetNode
from tests.integration.statekit import node_doc, resource, write_state
from tests.integration.test_apply_linux import MemoryJournal

# The exploit of issue 9: close FazAI's table, wipe the ruleset, open another table.
EXPLOIT = "chain input { type filter hook input priority 0; }\n}\nflush ruleset\ntable inet x {"
HASH = "$6$saltsalt$Qm9vYmFyYmF6cXV4cXV1eGZyb2JuaWNhdGVkMTIzNDU2Nzg5MA"
KEEP = "table inet fzsecrets {\n chain c {\n  type filter hook output priority 0\n  counter\n }\n}"
CLEAN = "for t in fzsecrets fzhost fzban x; do nft delete table inet $t 2>/dev/null; done"
# Another program's table whose set changes all the time (fail2ban, crowdsec).
BANS = (
    "table inet fzban {\n set banned { type ipv4_addr; flags timeout; "
    "elements = { 192.0.2.1 timeout 1h } }\n counter hits { packets 5 bytes 100 }\n"
    " chain c {\n  type filter hook input priority 0;\n  ip saddr @banned counter name hits drop\n"
    " }\n}"
)


@pytest.fixture
def web1(fleet: Fleet) -> Iterator[FleetNode]:
    """web-1 holding a table no document manages, which every test must leave intact."""
    node = fleet.nodes["web-1"]
    node.run(f"{CLEAN} 2>/dev/null; true")
    node.run("nft -f -", input=KEEP.encode() + b"\n")
    yield node
    node.run(f"{CLEAN}; rm -f /root/fzsecret; true")


def _state(fleet: Fleet, folder: Path, definition: str) -> DesiredState:
    docs = [
        node_doc(fleet, "web-1"),
        resource("NftTable", "host", {"node": "web-1"}, family="inet", name="fzhost",
                 definition=definition),
    ]  # fmt: skip
    return loader.load(open_source(str(write_state(folder, docs))))


def _forced(state: DesiredState, definition: str) -> Document:
    """The NftTable document with ``definition``, as if validate had let it through."""
    (doc,) = state.resources_for("web-1")
    return dataclasses.replace(doc, spec={**doc.spec, "definition": definition})


def _tables(node: FleetNode) -> str:
    return node.run("nft -s list ruleset").stdout.decode()


def test_table_escape_is_refused_at_validate_plan_and_apply(
    fleet: Fleet, web1: FleetNode, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInputError) as refused:
        _state(fleet, tmp_path / "bad", EXPLOIT)
    assert [str(d).split(": ", 1)[1] for d in refused.value.diagnostics] == [
        "NftTable/host: spec.definition: definition line 2: '}' closes the table itself; "
        "a definition is only the table's body"
    ]
    before = _tables(web1)
    state = _state(fleet, tmp_path / "ok", "chain c { }")
    doc = _forced(state, EXPLOIT)
    # The plan: nft's canonicalization in a throwaway namespace sees two tables.
    observed = asyncio.run(PROVIDER.observe(state.nodes["web-1"], [doc], state.source))
    assert observed.resources[doc].error == (
        "the definition is not one table's body: loading it acts on table inet x"
    )
    # The apply: refused before anything is sent.
    change = Change("NftTable", "host", "create", doc, Observed(None, None))
    txn = PROVIDER.transaction(state.nodes["web-1"], [change], [doc], state.source)
    asyncio.run(txn.snapshot())
    with pytest.raises(ApplyRefusedError, match="closes the table itself"):
        asyncio.run(txn.write(MemoryJournal()))
    assert _tables(web1) == before
    assert "table inet fzsecrets" in before


@pytest.mark.parametrize(
    ("definition", "why"),
    [
        # reopens its own table after the flush: only that one table is left at the end
        (
            "chain a { }\n}\nflush ruleset\ntable inet fzhost {\nchain b { }",
            "loading it removes the tables ",
        ),
        # a table made and deleted again leaves no trace in the ruleset, but in the echo
        (
            "chain a { }\n}\ntable ip evil {\n}\ndelete table ip evil\ntable inet fzhost {\n"
            "chain b { }",
            "loading it acts on table ip evil",
        ),
        # the node's own table, under its name: flushed, never deleted
        (
            "chain a { }\n}\nflush table inet fzsecrets\ntable inet fzhost {\nchain b { }",
            "loading it changes tables other than inet fzhost",
        ),
        (
            "chain a { }\n}\nadd chain inet fzsecrets evil\ntable inet fzhost {\nchain b { }",
            "loading it acts on table inet fzsecrets",
        ),
    ],
)
def test_the_namespace_check_sees_escapes_that_end_in_one_table(
    fleet: Fleet, web1: FleetNode, tmp_path: Path, definition: str, why: str
) -> None:
    state = _state(fleet, tmp_path / "ok", "chain c { }")
    doc = _forced(state, definition)
    before = _tables(web1)
    observed = asyncio.run(PROVIDER.observe(state.nodes["web-1"], [doc], state.source))
    error = observed.resources[doc].error or ""
    assert error.startswith("the definition is not one table's body: " + why), error
    assert _tables(web1) == before


def test_other_tables_changed_during_the_write_fail_it_and_rollback_restores_them(
    fleet: Fleet, web1: FleetNode, tmp_path: Path
) -> None:
    state = _state(fleet, tmp_path / "s", "chain c { }")
    (doc,) = state.resources_for("web-1")
    before = _tables(web1)
    change = Change("NftTable", "host", "create", doc, Observed(None, None))
    txn = PROVIDER.transaction(state.nodes["web-1"], [change], [doc], state.source)
    snap = asyncio.run(txn.snapshot())

    def wipe(_: int) -> None:
        # What an escaped definition would do, done as the table's step is reported.
        web1.run("nft flush ruleset")

    journal = MemoryJournal(after_done=wipe)
    with pytest.raises(OutsideChangeError, match="table inet fzsecrets is gone"):
        asyncio.run(txn.write(journal))
    assert "fzsecrets" not in _tables(web1)
    # As the journal keeps it: masked where a key is named like a secret, and this
    # table's name is.
    kept = redact(snap)
    asyncio.run(txn.rollback(kept))
    assert _tables(web1) == before


def _bans(node: FleetNode) -> str:
    return node.run("nft -s list table inet fzban").stdout.decode()


def test_set_elements_another_program_changes_during_the_write_are_no_outside_change(
    fleet: Fleet, web1: FleetNode, tmp_path: Path
) -> None:
    web1.run("nft -f -", input=BANS.encode() + b"\n")
    state = _state(fleet, tmp_path / "s", "chain c { }")
    (doc,) = state.resources_for("web-1")
    change = Change("NftTable", "host", "create", doc, Observed(None, None))
    txn = PROVIDER.transaction(state.nodes["web-1"], [change], [doc], state.source)
    snap = asyncio.run(txn.snapshot())

    def ban(_: int) -> None:
        # fail2ban bans an address while the table's step is being reported
        web1.run("nft add element inet fzban banned { 192.0.2.9 timeout 1h }")

    asyncio.run(txn.write(MemoryJournal(after_done=ban)))
    assert "192.0.2.9" in _bans(web1)
    # A rollback for any other reason (verify failed) takes back FazAI's table only: the
    # ban stays, and the table keeps its counter (it is not recreated).
    web1.run("nft add element inet fzban banned { 192.0.2.10 timeout 1h }")
    hits_before = web1.run("nft list counter inet fzban hits").stdout.decode()
    asyncio.run(txn.rollback(redact(snap)))
    after = _bans(web1)
    assert "192.0.2.9" in after and "192.0.2.10" in after
    assert "fzhost" not in _tables(web1)
    assert "packets 5 bytes 100" in hits_before
    assert web1.run("nft list counter inet fzban hits").stdout.decode() == hits_before


def test_a_table_changed_by_its_owner_during_the_write_is_reported_never_recreated(
    fleet: Fleet, web1: FleetNode, tmp_path: Path
) -> None:
    web1.run("nft -f -", input=BANS.encode() + b"\n")
    state = _state(fleet, tmp_path / "s", "chain c { }")
    (doc,) = state.resources_for("web-1")
    change = Change("NftTable", "host", "create", doc, Observed(None, None))
    txn = PROVIDER.transaction(state.nodes["web-1"], [change], [doc], state.source)
    snap = asyncio.run(txn.snapshot())

    def add_rule(_: int) -> None:
        web1.run("nft add rule inet fzban c ip saddr 198.51.100.7 drop")
        web1.run("nft add element inet fzban banned { 192.0.2.9 timeout 1h }")

    with pytest.raises(OutsideChangeError, match="table inet fzban changed"):
        asyncio.run(txn.write(MemoryJournal(after_done=add_rule)))
    with pytest.raises(RollbackIncompleteError, match="NftTable inet fzban: its chains"):
        asyncio.run(txn.rollback(redact(snap)))
    after = _bans(web1)
    # Its owner's rule and ban are still there; FazAI's own table is gone.
    assert "198.51.100.7" in after and "192.0.2.9" in after
    assert "fzhost" not in _tables(web1)


def test_include_is_refused_and_never_echoes_node_files(
    fleet: Fleet, web1: FleetNode, tmp_path: Path
) -> None:
    web1.run(f"printf 'root:{HASH}:19000:0:99999:7:::\\n' > /root/fzsecret")
    include = 'include "/root/fzsecret"'
    with pytest.raises(InvalidInputError) as refused:
        _state(fleet, tmp_path / "bad", include)
    assert "definition line 1: 'include' is not allowed in a definition" in str(
        refused.value.diagnostics[0]
    )
    state = _state(fleet, tmp_path / "ok", "chain c { }")
    doc = _forced(state, include)
    observed = asyncio.run(PROVIDER.observe(state.nodes["web-1"], [doc], state.source))
    error = observed.resources[doc].error or ""
    assert error.startswith("nft rejects the definition")
    assert "root:" not in error and "$6$" not in error and "19000" not in error


def test_rollback_removes_the_temp_files_a_killed_write_left(
    fleet: Fleet, web1: FleetNode, tmp_path: Path
) -> None:
    web1.run("mkdir -p /etc/fzh3 && printf 'old\\n' > /etc/fzh3/app.conf")
    try:
        docs = [
            node_doc(fleet, "web-1"),
            resource("File", "app", {"node": "web-1"}, path="/etc/fzh3/app.conf",
                     content="new\n"),
        ]  # fmt: skip
        state = loader.load(open_source(str(write_state(tmp_path / "s", docs))))
        (doc,) = state.resources_for("web-1")
        change = Change("File", "app", "update", doc, Observed(None, None))
        txn = PROVIDER.transaction(state.nodes["web-1"], [change], [doc], state.source)
        snap = asyncio.run(txn.snapshot())
        # A write step killed between its mktemp and its rename (the connection dropped, a
        # timeout's SIGKILL: no trap runs) leaves its temp file with the new content,
        # named with this transaction's tag; files that only look alike are not its own:
        # a program's ".fazai-settings" (the shape of the old temp names), another
        # transaction's temp file.
        tag = snapshots.tag_of(snap)
        web1.run(
            f"t=$(mktemp /etc/fzh3/.fazai-{tag}-XXXXXX) && printf 'new\\n' > \"$t\" && "
            "printf 'mine\\n' > /etc/fzh3/.fazai-not-a-temp && "
            "printf 'mine\\n' > /etc/fzh3/.fazai-settings && "
            "printf 'other\\n' > /etc/fzh3/.fazai-0123abcd-Xy12_z"
        )
        asyncio.run(txn.rollback(snap))
        listing = web1.run("ls -A /etc/fzh3 && cat /etc/fzh3/app.conf").stdout.decode()
        assert listing == (
            ".fazai-0123abcd-Xy12_z\n.fazai-not-a-temp\n.fazai-settings\napp.conf\nold\n"
        )
    finally:
        web1.run("rm -rf /etc/fzh3")
