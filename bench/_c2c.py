"""The parts of the commit-to-converged benchmark: the firewall, the repositories, the
``fazai serve`` process and its event stream.

Imported by bench/commit_to_converged.py (which puts bench/ on sys.path). Everything
here talks to the controller the way a user would: a config file, the ``fazai`` command,
git, a signed webhook and the HTTP API. Nothing imports controller.reconcile.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from controller.providers.opnsense.identity import object_uuid  # noqa: E402
from controller.secrets import Secret  # noqa: E402
from controller.server.client import ApiClient  # noqa: E402
from controller.testing.opnsense import EmulatorServer  # noqa: E402

API = "fazai.dev/v1alpha1"
NODE = "bench-fw"
CHANGING_RULE = "bench-change"  # the one rule every commit changes
TOKEN_ENV = "FAZAI_BENCH_TOKEN"
HOOK_SECRET_ENV = "FAZAI_BENCH_HOOK_SECRET"
GIT_TIMEOUT = 30.0
HTTP_TIMEOUT = 10.0
AUTHOR = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@fazai.invalid",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@fazai.invalid",
}
LISTENING = re.compile(rb"HTTP API listening on (https?://\S+)")


def epoch(iso: str) -> float:
    """An event's ``time`` (ISO 8601, UTC) as seconds since the epoch, like time.time()."""
    return datetime.fromisoformat(iso).timestamp()


# --------------------------------------------------------------------------------------
# the firewall


class Firewall:
    """The OPNsense emulator over HTTPS, in this process (a thread), with a hook on what
    it makes *live*: ``mark_applied`` is what the emulator runs when ``filter/apply``
    brings saved rules into the running filter, so the time it records for the changing
    rule's new port is when the change is on the firewall, not merely saved."""

    def __init__(self, folder: Path, version: str = "26.1") -> None:
        self.folder = folder
        self.server = EmulatorServer(version=version, tls=True)
        self.rule_uuid = object_uuid(NODE, "FirewallRule", CHANGING_RULE)
        self._cond = threading.Condition()
        self.live_changes: list[tuple[float, str | None]] = []  # (time, destination port)
        self._live_port: str | None = None

    def start(self) -> Firewall:
        self.server.start()
        self.folder.mkdir(parents=True, exist_ok=True)
        for name, value in (("key", self.server.api_key), ("secret", self.server.api_secret)):
            path = self.folder / f"{NODE}.{name}"
            path.write_text(value + "\n")
            path.chmod(0o600)
        state = self.server.state
        original = state.mark_applied

        def mark_applied(subsystems: Any) -> None:
            original(subsystems)
            with state.lock:
                item = state.applied["rule"].get(self.rule_uuid)
                port = item.get("destination_port") if item else None
            with self._cond:
                if port != self._live_port:
                    self._live_port = port
                    self.live_changes.append((time.time(), port))
                    self._cond.notify_all()

        # An instance attribute shadows the method: the emulator's handlers call this.
        state.mark_applied = mark_applied  # type: ignore[method-assign]
        self._http = httpx.Client(
            base_url=self.server.url,
            auth=self.server.auth,
            verify=str(self.server.certificate),
            timeout=HTTP_TIMEOUT,
        )
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._http.close()
        self.server.stop()

    live_hook = True  # wait_live knows the moment the change went live
    kind = "FirewallRule"
    change_name = CHANGING_RULE

    def documents(self, value: int, rules: int = 20, aliases: int = 5) -> dict[str, str]:
        return documents(self, rules, aliases, value)

    def change_document(self, value: int) -> str:
        return change_document(value)

    def read(self) -> str | None:
        return self.read_port()

    def node_document(self) -> dict[str, Any]:
        return {
            "apiVersion": API,
            "kind": "Node",
            "metadata": {"name": NODE, "labels": {"role": "edge"}},
            "spec": {
                "platform": "opnsense",
                "url": self.server.url,
                "apiKeyRef": {"file": str(self.folder / f"{NODE}.key")},
                "apiSecretRef": {"file": str(self.folder / f"{NODE}.secret")},
                "tls": {"caBundle": str(self.server.certificate)},
                "requestTimeout": 10,
            },
        }

    def live_since(self, index: int) -> list[tuple[float, str | None]]:
        with self._cond:
            return list(self.live_changes[index:])

    def mark(self) -> int:
        with self._cond:
            return len(self.live_changes)

    def requests_since(self, index: int) -> tuple[int, float, list[str]]:
        """Requests the firewall answered from ``index`` on: count, seconds spent in its
        handlers (the firewall's share of the latency), and ``METHOD path seconds`` of
        each."""
        records = self.server.requests.records[index:]
        return (
            len(records),
            sum(r.duration for r in records),
            [f"{r.method} {r.path} {r.duration:.4f}" for r in records],
        )

    def requests_mark(self) -> int:
        return len(self.server.requests)

    def wait_live(self, port: int, since: int, deadline: float) -> float | None:
        """When the changing rule went live with ``port`` (after change ``since``)."""
        with self._cond:
            while True:
                for at, live in self.live_changes[since:]:
                    if live == str(port):
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.5))

    def read_port(self) -> str | None:
        """The changing rule's destination port as the firewall's API answers it (one
        GET over the kept-alive HTTPS connection)."""
        answer = self._http.get(f"/api/firewall/filter/getRule/{self.rule_uuid}")
        answer.raise_for_status()
        rule = answer.json().get("rule") or {}
        value = rule.get("destination_port")
        return str(value) if value is not None else None


