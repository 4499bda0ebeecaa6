#!/usr/bin/env python3
"""The agent's goal suite: per goal, what the first run costs (model calls, tokens, wall
time, through the real loop and the real verification on a node) and what the second
costs once the verified tool is committed (the target: zero model calls, and no longer
than a deterministic apply of the same change); and the loop's own overhead per
iteration, outside model time.

    .venv/bin/python bench/agent_goal_suite.py [--repeat N]

Starts its own fleet of one real OpenSSH node (controller.testing.fleet) and an OPNsense
emulator over HTTPS (controller.testing.opnsense). The model is the scripted
OpenAI-compatible server (controller.testing.scripted_model), reached through the same
runtime and client as any endpoint; so model time is near zero and the tokens are the
server's counts (prompt characters / 4 plus the chunks streamed), not a real model's.

Linux goals (10): each a realistic outcome with read-only checks, the node put in a
drifted state first. First run: `resolve()` (what `fazai agent` runs) with a generated
transcript: a shell probe, a toolspec, a usetool; the tool is approved (as
--approve-tools), verified on the node in a transaction, and kept. Second run: the node
reset, then the same goal with the verified tool committed as desired state (the Tool
document plus the goal's resolvedBy, as the commit-back pull request would write them);
it must resolve on the bound path with zero model calls (the runtime points at a
scripted server with an empty transcript: any call would be counted). It is timed
in-process and as `fazai agent` (subprocess), against a deterministic apply of the same
bound goal (the pipeline's plan+apply in-process, and `fazai apply --auto-approve`), and
against the File document a user would otherwise write with the same final content.

OPNsense goals (3): Unbound settings (unbound/settings/set + reconfigure) on the
emulator, with committed tools: the agent's bound path and `fazai apply`, as for Linux.
A first run with an agent-made OPNsense tool is tried too: those are not verified yet
(idempotence cannot be shown on OPNsense), so it ends unresolved by design.

Loop overhead: a transcript of N `plan` actions then `done`, on the node; the episode's
seconds minus the time spent waiting on the model stream (measured around each
`__anext__` of the runtime's stream) minus the goal read that `done` makes, per
iteration.

Results go to bench/results/agent_goal_suite.json (git ignores bench/results/). Needs
root (network namespaces) and sshd.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from controller import providers  # noqa: E402
from controller.agent.bench import NodeBench, task_for  # noqa: E402
from controller.agent.episode import Episode  # noqa: E402
from controller.agent.loop import Limits, Loop  # noqa: E402
from controller.agent.run import find_goal, resolve  # noqa: E402
from controller.errors import FazaiError  # noqa: E402
from controller.llm.runtime import ModelRuntime  # noqa: E402
from controller.model.state import DesiredState  # noqa: E402
from controller.pipeline import context, desired, planning, writes  # noqa: E402
from controller.pipeline import source as pipeline_source  # noqa: E402
from controller.policy import stage  # noqa: E402
from controller.source.open import open_source  # noqa: E402
from controller.store import Command, StateStore, Trigger  # noqa: E402
from controller.testing.fleet import Fleet, FleetNode, NodeSpec, fleet_available  # noqa: E402
from controller.testing.opnsense import EmulatorServer  # noqa: E402
from controller.testing.scripted_model import (  # noqa: E402
    ScriptedModel,
    Transcript,
    models_section,
    serving,
    settings_for,
)

sys.path.insert(0, str(REPO / "bench"))
from plan_vs_peers import Run, timed  # noqa: E402  (one way to time a tool, for every bench)

RESULTS = REPO / "bench" / "results" / "agent_goal_suite.json"
API = "fazai.dev/v1alpha1"
NODE = "suite-1"
FW = "suite-fw"
FW_SECRET_ENV = "FAZAI_BENCH_SUITE_FW_SECRET"
ROLES = ("brain", "executor", "embedder")

# --------------------------------------------------------------------------
# the Linux goals


@dataclass(frozen=True)
class LinuxGoal:
    """One outcome on a node: the file a tool changes, the drifted state the node starts
    in (``start`` of the file's content as distributed, "" when there is none), the
    goal's read-only checks, and the tool the scripted model proposes for it."""

    name: str
    description: str
    path: str
    start: Callable[[str], str]
    mode: str  # the file's mode in the drifted state
    checks: tuple[dict[str, Any], ...]
    tool: str
    spec: dict[str, Any]
    params: dict[str, Any]
    probe: tuple[str, ...]


def _check(name: str, argv: list[str], matches: str | None = None) -> dict[str, Any]:
    expect: dict[str, Any] = {"exitCode": 0}
    if matches is not None:
        expect["stdoutMatches"] = matches
    return {"name": name, "command": argv, "expect": expect}


def _tool(
    description: str,
    params: dict[str, Any],
    check: list[str],
    script: str,
    path: str,
) -> dict[str, Any]:
    required = sorted(params)
    return {
        "platform": "linux",
        "description": description,
        "params": {"type": "object", "required": required, "properties": params},
        "check": {"command": check},
        "apply": {"script": script},
        "snapshot": {"paths": [path]},
    }


def _rewrite(path: str, awk_vars: str, program: str) -> str:
    """An apply script that rewrites ``path`` through awk, keeping its mode and owner,
    replacing it in one rename (the params come in the environment)."""
    return (
        "set -eu\n"
        f"f={path}\n"
        'tmp=$(mktemp "$f.XXXXXX")\n'
        "trap 'rm -f \"$tmp\"' EXIT\n"
        f'awk {awk_vars} \'{program}\' "$f" > "$tmp"\n'
        'chmod --reference="$f" "$tmp" && chown --reference="$f" "$tmp"\n'
        'mv "$tmp" "$f"\n'
    )


def _writer(path: str, mode: str, printf: str, args: str) -> str:
    """An apply script that writes all of ``path`` (printf ``printf`` ``args``)."""
    return (
        "set -eu\n"
        f"f={path}\n"
        'mkdir -p "$(dirname "$f")"\n'
        'tmp=$(mktemp "$f.XXXXXX")\n'
        "trap 'rm -f \"$tmp\"' EXIT\n"
        f"printf '{printf}' {args} > \"$tmp\"\n"
        f'chmod {mode} "$tmp" && chown root:root "$tmp"\n'
        'mv "$tmp" "$f"\n'
    )


def _login_defs_tool() -> dict[str, Any]:
    """The committed tool of desired_state/tools/: the agent proposes the same one."""
    text = (REPO / "desired_state" / "tools" / "login-defs.yaml").read_text()
    return dict(yaml.safe_load(text)["spec"])


APP = "/etc/fazai-suite/app.conf"
SYSCTL = "/etc/sysctl.d/60-fazai-suite.conf"
SSHD = "/etc/ssh/sshd_config.d/50-fazai-suite.conf"
LIMITS = "/etc/security/limits.conf"
MOTD = "/etc/motd"
CRON = "/etc/cron.d/fazai-suite-backup"
LOGROTATE = "/etc/logrotate.d/fazai-suite-app"
LOGIN_DEFS = "/etc/login.defs"
JOURNALD = "/etc/systemd/journald.conf.d/50-fazai-suite.conf"
UMASK = "/etc/profile.d/50-fazai-suite-umask.sh"
BANNER = "Authorized use only. All activity is logged."
WORD = {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"}


def _without(pattern: str, text: str) -> str:
    return "".join(line for line in text.splitlines(True) if not re.match(pattern, line))


LINUX_GOALS: tuple[LinuxGoal, ...] = (
    LinuxGoal(
        "app-mode-new",
        "the app runs in the new mode, its other settings kept",
        APP,
        lambda _: "# the app's settings\nmode=old\nworkers=4\n",
        "0640",
        (
            _check("mode-new", ["grep", "-qx", "mode=new", APP]),
            _check("workers-kept", ["grep", "-qx", "workers=4", APP]),
        ),
        "app-setting",
        _tool(
            f"set one key=value setting in {APP}, keeping the rest of the file",
            {"key": {"type": "string", "pattern": "^[a-z_]+$"}, "value": WORD},
            ["grep", "-qx", "${key}=${value}", APP],
            _rewrite(
                APP,
                '-F= -v k="$FAZAI_PARAM_key" -v v="$FAZAI_PARAM_value"',
                '$1 == k { if (!done) print k "=" v; done = 1; next } { print } '
                'END { if (!done) print k "=" v }',
            ),
            APP,
        ),
        {"key": "mode", "value": "new"},
        ("cat", APP),
    ),
    LinuxGoal(
        "martians-logged",
        "packets with impossible source addresses are logged, from boot on",
        SYSCTL,
        lambda _: "net.ipv4.conf.all.log_martians = 0\n",
        "0600",
        (
            _check("line", ["grep", "-qxF", "net.ipv4.conf.all.log_martians = 1", SYSCTL]),
            _check("mode", ["stat", "-c", "%a %U", SYSCTL], "^644 root$"),
        ),
        "sysctl-file",
        _tool(
            f"write one sysctl setting to {SYSCTL}, loaded at boot",
            {
                "key": {"type": "string", "pattern": "^[a-z0-9_.]+$"},
                "value": {"type": "string", "pattern": "^[0-9]+$"},
            },
            ["grep", "-qxF", "${key} = ${value}", SYSCTL],
            _writer(
                SYSCTL,
                "0644",
                "# managed by FazAI\\n%s = %s\\n",
                '"$FAZAI_PARAM_key" "$FAZAI_PARAM_value"',
            ),
            SYSCTL,
        ),
        {"key": "net.ipv4.conf.all.log_martians", "value": "1"},
        ("cat", SYSCTL),
    ),
    LinuxGoal(
        "ssh-no-passwords",
        "sshd refuses password and keyboard-interactive logins",
        SSHD,
        lambda _: "PasswordAuthentication yes\n",
        "0644",
        (
            _check("password", ["grep", "-qx", "PasswordAuthentication no", SSHD]),
            _check("kbd", ["grep", "-qx", "KbdInteractiveAuthentication no", SSHD]),
        ),
        "sshd-auth-dropin",
        _tool(
            f"write the sshd drop-in {SSHD} setting password and keyboard-interactive "
            "authentication",
            {"value": {"type": "string", "enum": ["yes", "no"]}},
            ["grep", "-qx", "PasswordAuthentication ${value}", SSHD],
            _writer(
                SSHD,
                "0600",
                "PasswordAuthentication %s\\nKbdInteractiveAuthentication %s\\n",
                '"$FAZAI_PARAM_value" "$FAZAI_PARAM_value"',
            ),
            SSHD,
        ),
        {"value": "no"},
        ("cat", SSHD),
    ),
    LinuxGoal(
        "nofile-raised",
        "every user may open 65536 files (soft limit)",
        LIMITS,
        lambda dist: _without(r"^\*\s+soft\s+nofile\s", dist) + "*  soft  nofile  1024\n",
        "0644",
        (
            _check("line", ["grep", "-qxF", "* soft nofile 65536", LIMITS]),
            _check(
                "one",
                ["grep", "-cE", "^\\*[[:space:]]+soft[[:space:]]+nofile[[:space:]]", LIMITS],
                "^1$",
            ),
        ),
        "limits-entry",
        _tool(
            f"set one DOMAIN TYPE ITEM VALUE entry of {LIMITS}, keeping the rest",
            {
                "domain": {"type": "string", "pattern": "^[*@%A-Za-z0-9_-]+$"},
                "type": {"type": "string", "enum": ["soft", "hard", "-"]},
                "item": {"type": "string", "pattern": "^[a-z]+$"},
                "value": {"type": "string", "pattern": "^([0-9]+|unlimited)$"},
            },
            ["grep", "-qxF", "${domain} ${type} ${item} ${value}", LIMITS],
            _rewrite(
                LIMITS,
                '-v d="$FAZAI_PARAM_domain" -v t="$FAZAI_PARAM_type" '
                '-v i="$FAZAI_PARAM_item" -v v="$FAZAI_PARAM_value"',
                '$1 == d && $2 == t && $3 == i { if (!done) print d " " t " " i " " v; '
                'done = 1; next } { print } END { if (!done) print d " " t " " i " " v }',
            ),
            LIMITS,
        ),
        {"domain": "*", "type": "soft", "item": "nofile", "value": "65536"},
        ("grep", "-n", "nofile", LIMITS),
    ),
    LinuxGoal(
        "motd-banner",
        "the login banner warns that use is authorized only and logged",
        MOTD,
        lambda dist: _without(re.escape(BANNER), dist),
        "0644",
        (_check("banner", ["grep", "-qxF", BANNER, MOTD]),),
        "motd-line",
        _tool(
            f"add one line to {MOTD} unless it is there",
            {"line": {"type": "string", "pattern": "^[A-Za-z0-9 .,:;!-]+$"}},
            ["grep", "-qxF", "${line}", MOTD],
            'set -eu\nf=/etc/motd\ngrep -qxF -- "$FAZAI_PARAM_line" "$f" || '
            'printf "%s\\n" "$FAZAI_PARAM_line" >> "$f"\n',
            MOTD,
        ),
        {"line": BANNER},
        ("cat", MOTD),
    ),
    LinuxGoal(
        "nightly-backup",
        "the backup runs quietly every night at 02:30 as root",
        CRON,
        lambda _: "0 4 * * * root /usr/local/sbin/backup\n",
        "0664",
        (
            _check(
                "entry", ["grep", "-qxF", "30 2 * * * root /usr/local/sbin/backup --quiet", CRON]
            ),
            _check("mode", ["stat", "-c", "%a %U", CRON], "^644 root$"),
        ),
        "cron-job",
        _tool(
            f"write the cron job {CRON}: one schedule and command, run as root",
            {
                "schedule": {"type": "string", "pattern": "^[0-9*/,-]+( [0-9*/,-]+){4}$"},
                "command": {"type": "string", "pattern": "^/[A-Za-z0-9_./ -]+$"},
            },
            ["grep", "-qxF", "${schedule} root ${command}", CRON],
            _writer(
                CRON,
                "0644",
                "SHELL=/bin/sh\\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\\n%s root %s\\n",
                '"$FAZAI_PARAM_schedule" "$FAZAI_PARAM_command"',
            ),
            CRON,
        ),
        {"schedule": "30 2 * * *", "command": "/usr/local/sbin/backup --quiet"},
        ("cat", CRON),
    ),
    LinuxGoal(
        "app-logs-kept",
        "the app's logs are kept 14 rotations, compressed",
        LOGROTATE,
        lambda _: (
            "/var/log/fazai-suite/*.log {\n    weekly\n    rotate 4\n    compress\n"
            "    missingok\n}\n"
        ),
        "0644",
        (
            _check("rotate", ["grep", "-qxF", "    rotate 14", LOGROTATE]),
            _check("compress", ["grep", "-qxF", "    compress", LOGROTATE]),
        ),
        "logrotate-count",
        _tool(
            f"set the rotate count of {LOGROTATE}, keeping the rest of the stanza",
            {"count": {"type": "integer", "minimum": 1, "maximum": 999}},
            ["grep", "-qxE", "[[:space:]]*rotate ${count}", LOGROTATE],
            _rewrite(
                LOGROTATE,
                '-v n="$FAZAI_PARAM_count"',
                '$1 == "rotate" { sub(/rotate[[:space:]]+[0-9]+/, "rotate " n) } { print }',
            ),
            LOGROTATE,
        ),
        {"count": 14},
        ("cat", LOGROTATE),
    ),
    LinuxGoal(
        "passwords-expire",
        "local passwords expire after 90 days",
        LOGIN_DEFS,
        lambda dist: (
            re.sub(r"(?m)^PASS_MAX_DAYS\s+\S+$", "PASS_MAX_DAYS\t99999", dist)
            if re.search(r"(?m)^PASS_MAX_DAYS\s", dist)
            else dist + "PASS_MAX_DAYS\t99999\n"
        ),
        "0644",
        (_check("max-days", ["grep", "-qxE", "PASS_MAX_DAYS[[:space:]]+90", LOGIN_DEFS]),),
        "login-defs-setting",
        _login_defs_tool(),
        {"key": "PASS_MAX_DAYS", "value": "90"},
        ("grep", "-n", "PASS_MAX_DAYS", LOGIN_DEFS),
    ),
    LinuxGoal(
        "journal-capped",
        "the journal uses at most 200M of disk",
        JOURNALD,
        lambda _: "[Journal]\nSystemMaxUse=1G\n",
        "0644",
        (
            _check("section", ["grep", "-qxF", "[Journal]", JOURNALD]),
            _check("cap", ["grep", "-qx", "SystemMaxUse=200M", JOURNALD]),
        ),
        "journald-cap",
        _tool(
            f"write the journald drop-in {JOURNALD} with SystemMaxUse",
            {"max_use": {"type": "string", "pattern": "^[0-9]+[KMG]$"}},
            ["grep", "-qx", "SystemMaxUse=${max_use}", JOURNALD],
            _writer(JOURNALD, "0644", "[Journal]\\nSystemMaxUse=%s\\n", '"$FAZAI_PARAM_max_use"'),
            JOURNALD,
        ),
        {"max_use": "200M"},
        ("cat", JOURNALD),
    ),
    LinuxGoal(
        "login-umask",
        "login shells create files readable by the owner and group only",
        UMASK,
        lambda _: "umask 022\n",
        "0644",
        (_check("umask", ["grep", "-qx", "umask 027", UMASK]),),
        "profile-umask",
        _tool(
            f"write the login shells' umask to {UMASK}",
            {"umask": {"type": "string", "pattern": "^[0-7]{3}$"}},
            ["grep", "-qx", "umask ${umask}", UMASK],
            _writer(UMASK, "0644", "umask %s\\n", '"$FAZAI_PARAM_umask"'),
            UMASK,
        ),
        {"umask": "027"},
        ("cat", UMASK),
    ),
)


def synthesis_transcript(goal: LinuxGoal) -> Transcript:
    """What a model that knows the answer says: read the file, propose the tool, try it."""
    return Transcript.parse(
        [
            {"expect": goal.name, "answer": {"action": "shell", "argv": list(goal.probe)}},
            {
                "expect": "exit",
                "answer": {"action": "toolspec", "name": goal.tool, "tool": goal.spec},
            },
            {
                # Not "accepted": the masking hides the word after a secret-like name
                # ("tool sshd-auth-dropin ***; try it with usetool").
                "expect": "try it with usetool",
                "answer": {"action": "usetool", "tool": goal.tool, "params": goal.params},
            },
        ],
        source=f"synthesize {goal.name}",
    )


# --------------------------------------------------------------------------
# the OPNsense goals


@dataclass(frozen=True)
class FwGoal:
    name: str
    description: str
    section: str  # unbound.<section>
    field: str
    tool: str

    @property
    def path(self) -> str:
        return f"unbound.{self.section}.{self.field}"

    def check(self) -> dict[str, Any]:
        return {
            "name": self.field,
            "get": "unbound/settings/get",
            "expect": {"path": self.path, "equals": "1"},
        }

    def spec(self) -> dict[str, Any]:
        body = {"unbound": {self.section: {self.field: "1"}}}
        return {
            "platform": "opnsense",
            "description": f"turn on Unbound's {self.section} setting {self.field}, made live",
            "check": {"get": "unbound/settings/get", "expect": {"path": self.path, "equals": "1"}},
            "apply": {
                "calls": [
                    {"post": "unbound/settings/set", "body": body},
                    {"post": "unbound/service/reconfigure"},
                ]
            },
        }


FW_GOALS = (
    FwGoal("dnssec-on", "Unbound validates DNSSEC", "general", "dnssec", "unbound-dnssec"),
    FwGoal(
        "version-hidden",
        "Unbound does not tell its version",
        "advanced",
        "hideversion",
        "unbound-hide-version",
    ),
    FwGoal(
        "prefetch-on",
        "Unbound prefetches popular records before they expire",
        "advanced",
        "prefetch",
        "unbound-prefetch",
    ),
)


def fw_transcript(goal: FwGoal) -> Transcript:
    return Transcript.parse(
        [
            {
                "expect": goal.name,
                "answer": {"action": "toolspec", "name": goal.tool, "tool": goal.spec()},
            },
            {
                "expect": "accepted",
                "answer": {"action": "usetool", "tool": goal.tool, "params": {}},
            },
            {
                "answer": {
                    "action": "done",
                    "outcome": "unresolved",
                    "summary": "the tool could not be verified here",
                }
            },
        ],
        source=f"opnsense {goal.name}",
    )


# --------------------------------------------------------------------------
# documents


def document(kind: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": dict(spec)}


def linux_node(fleet: Fleet) -> dict[str, Any]:
    node = fleet.nodes[NODE]
    return document(
        "Node",
        NODE,
        {
            "platform": "linux",
            "address": node.address,
            "user": "root",
            "auth": {"privateKeyFile": str(fleet.private_key_file)},
            "knownHostsFile": str(fleet.known_hosts_file),
            "connectTimeout": 3,
        },
    )


def fw_node(emu: EmulatorServer, folder: Path) -> dict[str, Any]:
    key = folder / "fw.key"
    key.write_text(emu.api_key + "\n")
    return document(
        "Node",
        FW,
        {
            "platform": "opnsense",
            "url": emu.url,
            "apiKeyRef": {"file": str(key)},
            "apiSecretRef": {"env": FW_SECRET_ENV},
            "tls": {"caBundle": str(emu.certificate)},
            "requestTimeout": 5,
        },
    )


def goal_doc(
    name: str, node: str, description: str, checks: Any, bound: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "target": {"node": node},
        "description": description,
        "checks": list(checks),
    }
    if bound is not None:
        spec["resolvedBy"] = dict(bound)
    return document("Goal", name, spec)


def write_state(folder: Path, documents: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "state.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return folder


def load_state(folder: Path) -> DesiredState:
    return pipeline_source.load(open_source(str(folder)))


# --------------------------------------------------------------------------
# the node


def reset(node: FleetNode, goal: LinuxGoal, distributed: str) -> None:
    """The drifted state the goal starts from."""
    q = shlex.quote(goal.path)
    node.run(
        f"mkdir -p $(dirname {q}) && cat > {q} && chmod {goal.mode} {q} && chown root:root {q}",
        input=goal.start(distributed).encode(),
    )


def failing_checks(node: FleetNode, checks: Any) -> list[str]:
    """The goal's checks run by hand on the node (no FazAI): the names of those failing."""
    failed = []
    for check in checks:
        got = node.run(shlex.join(check["command"]), check=False)
        ok = got.returncode == check["expect"]["exitCode"]
        pattern = check["expect"].get("stdoutMatches")
        if ok and pattern is not None:
            ok = re.search(pattern, got.stdout.decode(), re.MULTILINE) is not None
        if not ok:
            failed.append(check["name"])
    return failed


def fw_reset(emu: EmulatorServer, goal: FwGoal) -> None:
    key = f"unbound.{goal.section}"
    emu.state.settings[key][goal.field] = "0"
    emu.state.applied_settings[key][goal.field] = "0"


def fw_met(emu: EmulatorServer, goal: FwGoal) -> bool:
    key = f"unbound.{goal.section}"
    return emu.state.settings[key][goal.field] == "1" and not emu.state.pending("unbound")


# --------------------------------------------------------------------------
# timing the model


class TimedRuntime:
    """A ModelRuntime whose streams count the seconds spent waiting on the model (each
    ``__anext__``): everything else in an episode is the loop's own time."""

    def __init__(self, runtime: ModelRuntime) -> None:
        self.runtime = runtime
        self.seconds = 0.0
        self.calls = 0

    def stream(self, request: Any) -> AsyncIterator[Any]:
        inner = self.runtime.stream(request)
        self.calls += 1

        async def timed_stream() -> AsyncIterator[Any]:
            it = inner.__aiter__()
            try:
                while True:
                    start = time.perf_counter()
                    try:
                        item = await it.__anext__()
                    except StopAsyncIteration:
                        return
                    finally:
                        self.seconds += time.perf_counter() - start
                    yield item
            finally:
                close = getattr(inner, "aclose", None)
                if close is not None:
                    await close()

        return timed_stream()

    async def embed(self, texts: Any) -> Any:
        return await self.runtime.embed(texts)

    async def close(self) -> None:
        await self.runtime.close()


class Phases:
    """Where a run's time goes on the node: the seconds and count of each round trip of
    the Linux provider (a read of the goal, a probe) and of its transaction (snapshot,
    write, verify, reapply), recorded while ``active``. The wrappers cost microseconds
    against round trips of a tenth of a second and more."""

    def __init__(self) -> None:
        self.active: dict[str, list[float]] | None = None

    def install(self) -> None:
        from controller.providers.linux.apply import LinuxTransaction

        provider = type(providers.for_platform("linux"))
        for cls, name in (
            (provider, "observe"),
            (provider, "probe"),
            (LinuxTransaction, "snapshot"),
            (LinuxTransaction, "write"),
            (LinuxTransaction, "verify"),
            (LinuxTransaction, "reapply"),
        ):
            setattr(cls, name, self._wrap(getattr(cls, name), name))

    def _wrap(self, method: Callable[..., Any], name: str) -> Callable[..., Any]:
        async def timed_method(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            finally:
                if self.active is not None:
                    self.active.setdefault(name, []).append(time.perf_counter() - start)

        return timed_method

    @contextlib.contextmanager
    def recording(self) -> Iterator[dict[str, list[float]]]:
        self.active = {}
        try:
            yield self.active
        finally:
            self.active = None


PHASES = Phases()


async def _approve(name: str, spec: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
    return True  # --approve-tools


@dataclass
class Measured:
    seconds: float
    episode: Episode | None = None
    model_seconds: float = 0.0
    problem: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def agent_run(folder: Path, goal: str, node: str, db: Path, server: ScriptedModel) -> Measured:
    """`fazai agent GOAL` in-process: the state loaded, the store opened, resolve()."""

    async def go() -> Measured:
        runtime = TimedRuntime(ModelRuntime(settings_for(server.url, roles=ROLES)))
        try:
            start = time.perf_counter()
            state = load_state(folder)
            found, _ = find_goal(state, goal, node)
            with StateStore(db) as store:
                episode = await resolve(
                    state,
                    found,
                    state.nodes[node],
                    store,
                    cast(ModelRuntime, runtime),
                    context.cli("apply"),
                    approve=_approve,
                )
            seconds = time.perf_counter() - start
        finally:
            await runtime.close()
        return Measured(seconds, episode, runtime.seconds)

    return asyncio.run(go())


def pipeline_apply(folder: Path, db: Path) -> Measured:
    """`fazai apply --auto-approve` in-process: load, bind ownership, plan, policy, apply."""

    async def go() -> Measured:
        start = time.perf_counter()
        state = load_state(folder)
        with StateStore(db) as store:
            owned = {name: store.owned(name) for name in state.nodes}
            state = desired.prepare(state, owned, False).state
            checked = await planning.plan(state, context.cli("apply"))
            try:
                result = await writes.apply(state, checked, store)
            except FazaiError as exc:  # a policy's hold, as `fazai apply` would exit on
                return Measured(time.perf_counter() - start, problem=str(exc)[:300])
        seconds = time.perf_counter() - start
        bad = [
            f"{n.node}: {n.status.value} {n.message}"
            for n in result.nodes
            if n.status.value != "converged"
        ]
        return Measured(seconds, problem="; ".join(bad) or None)

    return asyncio.run(go())


def cli_run(argv: list[str], env: dict[str, str], want_rc: int = 0) -> Measured:
    run: Run = timed(argv, env, 300)
    problem = None
    if run.timed_out:
        problem = "timed out"
    elif run.rc != want_rc:
        problem = f"exit {run.rc}: {(run.stdout + run.stderr).strip()[-400:]}"
    return Measured(run.seconds, problem=problem, extra={"stdout": run.stdout})


def agent_cli_check(measured: Measured) -> Measured:
    """`fazai agent -o json` must say bound, 0 model calls (its JSON is read whatever its
    exit status: an unresolved goal exits 1 with the episode on stdout)."""
    try:
        (episode,) = json.loads(measured.extra["stdout"])
    except ValueError as exc:
        measured.problem = measured.problem or f"no JSON: {exc}"
        return measured
    got = (episode["outcome"], episode["path"], episode["calls"])
    if got != ("resolved", "bound", 0):
        measured.problem = f"{'/'.join(map(str, got))} model calls: {episode['reason']}"
    measured.extra = {"calls": episode["calls"], "path": episode["path"]}
    return measured


# --------------------------------------------------------------------------
# the suite


@dataclass
class Suite:
    workdir: Path
    fazai: str
    env: dict[str, str]
    config: Path
    quiet: ScriptedModel  # an empty transcript: any model call is counted, and refused
    problems: list[str] = field(default_factory=list)

    def quiet_calls(self) -> int:
        return self.quiet.calls

    def agent_cli(self, folder: Path, goal: str, node: str, db: Path) -> Measured:
        argv = [
            self.fazai,
            "agent",
            goal,
            str(folder),
            "--node",
            node,
            "--state",
            str(db),
            "--config",
            str(self.config),
            "--no-knowledge",
            "--output",
            "json",
        ]
        return agent_cli_check(cli_run(argv, self.env))

    def apply_cli(self, folder: Path, db: Path) -> Measured:
        return cli_run(
            [self.fazai, "apply", str(folder), "--state", str(db), "--auto-approve"], self.env
        )


def held(measured: Measured) -> bool:
    return measured.problem is not None and "requires 1 approval" in measured.problem


def _bound_ok(measured: Measured, calls_before: int, calls_after: int) -> Measured:
    episode = measured.episode
    assert episode is not None
    if (episode.outcome.value, episode.path.value) != ("resolved", "bound"):
        measured.problem = f"{episode.outcome.value}/{episode.path.value}: {episode.reason}"
    elif episode.calls or calls_after != calls_before:
        measured.problem = f"{episode.calls} model calls ({calls_after - calls_before} served)"
    return measured


def run_linux_goal(
    suite: Suite, fleet: Fleet, goal: LinuxGoal, distributed: str, repeat: int
) -> dict[str, Any]:
    node = fleet.nodes[NODE]
    base = suite.workdir / "linux" / goal.name
    checks = list(goal.checks)
    plain = write_state(
        base / "goal", [linux_node(fleet), goal_doc(goal.name, NODE, goal.description, checks)]
    )
    runs: dict[str, list[Measured]] = {}
    out: dict[str, Any] = {"platform": "linux", "file": goal.path, "tool": goal.tool}

    def step(label: str, work: Callable[[], Measured]) -> Measured | None:
        reset(node, goal, distributed)
        failing = failing_checks(node, checks)
        if not failing:
            suite.problems.append(f"{goal.name} {label}: the reset left the goal met")
            return None
        with PHASES.recording() as phases:
            measured = work()
        measured.extra["phases"] = {k: [len(v), sum(v)] for k, v in phases.items()}
        left = failing_checks(node, checks)
        if measured.problem is None and left:
            measured.problem = f"checks still failing after: {', '.join(left)}"
        if held(measured):
            # The shipped policies hold a File under /etc/ssh/ for a person's approval,
            # which `fazai apply --auto-approve` cannot give: the peer does not run.
            out.setdefault("held_by_policy", {})[label] = measured.problem
        elif measured.problem is not None:
            suite.problems.append(f"{goal.name} {label}: {measured.problem}")
        runs.setdefault(label, []).append(measured)
        return measured

    final: dict[str, str] | None = None
    bound: Path | None = None
    peer: Path | None = None
    for _ in range(repeat):
        with serving(synthesis_transcript(goal), strict=False) as server:
            first = step(
                "first", lambda: agent_run(plain, goal.name, NODE, base / "first.db", server)
            )
            if first is not None and server.errors:
                first.problem = "; ".join(server.errors)
                suite.problems.append(f"{goal.name} first: {first.problem}")
        if first is None or first.episode is None or first.episode.tool is None:
            reason = first.episode.reason if first and first.episode else "no episode"
            out["problem"] = f"the first run did not verify a tool: {reason}"
            break
        if final is None:
            # What the verified tool left: the second run's documents, as the commit-back
            # would write them, and the File a user would otherwise write.
            tool = first.episode.tool
            got = node.run(f"stat -c '%a %U %G' {shlex.quote(goal.path)}; cat {goal.path}")
            head, _, content = got.stdout.decode().partition("\n")
            mode, owner, group = head.split()
            final = {"content": content, "mode": mode.rjust(4, "0"), "owner": owner, "group": group}
            resolved_by = {"tool": tool.name, "params": dict(tool.params)}
            bound = write_state(
                base / "bound",
                [
                    linux_node(fleet),
                    document("Tool", tool.name, tool.spec),
                    goal_doc(goal.name, NODE, goal.description, checks, resolved_by),
                ],
            )
            peer = write_state(
                base / "file",
                [
                    linux_node(fleet),
                    document(
                        "File",
                        f"{goal.name}-file",
                        {"target": {"node": NODE}, "path": goal.path, **final},
                    ),
                ],
            )
        assert bound is not None and peer is not None
        second_runs(suite, goal.name, base, bound, peer, step)
    out.update(summarize(runs))
    return out


def second_runs(
    suite: Suite,
    name: str,
    base: Path,
    bound: Path,
    peer: Path,
    step: Callable[[str, Callable[[], Measured]], object],
) -> None:
    """The second run of a Linux goal, each way, from the same reset node."""

    def agent_bound() -> Measured:
        before = suite.quiet_calls()
        measured = agent_run(bound, name, NODE, base / "bound.db", suite.quiet)
        return _bound_ok(measured, before, suite.quiet_calls())

    step("agent_bound", agent_bound)
    step("apply_bound", lambda: pipeline_apply(bound, base / "apply.db"))
    step("apply_file", lambda: pipeline_apply(peer, base / "file.db"))
    step("agent_bound_cli", lambda: suite.agent_cli(bound, name, NODE, base / "bound-cli.db"))
    step("apply_bound_cli", lambda: suite.apply_cli(bound, base / "apply-cli.db"))
    step("apply_file_cli", lambda: suite.apply_cli(peer, base / "file-cli.db"))


def run_fw_goal(suite: Suite, emu: EmulatorServer, goal: FwGoal, repeat: int) -> dict[str, Any]:
    base = suite.workdir / "opnsense" / goal.name
    node = fw_node(emu, suite.workdir)
    plain = write_state(
        base / "goal", [node, goal_doc(goal.name, FW, goal.description, [goal.check()])]
    )
    bound = write_state(
        base / "bound",
        [
            node,
            document("Tool", goal.tool, goal.spec()),
            goal_doc(goal.name, FW, goal.description, [goal.check()], {"tool": goal.tool}),
        ],
    )
    runs: dict[str, list[Measured]] = {}
    # What fails by design today, and why (kept apart from the suite's problems).
    known: dict[str, str] = {}

    def step(label: str, work: Callable[[], Measured], expect_met: bool = True) -> None:
        fw_reset(emu, goal)
        measured = work()
        if measured.problem is None and expect_met and not fw_met(emu, goal):
            measured.problem = "the setting is not set and live after"
        runs.setdefault(label, []).append(measured)
        if measured.problem is not None:
            if label == "first":  # agent-made OPNsense tools are not verified yet
                known[label] = measured.problem
            else:
                suite.problems.append(f"{goal.name} {label}: {measured.problem}")

    for _ in range(repeat):
        with serving(fw_transcript(goal), strict=False) as server:

            def first(s: ScriptedModel = server) -> Measured:
                measured = agent_run(plain, goal.name, FW, base / "first.db", s)
                episode = measured.episode
                assert episode is not None
                if episode.outcome.value == "resolved":
                    measured.problem = None
                else:
                    measured.problem = f"{episode.outcome.value}: {episode.reason}"
                return measured

            step("first", first, expect_met=False)
            if server.errors:
                suite.problems.append(f"{goal.name} first: {'; '.join(server.errors)}")

        def agent_bound() -> Measured:
            before = suite.quiet_calls()
            measured = agent_run(bound, goal.name, FW, base / "bound.db", suite.quiet)
            return _bound_ok(measured, before, suite.quiet_calls())

        step("agent_bound", agent_bound)
        step("apply_bound", lambda: pipeline_apply(bound, base / "apply.db"))
        step(
            "agent_bound_cli", lambda: suite.agent_cli(bound, goal.name, FW, base / "bound-cli.db")
        )
        step("apply_bound_cli", lambda: suite.apply_cli(bound, base / "apply-cli.db"))
    return {
        "platform": "opnsense",
        "tool": goal.tool,
        "setting": goal.path,
        **summarize(runs),
        "expected_failures": known,
    }


def summarize(runs: Mapping[str, list[Measured]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, measured in runs.items():
        entry: dict[str, Any] = {
            "seconds": [round(m.seconds, 3) for m in measured],
            "median_seconds": round(statistics.median(m.seconds for m in measured), 3),
            "ok": all(m.problem is None for m in measured),
            "problem": next((m.problem for m in measured if m.problem), None),
        }
        if any(held(m) for m in measured):
            entry["held_by_policy"] = True
        episode = measured[0].episode
        if episode is not None:
            entry.update(
                outcome=episode.outcome.value,
                path=episode.path.value,
                calls=episode.calls,
                tokens=episode.tokens,
                episode_seconds=round(episode.seconds, 3),
                model_seconds=round(measured[0].model_seconds, 3),
                turns=len(episode.turns),
                reason=episode.reason[:300],
            )
            if episode.turns:
                entry["observations"] = [t.observation[:200] for t in episode.turns]
        elif "calls" in measured[0].extra:
            entry.update(calls=measured[0].extra["calls"], path=measured[0].extra["path"])
        phases = measured[0].extra.get("phases")
        if phases:
            entry["node_round_trips"] = {
                k: {"count": n, "seconds": round(secs, 3)} for k, (n, secs) in phases.items()
            }
        out[label] = entry
    return out


# --------------------------------------------------------------------------
# the loop's overhead


class TimedBench:
    """A NodeBench whose goal reads are timed (what ``done`` costs, outside the loop)."""

    def __init__(self, bench: NodeBench) -> None:
        self._bench = bench
        self.observe_seconds = 0.0

    async def observe(self) -> str | None:
        start = time.perf_counter()
        try:
            return await self._bench.observe()
        finally:
            self.observe_seconds += time.perf_counter() - start

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bench, name)


def loop_overhead(fleet: Fleet, workdir: Path, iterations: int) -> dict[str, Any]:
    goal = LINUX_GOALS[0]
    reset(fleet.nodes[NODE], goal, "")
    folder = write_state(
        workdir / "overhead",
        [linux_node(fleet), goal_doc(goal.name, NODE, goal.description, list(goal.checks), None)],
    )
    turns: list[Any] = [
        {"answer": {"action": "plan", "steps": [f"step {i}: think about {goal.path}"]}}
        for i in range(iterations)
    ]
    turns.append({"answer": {"action": "done", "outcome": "unresolved", "summary": "measured"}})
    transcript = Transcript.parse(turns, source="overhead")

    async def go(server: ScriptedModel) -> dict[str, Any]:
        state = load_state(folder)
        found, _ = find_goal(state, goal.name, NODE)
        runtime = TimedRuntime(ModelRuntime(settings_for(server.url, roles=ROLES)))
        try:
            with StateStore(workdir / "overhead.db") as store:
                run = context.cli("apply")
                run_id = store.start_run(
                    Trigger.CLI,
                    Command.APPLY,
                    state.source.description,
                    state.revision,
                    None,
                    run.actor,
                )
                bench = TimedBench(
                    NodeBench(
                        state, found, state.nodes[NODE], store, run_id, run, stage.load(state)
                    )
                )
                failing = await bench.observe()
                bench.observe_seconds = 0.0
                assert failing is not None
                limits = Limits(iterations=iterations + 1)
                task = task_for(
                    bench._bench.goal, state.nodes[NODE], failing, limits.iterations, None
                )
                loop = Loop(task, cast(ModelRuntime, runtime), cast(Any, bench), limits)
                start = time.perf_counter()
                episode = await loop.run()
                total = time.perf_counter() - start
        finally:
            await runtime.close()
        outside = total - runtime.seconds - bench.observe_seconds
        steps = len(episode.turns)
        return {
            "iterations": steps,
            "model_calls": episode.calls,
            "tokens": episode.tokens,
            "episode_seconds": round(total, 4),
            "model_seconds": round(runtime.seconds, 4),
            "done_observe_seconds": round(bench.observe_seconds, 4),
            "outside_model_seconds": round(outside, 4),
            "overhead_ms_per_iteration": round(1000 * outside / steps, 3),
            "model_ms_per_call": round(1000 * runtime.seconds / max(1, episode.calls), 3),
            "outcome": episode.outcome.value,
            "reason": episode.reason,
        }

    with serving(transcript) as server:
        return asyncio.run(go(server))


# --------------------------------------------------------------------------
# the report


def _m(entry: Mapping[str, Any] | None) -> float | None:
    return None if not entry or not entry.get("ok") else entry["median_seconds"]


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def ratios(result: Mapping[str, Any]) -> dict[str, float | None]:
    agent, apply_ = _m(result.get("agent_bound")), _m(result.get("apply_bound"))
    agent_cli, apply_cli = _m(result.get("agent_bound_cli")), _m(result.get("apply_bound_cli"))
    out = {
        "agent_bound/apply_bound": _ratio(agent, apply_),
        "agent_bound_cli/apply_bound_cli": _ratio(agent_cli, apply_cli),
    }
    if "apply_file" in result:
        out["agent_bound/apply_file"] = _ratio(agent, _m(result.get("apply_file")))
        out["agent_bound_cli/apply_file_cli"] = _ratio(agent_cli, _m(result.get("apply_file_cli")))
    first = result.get("first") or {}
    if first.get("ok"):
        out["first/agent_bound"] = _ratio(first["median_seconds"], agent)
    return out


def _cell(entry: Mapping[str, Any] | None) -> str:
    if not entry:
        return "-"
    if entry.get("held_by_policy"):
        return "held"
    if not entry.get("ok"):
        return "FAILED"
    return f"{entry['median_seconds']:.2f}"


def table(goals: Mapping[str, Mapping[str, Any]]) -> list[str]:
    head = (
        f"{'goal':<18}{'plat':<6}{'1st path':<13}{'calls':>6}{'tokens':>8}{'1st s':>7}"
        f"{'2nd path':>10}{'calls':>6}{'agent':>7}{'apply':>7}{'file':>7}"
        f"{'agentCLI':>9}{'applyCLI':>9}{'fileCLI':>8}{'a/ap':>6}{'cli':>6}"
    )
    lines = [head, "-" * len(head)]
    for name, r in goals.items():
        first = r.get("first") or {}
        second = r.get("agent_bound") or {}
        rat = r.get("ratios", {})

        def fmt(x: float | None) -> str:
            return "-" if x is None else f"{x:.2f}"

        first_path = (
            f"{first.get('path', '-')}" if first.get("ok") else f"{first.get('outcome', '-')}!"
        )
        lines.append(
            f"{name:<18}{r['platform'][:5]:<6}{first_path:<13}{first.get('calls', '-')!s:>6}"
            f"{first.get('tokens', '-')!s:>8}{first.get('median_seconds', 0):>7.2f}"
            f"{second.get('path', '-')!s:>10}{second.get('calls', '-')!s:>6}"
            f"{_cell(second):>7}{_cell(r.get('apply_bound')):>7}{_cell(r.get('apply_file')):>7}"
            f"{_cell(r.get('agent_bound_cli')):>9}{_cell(r.get('apply_bound_cli')):>9}"
            f"{_cell(r.get('apply_file_cli')):>8}"
            f"{fmt(rat.get('agent_bound/apply_bound')):>6}"
            f"{fmt(rat.get('agent_bound_cli/apply_bound_cli')):>6}"
        )
    return lines


def round_trips(goals: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per in-process variant, the mean over the Linux goals of each kind of round trip:
    how many, and their mean seconds (where the bound path's time goes)."""
    out: dict[str, dict[str, Any]] = {}
    for label in ("first", "agent_bound", "apply_bound", "apply_file"):
        seen = [
            r[label]["node_round_trips"]
            for r in goals.values()
            if r["platform"] == "linux" and "node_round_trips" in r.get(label, {})
        ]
        if not seen:
            continue
        kinds = sorted({k for trips in seen for k in trips})
        out[label] = {}
        for kind in kinds:
            counts = [t.get(kind, {"count": 0})["count"] for t in seen]
            secs = [t[kind]["seconds"] / t[kind]["count"] for t in seen if kind in t]
            out[label][kind] = {
                "count": round(statistics.mean(counts), 2),
                "seconds": round(statistics.mean(secs), 3),
            }
    return out


@contextlib.contextmanager
def quiet_server() -> Iterator[ScriptedModel]:
    with serving(Transcript.parse([], source="quiet"), strict=False) as server:
        yield server


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=1, help="timed runs of each goal and variant")
    ap.add_argument("--iterations", type=int, default=20, help="plan actions in the overhead run")
    ap.add_argument("--subnet", default="10.231.47.0/24")
    ap.add_argument("--only", action="append", default=[], help="only these goals (repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep the temp workdir (the states)")
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat: at least 1")

    reason = fleet_available()
    if reason:
        print(f"cannot start a fleet: {reason}", file=sys.stderr)
        return 2
    providers.load_all()  # an entry point, as the CLI is
    PHASES.install()
    workdir = Path(tempfile.mkdtemp(prefix="fazai-bench-agent-"))
    prefix = args.subnet.split("/")[0].rsplit(".", 1)[0]
    fleet = Fleet(
        [NodeSpec(NODE, f"{prefix}.11")],
        workdir=workdir / "fleet",
        subnet=args.subnet,
        subnet_wait=300,
    )
    fazai = shutil.which("fazai") or str(Path(sys.executable).parent / "fazai")
    results: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        },
        "repeat": args.repeat,
        "model": "scripted OpenAI-compatible server (controller.testing.scripted_model)",
        "goals": {},
    }
    linux = [g for g in LINUX_GOALS if not args.only or g.name in args.only]
    fws = [g for g in FW_GOALS if not args.only or g.name in args.only]
    problems: list[str] = []
    started = time.perf_counter()
    try:
        with quiet_server() as quiet, EmulatorServer(version="26.7", tls=True) as emu:
            os.environ[FW_SECRET_ENV] = emu.api_secret  # in-process runs read it here
            config = workdir / "fazai.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "apiVersion": API,
                        "kind": "ControllerConfig",
                        "sources": [{"name": "suite", "url": str(workdir / "warm")}],
                        "models": models_section(quiet.url, roles=ROLES),
                    }
                )
            )
            env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"}
            suite = Suite(workdir, fazai, env, config, quiet)
            t0 = time.perf_counter()
            fleet.start()
            node = fleet.nodes[NODE]
            results["fleet_setup_seconds"] = round(time.perf_counter() - t0, 2)
            distributed = {}
            for goal in linux:
                got = node.run(f"cat {shlex.quote(goal.path)}", check=False)
                distributed[goal.name] = got.stdout.decode() if got.returncode == 0 else ""
            # Warm-up (not timed): page cache, the first SSH handshake.
            timed(
                [fazai, "plan", str(write_state(workdir / "warm", [linux_node(fleet)]))], env, 120
            )
            print(
                f"fleet up in {results['fleet_setup_seconds']} s; {len(linux)} Linux and "
                f"{len(fws)} OPNsense goals, {args.repeat} run(s) each",
                flush=True,
            )
            for goal in linux:
                t = time.perf_counter()
                r = run_linux_goal(suite, fleet, goal, distributed[goal.name], args.repeat)
                r["ratios"] = ratios(r)
                results["goals"][goal.name] = r
                print(f"  {goal.name}: {time.perf_counter() - t:.1f} s", flush=True)
            for fw_goal in fws:
                t = time.perf_counter()
                r = run_fw_goal(suite, emu, fw_goal, args.repeat)
                r["ratios"] = ratios(r)
                results["goals"][fw_goal.name] = r
                print(f"  {fw_goal.name}: {time.perf_counter() - t:.1f} s", flush=True)
            reps = [loop_overhead(fleet, workdir, args.iterations) for _ in range(args.repeat)]
            results["loop_overhead"] = min(reps, key=lambda r: r["outside_model_seconds"])
            results["loop_overhead"]["runs"] = [r["overhead_ms_per_iteration"] for r in reps]
            problems = list(dict.fromkeys(suite.problems))  # once, not once per repeat
    finally:
        fleet.stop()
        if args.keep:
            print(f"states kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    results["problems"] = problems

    print()
    print("\n".join(table(results["goals"])))
    print(
        "\ncolumns: 1st = the first run (the agent's loop, scripted model, real verification);"
        "\n2nd = the agent with the verified tool committed (resolvedBy), in-process; apply ="
        "\nthe pipeline's plan+apply of the same bound goal, in-process; file = a File document"
        "\nwith the same final content; *CLI = the same as subprocesses (fazai agent / fazai"
        "\napply --auto-approve); a/ap = agent/apply in-process, cli = agentCLI/applyCLI."
        "\nseconds are medians of --repeat runs; held = a shipped policy holds it for approval."
    )
    trips = round_trips(results["goals"])
    results["node_round_trips"] = trips
    if trips:
        print("\nnode round trips per Linux goal, mean over goals (count x mean seconds):")
        for label, phases in trips.items():
            shown = ", ".join(
                f"{k} {v['count']:g}x{v['seconds']:.2f}" for k, v in sorted(phases.items())
            )
            print(f"  {label:<12} {shown}")
    lo = results["loop_overhead"]
    print(
        f"\nloop overhead: {lo['iterations']} iterations ({lo['model_calls']} model calls) in "
        f"{lo['episode_seconds']:.3f} s, of which {lo['model_seconds']:.3f} s waiting on the "
        f"model stream and {lo['done_observe_seconds']:.3f} s the goal read at done: "
        f"{lo['overhead_ms_per_iteration']:.2f} ms per iteration outside model time "
        f"({lo['model_ms_per_call']:.1f} ms per scripted model call)"
    )
    expected = {
        n: r["expected_failures"] for n, r in results["goals"].items() if r.get("expected_failures")
    }
    if expected:
        print("\nOPNsense agent runs that fail (known: the agent does not verify there yet):")
        for name, why in expected.items():
            for label, text in why.items():
                print(f"  {name} {label}: {text[:200]}")
    holds = {n: r["held_by_policy"] for n, r in results["goals"].items() if "held_by_policy" in r}
    if holds:
        print("\nheld by the shipped policies (not run; `fazai apply` cannot approve):")
        for name, why in holds.items():
            for label, text in why.items():
                print(f"  {name} {label}: {str(text).splitlines()[-1][:200]}")
    if problems:
        print("\nproblems:")
        for line in problems:
            print(f"  {line[:300]}")
    results["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {args.output} ({results['total_seconds']} s in all)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
