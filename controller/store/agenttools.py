"""Tools the agent verified, by goal: what resolves a goal again with no model call.

A verified tool goes back to the desired-state repository as a pull request (see
``controller.agent.commitback``); until that is merged the goal's ``resolvedBy`` is not
desired state yet, so the loop takes the tool from here. Once merged (or closed), the
record is forgotten. Spec and params are redacted like every JSON the store writes; a
record whose redaction masked something says so (``masked``) and is not applied as is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from controller.store.database import Database, from_json, iso, last_id, parse_time, to_json
from controller.store.records import VerifiedToolRecord
from controller.store.redact import redact

_COLUMNS = "id, goal, node, tool, spec, params, masked, verified_at, run_id, reference"


class VerifiedTools:
    _db: Database
    _now: Callable[[], datetime]

    def record_verified_tool(
        self,
        goal: str,
        node: str | None,
        tool: str,
        spec: Mapping[str, Any],
        params: Mapping[str, Any],
        run_id: int | None,
        *,
        verified_at: datetime | None = None,
        reference: str = "",
    ) -> int:
        """Record that ``tool`` (with ``params``) was verified for ``goal`` on ``node``;
        returns the record's id. ``verified_at`` defaults to now."""
        path = self._db.path
        spec_json = to_json(spec, "the tool's spec", path)
        params_json = to_json(params, "the tool's params", path)
        # Masked: what comes back is not what was verified (a param named like a secret).
        masked = redact(spec) != _plain(spec) or redact(params) != _plain(params)
        when = iso(verified_at or self._now())
        with self._db.write(f"recording Tool/{tool} verified for Goal/{goal}") as cur:
            cur.execute(
                "INSERT INTO agent_tools (goal, node, tool, spec, params, masked, verified_at,"
                " run_id, reference) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (goal, node, tool, spec_json, params_json, int(masked), when, run_id, reference),
            )
            return last_id(cur)

    def note_verified_tool_reference(self, record_id: int, reference: str) -> bool:
        """Say where a verified tool was committed back (a pull request's URL, a branch
        and commit); False when there is no such record."""
        with self._db.write("noting where a verified tool was committed") as cur:
            cur.execute("UPDATE agent_tools SET reference = ? WHERE id = ?", (reference, record_id))
            return cur.rowcount > 0

    def verified_tools(self, goal: str, node: str | None = None) -> list[VerifiedToolRecord]:
        """The tools verified for ``goal`` (on ``node``, when given), newest first."""
        query = f"SELECT {_COLUMNS} FROM agent_tools WHERE goal = ?"
        args: tuple[Any, ...] = (goal,)
        if node is not None:
            query += " AND node = ?"
            args += (node,)
        with self._db.read(f"reading the tools verified for Goal/{goal}") as cur:
            rows = cur.execute(query + " ORDER BY id DESC", args).fetchall()
        return [
            VerifiedToolRecord(
                rid, g, n, t, from_json(s), from_json(p), bool(m), parse_time(at), run, ref
            )
            for rid, g, n, t, s, p, m, at, run, ref in rows
        ]

    def forget_verified_tool(self, goal: str) -> int:
        """Forget every tool verified for ``goal`` (its pull request was merged, or closed);
        returns how many records went."""
        with self._db.write(f"forgetting the tools verified for Goal/{goal}") as cur:
            cur.execute("DELETE FROM agent_tools WHERE goal = ?", (goal,))
            return cur.rowcount


def _plain(value: Any) -> Any:
    """``value`` as redact returns it when nothing is masked (tuples become lists)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