# --------------------------------------------------------------------------------------
# a Linux node


LINUX_NODE = "c2c-node"
LINUX_SUBNET = "10.231.24.0/24"  # --subnet moves it (another fleet may hold this one)
CHANGING_FILE = "/etc/fazai-bench/changing.conf"
# Debian's own /root/.bashrc (base-files' dot.bashrc): comments only. A fleet node's root
# is a copy of this host's, whose /root/.bashrc may start pyenv: bash reads it for every
# command sshd runs, which costs such a host ~80 ms per command and puts pyenv's shim in
# front of python3 (~40 ms more). --stock-bashrc puts this one on the node instead.
STOCK_BASHRC = """\
# ~/.bashrc: executed by bash(1) for non-login shells.

# Note: PS1 and umask are already set in /etc/profile. You should not
# need this unless you want different defaults for root.
# PS1='${debian_chroot:+($debian_chroot)}\\h:\\w\\$ '
# umask 022
"""


class LinuxNode:
    """One real OpenSSH node of controller.testing.fleet (its own network namespace and
    copy-on-write root); the change is a File's content. There is no hook on the node:
    the change is observed by reading the file (nsenter, no SSH) once the run finished."""

    live_hook = False
    kind = "File"
    change_name = "bench-changing"

    def __init__(
        self, folder: Path, subnet: str = LINUX_SUBNET, stock_bashrc: bool = False
    ) -> None:
        import ipaddress

        from controller.testing.fleet import Fleet, NodeSpec, fleet_available

        reason = fleet_available()
        if reason is not None:
            raise RuntimeError(f"no fleet here: {reason}")
        self.fleet = Fleet(
            [NodeSpec(LINUX_NODE, str(ipaddress.IPv4Network(subnet)[11]))],
            workdir=folder,
            subnet=subnet,
            subnet_wait=600,
        )
        self.stock_bashrc = stock_bashrc

    def start(self) -> LinuxNode:
        self.fleet.start()
        self.node = self.fleet.nodes[LINUX_NODE]
        if self.stock_bashrc:
            self.node.run("cat > /root/.bashrc", input=STOCK_BASHRC.encode())
        return self

    def stop(self) -> None:
        self.fleet.stop()

    def mark(self) -> int:
        return 0

    def _sessions(self) -> list[str]:
        try:
            text = self.node.sshd_log.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if "Accepted publickey" in line]

    def requests_mark(self) -> int:
        return len(self._sessions())

    def requests_since(self, index: int) -> tuple[int, float, list[str]]:
        """SSH connections the controller opened to the node (sshd's log); no time."""
        sessions = self._sessions()[index:]
        return len(sessions), 0.0, ["ssh connection"] * len(sessions)

    def wait_live(self, value: int, since: int, deadline: float) -> float | None:
        return None

    def read(self) -> str | None:
        done = self.node.run(f"cat {CHANGING_FILE}", check=False, timeout=HTTP_TIMEOUT)
        if done.returncode != 0:
            return None
        text = done.stdout.decode(errors="replace").strip()
        return text.removeprefix("listen_port = ")

    def node_document(self) -> dict[str, Any]:
        return {
            "apiVersion": API,
            "kind": "Node",
            "metadata": {"name": LINUX_NODE, "labels": {"role": "bench"}},
            "spec": {
                "platform": "linux",
                "address": self.node.address,
                "auth": {"privateKeyFile": str(self.fleet.private_key_file)},
                "knownHostsFile": str(self.fleet.known_hosts_file),
                "connectTimeout": 5,
            },
        }

    def documents(self, value: int, files: int = 10, _unused: int = 0) -> dict[str, str]:
        """The node, ``files`` files that never change, and the one that does."""
        base = [
            _doc_for(
                LINUX_NODE,
                "File",
                f"bench-file-{i:02d}",
                path=f"/etc/fazai-bench/file-{i:02d}.conf",
                content=f"# bench file {i}\nvalue = {i}\n",
                mode="0644",
            )
            for i in range(files)
        ]
        return {
            "nodes.yaml": yaml.safe_dump(self.node_document(), sort_keys=False),
            "base.yaml": yaml.safe_dump_all(base, sort_keys=False) if base else "",
            "change.yaml": self.change_document(value),
        }

    def change_document(self, value: int) -> str:
        doc = _doc_for(
            LINUX_NODE,
            "File",
            self.change_name,
            path=CHANGING_FILE,
            content=f"listen_port = {value}\n",
            mode="0644",
        )
        return yaml.safe_dump(doc, sort_keys=False)


