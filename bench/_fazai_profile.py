"""One `fazai apply` profiled: the CLI's own command, in a process of its own (as the
console script runs it), with the wall time of each stage and of each step of the
OPNsense transaction, and a cProfile of the process. For bench/opnsense_apply.py.

    python bench/_fazai_profile.py DOCS STATE.db OUT.json

Imports nothing of the benchmark's (the emulator runs in the benchmark's process), so
what this process spends is FazAI's.
"""

from __future__ import annotations

import contextlib
import cProfile
import inspect
import io
import json
import pstats
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# The stages phase_timer() times, in the order they happen (indented: inside the one above).
PHASES = (
    "load + validate the documents",
    "recovery check (state store)",
    "plan: read + compare",
    "show the plan (text)",
    "apply (engine, whole)",
    "  snapshot (read, stale + lockout checks, backups, savepoint)",
    "  write (POSTs, then reloads)",
    "    of which journal: step intended (SQLite)",
    "    of which journal: step done (SQLite)",
    "    of which reloads",
    "  verify (read + compare)",
    "  commit (cancel the rollback timer)",
    "observe (read + compare), in plan and again in apply",
    "HTTP requests, client side (all of them)",
)


@contextmanager
def phase_timer() -> Iterator[dict[str, list[float]]]:
    """Wall time and calls (label -> [seconds, calls]) of the CLI's stages and of each
    step of the OPNsense transaction, by wrapping those functions for one run. Nested
    labels ("of which") overlap their parent."""
    from controller import cli
    from controller.engine import apply as applying
    from controller.engine import plan as planning
    from controller.model import loader
    from controller.providers.opnsense import apply as opn_apply
    from controller.providers.opnsense import client as opn_client
    from controller.providers.opnsense import provider as opn_provider

    spent: dict[str, list[float]] = {}
    patched: list[tuple[Any, str, Any]] = []

    def add(label: str, t0: float) -> None:
        entry = spent.setdefault(label, [0.0, 0])
        entry[0] += time.perf_counter() - t0
        entry[1] += 1

    def wrap(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)
        if inspect.iscoroutinefunction(original):

            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    add(label, t0)

            replacement: Any = timed_async
        else:

            def timed(*args: Any, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    add(label, t0)

            replacement = timed
        patched.append((owner, name, original))
        setattr(owner, name, replacement)

    txn = opn_apply.OpnsenseTransaction
    wrap(loader, "load", "load + validate the documents")
    wrap(applying, "recover", "recovery check (state store)")
    wrap(planning, "build", "plan: read + compare")
    wrap(cli, "emit_plan", "show the plan (text)")
    wrap(applying, "apply", "apply (engine, whole)")
    provider = opn_provider.OpnsenseProvider
    wrap(provider, "observe", "observe (read + compare), in plan and again in apply")
    wrap(txn, "snapshot", "  snapshot (read, stale + lockout checks, backups, savepoint)")
    wrap(txn, "write", "  write (POSTs, then reloads)")
    wrap(applying.StoreJournal, "intend_many", "    of which journal: step intended (SQLite)")
    wrap(applying.StoreJournal, "done_many", "    of which journal: step done (SQLite)")
    wrap(txn, "_apply", "    of which reloads")
    wrap(txn, "verify", "  verify (read + compare)")
    wrap(txn, "commit", "  commit (cancel the rollback timer)")
    wrap(opn_client.OpnsenseClient, "_call", "HTTP requests, client side (all of them)")
    try:
        yield spent
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)


def profile_apply(docs: Path, state_db: Path, out_file: Path, top: int = 30) -> int:
    """`fazai apply DOCS --auto-approve` in this process, exactly as the console script
    runs it, with the time per stage and a cProfile (this process only: the emulator
    runs in the benchmark's)."""
    t0 = time.perf_counter()
    from controller import cli

    imported = time.perf_counter() - t0
    prof = cProfile.Profile()
    code: int | str | None = None
    with phase_timer() as spent, contextlib.redirect_stdout(io.StringIO()):
        t1 = time.perf_counter()
        prof.enable()
        try:
            cli.main(
                ["apply", str(docs), "--auto-approve", "--state", str(state_db)],
                standalone_mode=False,
            )
        except SystemExit as exc:
            code = exc.code
        finally:
            prof.disable()
        ran = time.perf_counter() - t1
    stats = {}
    for order in ("cumulative", "tottime"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(order).print_stats(top)
        stats[order] = buf.getvalue()
    out_file.write_text(
        json.dumps(
            {
                "exit_code": code,
                "imports_seconds": round(imported, 3),
                "command_seconds": round(ran, 3),
                "phases": {k: {"seconds": round(v[0], 3), "calls": v[1]} for k, v in spent.items()},
                "profile": stats,
            }
        )
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python bench/_fazai_profile.py DOCS STATE.db OUT.json")
    sys.exit(profile_apply(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
