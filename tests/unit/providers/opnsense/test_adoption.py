"""Which live object a rule or host override document binds to (adoption.bind)."""

from __future__ import annotations

from typing import Any

from controller.model.document import Document
from controller.providers.opnsense import adoption
from controller.providers.opnsense.identity import object_uuid

NODE = "fw"
OWN = object_uuid(NODE, "HostOverride", "app")
HAND = "0b7c1f0e-3c1a-4d7e-9a55-1d2b3c4d5e6f"
HAND_2 = "1c8d2a1f-4d2b-4e8f-8b66-2e3c4d5e6f70"


def host(**spec: Any) -> Document:
    base = {"target": {"node": NODE}, "hostname": "app", "domain": "example.internal"}
    return Document("HostOverride", "app", {"rr": "A", "state": "present", **base, **spec})


def live(hostname: str = "app", domain: str = "example.internal", rr: str = "A") -> Any:
    return {"hostname": hostname, "domain": domain, "rr": {rr: {"value": rr, "selected": 1}}}


def test_nothing_there_binds_to_the_derived_uuid_to_create() -> None:
    assert adoption.bind(NODE, host(), {}) == adoption.Binding(OWN, None)


def test_one_override_with_the_key_is_adopted_whatever_its_case() -> None:
    found = adoption.bind(NODE, host(), {HAND: live("APP", "Example.Internal.")})
    assert (found.uuid, found.adopted, found.error) == (HAND, True, None)


def test_another_record_type_is_another_override() -> None:
    found = adoption.bind(NODE, host(), {HAND: live(rr="AAAA")})
    assert (found.uuid, found.item, found.adopted) == (OWN, None, False)


def test_two_with_the_key_are_an_error_naming_both() -> None:
    found = adoption.bind(NODE, host(), {HAND: live(), HAND_2: live()})
    assert found.error is not None and HAND in found.error and HAND_2 in found.error


def test_fazai_s_own_beside_a_hand_made_twin_is_an_error() -> None:
    found = adoption.bind(NODE, host(), {OWN: live(), HAND: live()})
    assert found.error is not None and OWN in found.error and HAND in found.error


def test_renaming_onto_a_name_that_exists_is_an_error_not_a_duplicate() -> None:
    found = adoption.bind(NODE, host(hostname="db"), {OWN: live(), HAND: live("db")})
    assert found.error is not None and OWN in found.error and HAND in found.error


def test_spec_adopt_names_the_object_and_must_exist() -> None:
    named = host(adopt={"uuid": HAND.upper()})
    found = adoption.bind(NODE, named, {HAND: live()})
    assert (found.uuid, found.adopted, found.error) == (HAND, True, None)
    missing = adoption.bind(NODE, named, {})
    assert missing.error is not None and HAND in missing.error


def test_an_absent_document_never_reaches_an_object_by_spec_adopt() -> None:
    """Validate refuses adopt + absent; a document that got here anyway deletes nothing."""
    found = adoption.bind(NODE, host(adopt={"uuid": HAND}, state="absent"), {HAND: live()})
    assert found.error is not None and "state: absent" in found.error


def test_a_prune_s_absent_document_reaches_the_uuid_fazai_owns() -> None:
    found = adoption.bind(NODE, host(uuid=HAND, state="absent"), {HAND: live()})
    assert (found.uuid, found.item, found.error) == (HAND, live(), None)
    gone = adoption.bind(NODE, host(uuid=HAND, state="absent"), {})
    assert (gone.uuid, gone.item, gone.error) == (HAND, None, None)  # already gone: noop
    plain = adoption.bind(NODE, host(state="absent"), {HAND: live()})
    assert (plain.uuid, plain.item) == (OWN, None)  # never a hand-made one by its key


def mx(host_name: str, priority: str) -> Any:
    return {**live(rr="MX"), "mx": host_name, "mxprio": priority}


def test_another_mail_host_is_another_mx_record() -> None:
    backup = host(rr="MX", mx="backup.example.internal", mxprio=20)
    found = adoption.bind(NODE, backup, {HAND: mx("primary.example.internal", "10")})
    assert (found.uuid, found.item, found.error) == (OWN, None, None)  # created beside it
    same = adoption.bind(NODE, backup, {HAND: mx("Backup.Example.Internal.", "10")})
    assert (same.uuid, same.adopted, same.error) == (HAND, True, None)  # its priority moves


def test_another_text_is_another_txt_record() -> None:
    spf = host(rr="TXT", txtdata="v=spf1 -all")
    other = {**live(rr="TXT"), "txtdata": "google-site-verification=x"}
    assert adoption.bind(NODE, spf, {HAND: other}) == adoption.Binding(OWN, None)
    same = adoption.bind(NODE, spf, {HAND: {**other, "txtdata": "v=spf1 -all"}})
    assert (same.uuid, same.adopted) == (HAND, True)