# --------------------------------------------------------------------------------------
# the desired state


def documents(firewall: Firewall, rules: int, aliases: int, port: int) -> dict[str, str]:
    """The files of the desired-state folder: the node, a base of ``aliases`` aliases and
    ``rules`` rules that never change, and the one rule every commit changes (its own
    file, so a commit touches one file)."""
    node = yaml.safe_dump(firewall.node_document(), sort_keys=False)
    base: list[dict[str, Any]] = []
    for i in range(aliases):
        base.append(
            _doc(
                "FirewallAlias",
                f"net-{i:03d}",
                name=f"bench_net_{i:03d}",
                type="network",
                content=[f"10.{100 + i // 250}.{i % 250}.0/24"],
                description=f"bench network {i}",
            )
        )
    for i in range(rules):
        destination: dict[str, Any] = {"port": 1000 + i}
        if aliases:
            destination["net"] = f"bench_net_{i % aliases:03d}"
        base.append(
            _doc(
                "FirewallRule",
                f"base-{i:03d}",
                action="pass" if i % 5 else "block",
                interface="lan",
                protocol="TCP",
                destination=destination,
                sequence=1000 + i,
                description=f"bench base rule {i}",
            )
        )
    return {
        "nodes.yaml": node,
        "base.yaml": yaml.safe_dump_all(base, sort_keys=False) if base else "",
        "change.yaml": change_document(port),
    }


def change_document(port: int) -> str:
    doc = _doc(
        "FirewallRule",
        CHANGING_RULE,
        interface="lan",
        protocol="TCP",
        destination={"net": "10.231.0.10", "port": port},
        sequence=10,
        description="the rule the benchmark changes",
    )
    return yaml.safe_dump(doc, sort_keys=False)


def _doc(kind: str, metadata_name: str, **spec: Any) -> dict[str, Any]:
    return _doc_for(NODE, kind, metadata_name, **spec)


def _doc_for(node: str, kind: str, metadata_name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": kind,
        "metadata": {"name": metadata_name},
        "spec": {"target": {"node": node}, **spec},
    }


# --------------------------------------------------------------------------------------
# git


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **AUTHOR, "GIT_TERMINAL_PROMPT": "0"}
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} in {cwd}: {result.stderr.strip()}")
    return result.stdout.strip()


@dataclass
class Commit:
    revision: str
    before: str
    started: float  # time.time() before `git commit`
    made: float  # time.time() once `git commit` returned: the latency's zero
    pushed: float | None = None  # `git push` returned (webhook path)


