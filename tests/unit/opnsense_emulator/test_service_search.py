"""core/service/search: ServiceController::searchAction's recordset, integers and all."""

from __future__ import annotations

import httpx


def test_rows_carry_integer_flags_as_upstream_does(api: httpx.Client) -> None:
    answer = api.get("/api/core/service/search").json()
    assert answer["total"] == answer["rowCount"] == len(answer["rows"]) > 0
    assert answer["current"] == 1
    unbound = next(r for r in answer["rows"] if r["name"] == "unbound")
    assert unbound == {
        "id": "unbound", "locked": 0, "running": 1, "description": "Unbound DNS",
        "name": "unbound",
    }  # fmt: skip
    assert all(type(r["running"]) is int and type(r["locked"]) is int for r in answer["rows"])


def test_phrase_and_paging_as_search_recordset_base(api: httpx.Client) -> None:
    found = api.get("/api/core/service/search", params={"searchPhrase": "packet"}).json()
    assert [r["name"] for r in found["rows"]] == ["pf"]
    first = api.get("/api/core/service/search", params={"rowCount": 2, "current": 2}).json()
    assert (first["rowCount"], first["current"]) == (2, 2)
    assert first["total"] > 2
