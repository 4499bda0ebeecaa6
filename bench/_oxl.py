"""oxl-opnsense-client for the OPNsense benchmarks: its client set up against the
emulator, and a playbook runner that runs in a process of its own.

Standard library only (oxl is imported when used), so that the runner's process pays
for Python and oxl, as an oxl user's would, and for nothing of FazAI's:

    python bench/_oxl.py TASKS.json RESULT.json     # key and secret from the environment
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

KEY_ENV = "FAZAI_BENCH_FW_KEY"  # the runner's API key
SECRET_ENV = "FAZAI_BENCH_FW_SECRET"  # and secret (FazAI's Node documents use it too)


def version() -> str | None:
    """The installed oxl-opnsense-client's version, None when it is not installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("oxl-opnsense-client")
    except PackageNotFoundError:
        return None


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """oxl prints its warnings to stdout; keep them out of the table."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield buf


def client(port: int, key: str, secret: str, ca_file: Path, timeout: float) -> Any:
    """An oxl ``Client`` for the emulator on 127.0.0.1:``port``: the certificate checked
    against the emulator's own (``ssl_verify=True``), ``api_timeout`` raised from oxl's
    2 s default, and ``shell=False`` so that errors come back as values."""
    from oxl_opnsense_client import Client  # type: ignore[import-untyped]

    return Client(
        firewall="127.0.0.1",
        port=port,
        token=key,
        secret=secret,
        ssl_verify=True,
        ssl_ca_file=str(ca_file),
        api_timeout=timeout,
        shell=False,
    )


def with_defaults(module: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each entry with its module's argument defaults filled in, as Ansible's argument
    spec validation fills a list's suboptions. oxl-opnsense-client's own validation
    leaves them out: without this, `alias_multi` creating an alias fails with
    KeyError 'type' (no `state`), and `rule_multi` sends an empty `statetype` and
    `interfacenot`, which the firewall refuses ("A value is required.")."""
    # oxl's own modules, on the path its package added
    from plugins.module_utils.defaults.alias import ALIAS_MOD_ARGS  # type: ignore[import-not-found]
    from plugins.module_utils.defaults.rule import RULE_MOD_ARGS  # type: ignore[import-not-found]

    spec = {"alias_multi": ALIAS_MOD_ARGS, "rule_multi": RULE_MOD_ARGS}[module]
    defaults = {k: v["default"] for k, v in spec.items() if v.get("default") is not None}
    return [{**defaults, **entry} for entry in entries]


def run_playbook(task_file: Path, result_file: Path) -> int:
    """Run the playbook in ``task_file`` against the firewall it names and write what
    happened (verdicts, time per phase) to ``result_file``, even when oxl raises.

    ``task_file``: {"port", "ca_file", "api_timeout", "tasks": [[module, params], ...],
    "reloads": [target, ...]}; the API key and secret come from ``KEY_ENV`` and
    ``SECRET_ENV``. Exit status 1 when any module failed."""
    t0 = time.perf_counter()
    spec = json.loads(task_file.read_text())
    out: dict[str, Any] = {"tasks": len(spec["tasks"]), "changed": 0, "errors": []}
    spent: dict[str, float] = {}
    with quiet() as said:
        try:
            import oxl_opnsense_client  # noqa: F401  (its import is part of its cost)

            out["import_seconds"] = round(time.perf_counter() - t0, 3)
            t1 = time.perf_counter()
            with client(
                spec["port"],
                os.environ[KEY_ENV],
                os.environ[SECRET_ENV],
                Path(spec["ca_file"]),
                spec["api_timeout"],
            ) as oxl:
                out["setup_seconds"] = round(time.perf_counter() - t1, 3)
                for module, params in spec["tasks"]:
                    k0 = time.perf_counter()
                    if module.endswith("_multi"):
                        params = {**params, "multi": with_defaults(module, params["multi"])}
                    answer = oxl.run_module(module, params=params)
                    spent[module] = spent.get(module, 0.0) + time.perf_counter() - k0
                    if answer["error"]:
                        what = params.get("name") or params.get("description") or ""
                        out["errors"].append(f"{module} {what}: {answer['error'][:300]}")
                    elif answer["result"]["changed"]:
                        out["changed"] += 1
                r0 = time.perf_counter()
                for target in spec["reloads"]:
                    answer = oxl.run_module("reload", params={"target": target})
                    if answer["error"]:
                        out["errors"].append(f"reload {target}: {answer['error'][:300]}")
                out["reload_seconds"] = round(time.perf_counter() - r0, 3)
        except Exception as exc:  # oxl raised instead of answering: that is its result
            out["errors"].append(f"oxl raised {type(exc).__name__}: {str(exc)[:300]}")
    out["seconds_per_module"] = {k: round(v, 3) for k, v in spent.items()}
    out["warnings"] = [w for w in said.getvalue().splitlines() if w.strip()][:5]
    result_file.write_text(json.dumps(out))
    return 0 if not out["errors"] else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python bench/_oxl.py TASKS.json RESULT.json")
    sys.exit(run_playbook(Path(sys.argv[1]), Path(sys.argv[2])))