class WorkingCopy:
    """A git working copy whose ``desired/`` folder holds the documents; with a bare
    ``remote`` it pushes there (the forge)."""

    def __init__(self, path: Path, files: dict[str, str], remote: Path | None = None) -> None:
        self.path = path
        self.remote = remote
        path.mkdir(parents=True, exist_ok=True)
        git(path, "init", "-q", "-b", "main")
        folder = path / "desired"
        folder.mkdir(exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text)
        git(path, "add", "--all")
        git(path, "commit", "-q", "-m", "the desired state")
        if remote is not None:
            git(remote.parent, "init", "-q", "--bare", "-b", "main", remote.name)
            git(path, "remote", "add", "origin", str(remote))
            git(path, "push", "-q", "origin", "main")

    @property
    def head(self) -> str:
        return git(self.path, "rev-parse", "HEAD")

    def commit_change(self, text: str, message: str) -> Commit:
        """Write ``desired/change.yaml`` (the one resource that changes) and commit it."""
        before = self.head
        (self.path / "desired" / "change.yaml").write_text(text)
        started = time.time()
        git(self.path, "commit", "-q", "-a", "-m", message)
        made = time.time()
        return Commit(self.head, before, started, made)

    def push(self, commit: Commit) -> None:
        git(self.path, "push", "-q", "origin", "main")
        commit.pushed = time.time()


# --------------------------------------------------------------------------------------
# the webhook


def github_push(url: str, commit: Commit, secret: str) -> tuple[dict[str, str], bytes]:
    """A push delivery shaped like GitHub's (headers and the payload fields a receiver
    reads), signed with ``secret`` (X-Hub-Signature-256, HMAC-SHA256 of the body)."""
    payload = {
        "ref": "refs/heads/main",
        "before": commit.before,
        "after": commit.revision,
        "created": False,
        "deleted": False,
        "forced": False,
        "compare": f"{url}/compare/{commit.before[:12]}...{commit.revision[:12]}",
        "repository": {
            "name": "infra",
            "full_name": "bench/infra",
            "clone_url": url,
            "html_url": url,
            "default_branch": "main",
            "pushed_at": int(time.time()),
        },
        "pusher": {"name": "bench", "email": "bench@fazai.invalid"},
        "head_commit": {"id": commit.revision, "message": "bench", "timestamp": ""},
    }
    body = json.dumps(payload).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/bench",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "1",
        "X-Hub-Signature-256": f"sha256={signature}",
    }
    return headers, body


# --------------------------------------------------------------------------------------
# fazai serve


def serve_config(
    folder: Path, source: dict[str, Any], *, settle: str | None = None
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "apiVersion": API,
        "kind": "ControllerConfig",
        "state": str(folder / "state.db"),
        "cacheDir": str(folder / "cache"),
        # No periodic re-plan while measuring: only the commits start reconciles.
        "driftCheck": 0,
        "sources": [
            {"name": "infra", "branch": "main", "path": "desired", "mode": "auto", "poll": 0}
            | source
        ],
        "server": {
            "listen": "127.0.0.1:0",
            "tokens": [{"name": "bench", "scope": "write", "tokenRef": {"env": TOKEN_ENV}}],
            "webhooks": {"github": {"secretRef": {"env": HOOK_SECRET_ENV}}},
        },
    }
    if settle is not None:
        config["settle"] = settle
    return config


class Serve:
    """``fazai serve --config FILE`` as a subprocess; its stderr goes to ``serve.log``.
    With ``probe`` (or ``cprofile``), it runs under bench/_loopprobe.py, which writes its
    event-loop stalls to ``probe`` (and a cProfile of the loop thread to ``cprofile``)."""

    def __init__(
        self,
        folder: Path,
        config: dict[str, Any],
        probe: Path | None = None,
        cprofile: Path | None = None,
    ) -> None:
        self.folder = folder
        self.config_file = folder / "fazai.yaml"
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_file = folder / "serve.log"
        self.token = secrets.token_urlsafe(24)
        self.hook_secret = secrets.token_urlsafe(24)
        self.probe = probe
        self.cprofile = cprofile
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def command(self) -> list[str]:
        args = ["serve", "--config", str(self.config_file)]
        if self.probe is not None or self.cprofile is not None:
            script = str(Path(__file__).resolve().parent / "_loopprobe.py")
            probe = self.probe or self.folder / "loop.json"
            extra = ["--cprofile", str(self.cprofile)] if self.cprofile else []
            return [sys.executable, script, "--out", str(probe), *extra, "--", *args]
        beside = Path(sys.executable).with_name("fazai")
        found = str(beside) if beside.exists() else shutil.which("fazai")
        if found is None:
            raise RuntimeError("no `fazai` command: run with the project's .venv/bin/python")
        return [found, *args]

    def start(self, timeout: float = 60.0, on_listening: Any = None) -> float:
        """Start and wait until the API answers and the source was read once (readyz);
        returns the seconds that took. ``on_listening(url)`` is called as soon as the API
        listens, before the first reconcile is over."""
        env = {**os.environ, TOKEN_ENV: self.token, HOOK_SECRET_ENV: self.hook_secret}
        self._log = self.log_file.open("wb")
        started = time.monotonic()
        self.process = subprocess.Popen(
            self.command(), cwd=self.folder, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = started + timeout
        while not self.url:
            found = LISTENING.search(self.log_file.read_bytes())
            if found:
                self.url = found.group(1).decode()
                break
            self._check(deadline)
            time.sleep(0.02)
        if on_listening is not None:
            on_listening(self.url)
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=HTTP_TIMEOUT).status_code == 200:
                    return time.monotonic() - started
            self._check(deadline)
            time.sleep(0.05)

    def start_profiling(self) -> None:
        """With ``cprofile``: profile from now on (the first reconcile left out)."""
        assert self.process is not None and self.cprofile is not None
        self.process.send_signal(signal.SIGUSR1)

    def _check(self, deadline: float) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"fazai serve exited ({self.process.returncode}):\n{self.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"fazai serve did not become ready:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def client(self) -> ApiClient:
        return ApiClient(self.url, Secret(self.token))

    def post_hook(self, headers: dict[str, str], body: bytes) -> int:
        answer = httpx.post(
            f"{self.url}/hooks/github", headers=headers, content=body, timeout=HTTP_TIMEOUT
        )
        return answer.status_code

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._log is not None:
            self._log.close()
        return self.process.returncode


# --------------------------------------------------------------------------------------
# the event stream


@dataclass
class Seen:
    arrived: float  # time.time() when the bench read it off the stream
    event: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.event.get("type", ""))

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.event.get("data") or {}
        return data

    @property
    def at(self) -> float:
        """When the controller published it."""
        return epoch(str(self.event["time"]))


@dataclass
class EventLog:
    """Every event of GET /api/v1/events, with its arrival time, read by a thread."""

    client: ApiClient
    events: list[Seen] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> EventLog:
        threading.Thread(target=self._read, name="sse", daemon=True).start()
        if not self.connected.wait(HTTP_TIMEOUT):
            raise RuntimeError("the event stream did not connect")
        return self

    def _read(self) -> None:
        def status(text: str) -> None:
            if text.startswith("connected"):
                self.connected.set()

        with contextlib.suppress(Exception):  # the stream ends when serve stops
            for event in self.client.events(on_status=status):
                with self._cond:
                    self.events.append(Seen(time.time(), event))
                    self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def since(self, index: int) -> list[Seen]:
        with self._cond:
            return list(self.events[index:])

    def wait(self, index: int, match: Any, deadline: float) -> Seen | None:
        """The first event from ``index`` on for which ``match(seen)`` is true."""
        with self._cond:
            while True:
                for seen in self.events[index:]:
                    if match(seen):
                        return seen
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.5))


# --------------------------------------------------------------------------------------
# /healthz while reconciling


class HealthProbe(threading.Thread):
    """GET /healthz every ``interval`` seconds; keeps (time, seconds) of each answer. A
    slow answer means the event loop was busy with something else."""

    def __init__(self, url: str, interval: float = 0.05) -> None:
        super().__init__(name="healthz", daemon=True)
        self.url = url
        self.interval = interval
        self.stop = threading.Event()
        self.samples: list[tuple[float, float]] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=HTTP_TIMEOUT) as http:
            while not self.stop.is_set():
                sent, started = time.time(), time.perf_counter()
                with contextlib.suppress(httpx.HTTPError):
                    http.get("/healthz")
                    self.samples.append((sent, time.perf_counter() - started))
                self.stop.wait(self.interval)


@contextlib.contextmanager
def stopping(thread: HealthProbe | None) -> Iterator[None]:
    try:
        yield
    finally:
        if thread is not None:
            thread.stop.set()
            thread.join(HTTP_TIMEOUT)
