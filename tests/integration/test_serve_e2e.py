"""Issue 5's "done when", end to end, through the real pieces together: ``fazai serve
--config fazai.yaml`` as a process on a bare git remote, real SSH nodes and the OPNsense
emulator; a signed GitHub push webhook; the SSE stream and ``fazai watch``; a node
switched to ``detect`` and drifted by hand, giving a notification and a drift report and
no write; the metrics; a ``manual`` node applied by ``fazai approve``; SIGTERM.

One story in one test: each step starts from where the previous one left the fleet."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.server
import json
import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from controller.testing.fleet import Fleet, NodeSpec, fleet_available
from controller.testing.opnsense import EmulatorServer
from tests.integration.servekit import API, Infra, file_doc, firewall_node, linux_node, rule_doc

SUBNET = "10.231.25.0/24"
NODES = (NodeSpec("web-1", "10.231.25.11"), NodeSpec("db-1", "10.231.25.12"))
COMMAND = [sys.executable, "-c", "from controller.cli import run; run()"]
WRITE, READ = "FAZAI_E2E_WRITE_TOKEN", "FAZAI_E2E_READ_TOKEN"
HOOK_SECRET, NOTIFY_URL = "FAZAI_E2E_GITHUB_SECRET", "FAZAI_E2E_NOTIFY_URL"
MOTD, DB_CONF = "/etc/fazai-e2e/motd", "/etc/fazai-e2e/db.conf"
WAIT = 30.0  # seconds any one step may take before the test says what it saw


def until(condition: Callable[[], Any], what: str, explain: Callable[[], str]) -> Any:
    deadline = time.monotonic() + WAIT
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{explain()}")
        time.sleep(0.02)
    return found


def in_order(seen: Sequence[str], wanted: Sequence[str]) -> bool:
    """``wanted`` is a subsequence of ``seen``."""
    rest = iter(seen)
    return all(any(s == w for s in rest) for w in wanted)


# -- the parts around the controller ---------------------------------------------------


@contextlib.contextmanager
def started_fleet(workdir: Path) -> Iterator[Fleet]:
    reason = fleet_available()
    if reason is not None:
        pytest.skip(f"no fleet: {reason}")
    with Fleet(NODES, workdir=workdir, subnet=SUBNET, subnet_wait=600) as fleet:
        yield fleet


class Receiver(http.server.ThreadingHTTPServer):
    """A notification webhook: keeps every JSON body POSTed to it, with its headers."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append((dict(self.headers), json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()

    def notices(self, type: str, since: int = 0, **match: Any) -> list[dict[str, Any]]:
        """The bodies of ``type`` received after the first ``since`` deliveries."""
        return [
            body
            for _, body in self.received[since:]
            if body["type"] == type and all(body.get(k) == v for k, v in match.items())
        ]


class Serve:
    """``fazai serve --config FILE`` as a process; its output kept, its API found."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [*COMMAND, "serve", "--config", str(config)],
            cwd=config.parent.parent,  # relative paths in the file are the file's, not ours
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = until(self._listening, "the HTTP API to listen", self.tail)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def _listening(self) -> str | None:
        if self.process.poll() is not None:
            raise AssertionError(f"fazai serve exited {self.process.returncode}:\n{self.tail()}")
        found = re.search(r"HTTP API listening on (http://\S+)", "".join(self.output))
        return found.group(1) if found else None

    def tail(self, lines: int = 40) -> str:
        return "fazai serve said:\n" + "".join(self.output[-lines:])

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self._reader.join(10)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class Events:
    """GET /api/v1/events from the first kept event on, parsed from the wire, each with
    the wall-clock time it arrived; ends when the server closes the stream."""

    def __init__(self, url: str, token: str) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.status = 0
        self.error: httpx.TransportError | None = None
        self._thread = threading.Thread(target=self._follow, args=(url, token), daemon=True)
        self._thread.start()

    def _follow(self, url: str, token: str) -> None:
        try:
            self._read(url, token)
        except httpx.TransportError as exc:
            self.error = exc  # a stream cut without its end (a killed server)

    def _read(self, url: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        timeout = httpx.Timeout(10, read=60)
        with (
            httpx.Client(timeout=timeout) as client,
            client.stream("GET", f"{url}/api/v1/events?since=0", headers=headers) as response,
        ):
            self.status = response.status_code
            fields: dict[str, str] = {}
            for line in response.iter_lines():
                if line.startswith(":"):
                    continue  # keep-alive comment
                if line:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
                    continue
                if "data" in fields:
                    event = json.loads(fields["data"])
                    # The SSE framing says what the JSON says.
                    assert fields["event"] == event["type"], fields
                    assert fields["id"] == str(event["id"]), fields
                    self.received.append((time.time(), event))
                fields = {}

    @property
    def ended(self) -> bool:
        return not self._thread.is_alive()

    def of(self, type: str, after: int = 0, **match: Any) -> list[dict[str, Any]]:
        return [
            e
            for _, e in self.received
            if e["type"] == type
            and e["id"] > after
            and all(e["data"].get(k) == v for k, v in match.items())
        ]

    def last_id(self) -> int:
        return self.received[-1][1]["id"] if self.received else 0

    def arrival(self, event_id: int) -> float:
        return next(t for t, e in self.received if e["id"] == event_id)

    def tail(self, count: int = 25) -> str:
        return "events:\n" + "\n".join(
            f"  {e['id']} {e['type']} {e['data']}" for _, e in self.received[-count:]
        )


def what_was_seen(events: Events, serve: Serve) -> Callable[[], str]:
    return lambda: f"{events.tail()}\n{serve.tail()}"


def write_config(folder: Path, infra: Infra, node_modes: dict[str, str]) -> Path:
    source: dict[str, Any] = {
        "name": "infra", "url": infra.url, "path": "desired", "mode": "auto", "poll": 0,
    }  # fmt: skip
    if node_modes:
        source["nodeModes"] = node_modes
    config = {
        "apiVersion": API,
        "kind": "ControllerConfig",
        "state": "state.db",
        "cacheDir": "cache",
        "driftCheck": 0,  # every re-plan here is asked for, so each can be waited on
        "shutdownGrace": "30s",
        "sources": [source],
        "server": {
            "listen": "127.0.0.1:0",
            "tokens": [
                {"name": "ci", "scope": "write", "tokenRef": {"env": WRITE}},
                {"name": "dashboard", "scope": "read", "tokenRef": {"env": READ}},
            ],
            "webhooks": {"github": {"secretRef": {"env": HOOK_SECRET}}},
        },
        "notifications": [
            {"type": "webhook", "name": "ops", "urlRef": {"env": NOTIFY_URL},
             "retry": {"attempts": 3, "backoff": "200ms"}},
        ],
        "reports": {
            "dir": "reports",
            "schedules": [
                {"name": "e2e", "cron": "*/2 * * * * *", "formats": ["json", "markdown"],
                 "refresh": False, "keep": 3},
            ],
        },
    }  # fmt: skip
    folder.mkdir(exist_ok=True)
    path = folder / "fazai.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def github_push(infra: Infra, revision: str, before: str) -> bytes:
    """A push payload as GitHub sends it (the fields FazAI reads, and a few around)."""
    return json.dumps(
        {
            "ref": "refs/heads/main",
            "before": before,
            "after": revision,
            "created": False,
            "deleted": False,
            "forced": False,
            "repository": {
                "full_name": "acme/infra",
                "html_url": "https://github.example/acme/infra",
                "ssh_url": "git@github.example:acme/infra.git",
                "clone_url": infra.url,
                "pushed_at": int(time.time()),
            },
            "pusher": {"name": "alice"},
            "head_commit": {"id": revision, "message": "open 443"},
        }
    ).encode()


def signed(body: bytes, secret: str, delivery: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/e2e",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={digest}",
    }


def cat(fleet: Fleet, node: str, path: str) -> bytes:
    return fleet.nodes[node].run(f"cat {path}").stdout


def fingerprint(fleet: Fleet, node: str, path: str) -> str:
    """Content digest, inode and change time: a rewrite of the same bytes shows too."""
    result = fleet.nodes[node].run(f"sha256sum {path} && stat -c '%i %Z %Y' {path}")
    return result.stdout.decode()


def rule_descriptions(emu: EmulatorServer) -> set[str]:
    return {item.get("description", "") for item in emu.state.list("rule").values()}


def watch_until(url: str, env: dict[str, str], done: Callable[[str], bool]) -> list[str]:
    """``fazai watch --since 0`` as a process: its lines until ``done(line)``, then Ctrl-C."""
    process = subprocess.Popen(
        [*COMMAND, "watch", "--url", url, "--token-ref", f"env:{READ}", "--since", "0"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    try:
        while True:
            line = lines.get(timeout=WAIT)
            assert line is not None, f"fazai watch ended: {seen}"
            seen.append(line)
            if done(line):
                break
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    return seen


# -- the story -------------------------------------------------------------------------


def test_push_watch_converge_refuse_forgeries_detect_drift_metrics_approve_and_stop(
    tmp_path: Path,
) -> None:
    write_token, read_token = secrets.token_hex(16), secrets.token_hex(16)
    hook_secret = secrets.token_hex(20)
    receiver = Receiver()
    # The path stands in for the credential a real hook URL carries (Slack's does).
    hook_url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks/{secrets.token_hex(8)}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAZAI_")}
    env.update({WRITE: write_token, READ: read_token, HOOK_SECRET: hook_secret,
                NOTIFY_URL: hook_url})  # fmt: skip
    writer = {"Authorization": f"Bearer {write_token}"}
    reader = {"Authorization": f"Bearer {read_token}"}
    started = time.monotonic()

    with (
        started_fleet(tmp_path / "fleet") as fleet,
        EmulatorServer(version="26.1") as firewall,
        httpx.Client(timeout=10) as http,
        contextlib.closing(receiver),
    ):
        fleet_up = time.monotonic() - started
        for node in ("web-1", "db-1"):
            fleet.nodes[node].run("rm -rf /etc/fazai-e2e")
        infra = Infra(tmp_path / "infra")
        base = [
            linux_node(fleet, "web-1"),
            linux_node(fleet, "db-1"),
            firewall_node(firewall, tmp_path / "secrets"),
            file_doc("db-conf", {"node": "db-1"}, DB_CONF, "max_connections = 100\n"),
        ]
        c0 = infra.commit(base, "nodes")
        infra.push()
        config = write_config(tmp_path / "etc", infra, {})
        serve = Serve(config, env)
        try:
            url = serve.url
            events = Events(url, read_token)
            explain = what_was_seen(events, serve)
            until(
                lambda: events.of("run.finished", revision=c0, command="apply"),
                "the first reconcile at start",
                explain,
            )
            assert events.status == 200
            # Ready once every source's first pass has ended, which is a moment after its
            # last event (the pass still names its runs and notes refusals).
            until(
                lambda: http.get(f"{url}/readyz").json()["ready"] is True,
                "/readyz ready after the first pass",
                explain,
            )
            assert cat(fleet, "db-1", DB_CONF) == b"max_connections = 100\n"

            # 1. Push a commit (one rule, one file), then its signed webhook.
            c1 = infra.commit(
                [*base, file_doc("motd", {"node": "web-1"}, MOTD, "v1\n"),
                 rule_doc("allow-https", 443)],
                "open 443",
            )  # fmt: skip
            infra.push()
            body = github_push(infra, c1, c0)
            delivery = str(uuid.uuid4())
            mark = events.last_id()
            posted = time.time()
            answer = http.post(f"{url}/hooks/github", content=body,
                               headers=signed(body, hook_secret, delivery))  # fmt: skip
            assert answer.status_code == 202, answer.text
            assert answer.json() == {"accepted": True, "location": infra.url, "branch": "main"}
            (finished,) = until(
                lambda: events.of("run.finished", mark, command="apply", revision=c1),
                "the pushed commit applied",
                explain,
            )
            assert finished["data"]["status"] == "succeeded", explain()
            run = [e for _, e in events.received if e["id"] > mark and e["id"] <= finished["id"]]
            assert in_order(
                [e["type"] for e in run],
                ["reconcile.queued", "run.started", "node.read", "run.finished",
                 "run.started", "change.applied", "node.verified", "run.finished"],
            ), explain()  # fmt: skip
            (queued,) = [e for e in run if e["type"] == "reconcile.queued"]
            assert (queued["data"]["reason"], queued["data"]["revision"]) == ("webhook", c1)
            (plan_started,) = events.of("run.started", mark, command="plan", revision=c1)
            assert plan_started["data"]["trigger"] == "webhook"
            applied = {
                (e["data"]["node"], e["data"]["kind"], e["data"]["name"])
                for e in run
                if e["type"] == "change.applied"
            }
            # One step per resource, and the firewall's reload (kind OPNsense).
            assert {a for a in applied if a[1] != "OPNsense"} == {
                ("web-1", "File", "motd"),
                ("edge-fw", "FirewallRule", "allow-https"),
            }
            verified = {e["data"]["node"] for e in run if e["type"] == "node.verified"}
            assert verified == {"web-1", "edge-fw"}
            assert all(e["data"]["source"] == "infra" for e in run)
            to_start = datetime.fromisoformat(plan_started["time"]).timestamp() - posted
            seen_after = events.arrival(plan_started["id"]) - posted
            to_converged = events.arrival(finished["id"]) - posted
            print(
                f"\nwebhook POST -> run.started {to_start:.3f} s (seen on SSE after "
                f"{seen_after:.3f} s), -> converged {to_converged:.3f} s"
            )
            assert to_start < 3.0, f"run.started {to_start:.3f} s after the webhook"
            # Read directly: the node has the file, the firewall the rule.
            assert cat(fleet, "web-1", MOTD) == b"v1\n"
            assert "allow-https to 443" in rule_descriptions(firewall)

            watched = watch_until(
                url, env, lambda line: "run.finished" in line and c1[:12] in line
                and "apply" in line,
            )  # fmt: skip
            # From the webhook's line on (--since 0 replays the reconcile at start too).
            first = next(
                i
                for i, line in enumerate(watched)
                if "reconcile.queued" in line and c1[:12] in line
            )
            ours = watched[first:]
            assert in_order(
                [line.split()[1] for line in ours],
                ["reconcile.queued", "run.started", "node.read", "run.finished",
                 "run.started", "change.applied", "node.verified", "run.finished"],
            ), watched  # fmt: skip
            in_run = f"run {finished['data']['run_id']} "
            changes = [line for line in ours if "change.applied" in line and in_run in line]
            assert any("web-1" in line and "File/motd" in line for line in changes), watched
            assert any("edge-fw" in line and "FirewallRule/allow-https" in line for line in changes)
            assert "succeeded" in watched[-1]

            # 2. The same delivery again, and a forged one: refused, nothing reconciled.
            mark = events.last_id()
            replay = http.post(f"{url}/hooks/github", content=body,
                               headers=signed(body, hook_secret, delivery))  # fmt: skip
            assert replay.status_code == 409, replay.text
            assert "already received" in replay.json()["error"]
            forged_body = github_push(infra, c0, c1)  # "roll back to c0", signed with a guess
            forged = http.post(
                f"{url}/hooks/github",
                content=forged_body,
                headers=signed(forged_body, secrets.token_hex(20), str(uuid.uuid4())),
            )
            assert forged.status_code == 401, forged.text
            unsigned = signed(forged_body, hook_secret, str(uuid.uuid4()))
            del unsigned["X-Hub-Signature-256"]
            assert http.post(f"{url}/hooks/github", content=forged_body,
                             headers=unsigned).status_code == 401  # fmt: skip
            time.sleep(1.0)  # far more than a webhook takes to start a reconcile (above)
            assert events.received[-1][1]["id"] == mark, explain()
            assert cat(fleet, "web-1", MOTD) == b"v1\n"

            # 6 (first time). SIGTERM: exit 0, the event stream closed by the server.
            assert serve.terminate() == 0, serve.tail()
            assert any(line.endswith("fazai.serve: stopped\n") for line in serve.output)
            until(lambda: events.ended, "the event stream to end", explain)
            assert events.error is None, events.error
        finally:
            serve.kill()
        phase_one = "".join(serve.output)

        # 3. Switch web-1 to detect (and edge-fw to manual) in fazai.yaml; restart.
        config = write_config(tmp_path / "etc", infra, {"web-1": "detect", "edge-fw": "manual"})
        serve = Serve(config, env)
        try:
            url = serve.url
            events = Events(url, read_token)
            explain = what_was_seen(events, serve)
            (start,) = until(
                lambda: events.of("run.finished", command="plan", revision=c1),
                "the reconcile at start",
                explain,
            )
            assert start["data"]["status"] == "succeeded"
            assert not events.of("drift.detected"), explain()  # all in sync, as left
            # By hand: web-1 (detect) and db-1 (still auto) drift.
            fleet.nodes["web-1"].run(f"printf 'edited by hand\\n' > {MOTD}")
            fleet.nodes["db-1"].run(f"printf 'max_connections = 5\\n' > {DB_CONF}")
            before = fingerprint(fleet, "web-1", MOTD)
            notified_before = len(receiver.received)

            trigger = {"source": "infra"}
            assert http.post(f"{url}/api/v1/reconcile", json=trigger).status_code == 401
            assert http.post(f"{url}/api/v1/reconcile", json=trigger,
                             headers=reader).status_code == 403  # fmt: skip
            mark = events.last_id()
            answer = http.post(f"{url}/api/v1/reconcile", json=trigger, headers=writer)
            assert (answer.status_code, answer.json()) == (202, {"queued": True, "source": "infra"})
            until(
                lambda: events.of("run.finished", mark, command="apply"),
                "db-1 healed by the check",
                explain,
            )
            drift = {e["data"]["node"]: e for e in events.of("drift.detected", mark)}
            assert set(drift) == {"web-1", "db-1"}, explain()
            assert drift["web-1"]["data"]["mode"] == "detect"
            assert drift["db-1"]["data"]["mode"] == "auto"
            ((kind, name, action),) = [
                (i["kind"], i["name"], i["action"]) for i in drift["web-1"]["data"]["items"]
            ]
            assert (kind, name, action) == ("File", "motd", "update")
            assert {e["data"]["node"] for e in events.of("change.applied", mark)} == {"db-1"}
            assert cat(fleet, "db-1", DB_CONF) == b"max_connections = 100\n"
            assert fingerprint(fleet, "web-1", MOTD) == before  # not written, not even touched

            (notice,) = until(
                lambda: receiver.notices("drift", notified_before, node="web-1"),
                "the drift notification",
                explain,
            )
            assert notice["revision"] == c1 and notice["mode"] == "detect"
            assert notice["source"] == "infra"
            ((res_kind, res_name),) = [(r["kind"], r["name"]) for r in notice["resources"]]
            assert (res_kind, res_name) == ("File", "motd")
            assert "web-1" in notice["title"]
            assert "File/motd" in notice["text"] and c1[:12] in notice["text"]
            (headers, _) = next(
                (h, b) for h, b in receiver.received[notified_before:] if b is notice
            )
            assert headers["X-FazAI-Notice"] == "drift"

            table = {n["node"]: n for n in http.get(f"{url}/api/v1/drift", headers=reader)
                     .json()["nodes"]}  # fmt: skip
            assert (table["web-1"]["drifted"], table["web-1"]["mode"]) == (1, "detect")
            assert table["db-1"]["drifted"] == 0

            # ... and the scheduled report shows it (the schedule fires every 2 s).
            latest = tmp_path / "etc" / "reports" / "e2e" / "latest.json"

            def reported() -> dict[str, Any] | None:
                if not latest.exists():
                    return None
                report: dict[str, Any] = json.loads(latest.read_text())
                nodes = {n["node"]: n for n in report["nodes"]}
                drifted = {n: nodes[n]["drifted"] for n in ("web-1", "db-1") if n in nodes}
                # One made after the check: db-1 healed, web-1 only reported.
                return report if drifted == {"web-1": 1, "db-1": 0} else None

            report = until(reported, "a report of the check", explain)
            ((node, rkind, rname, raction),) = [
                (r["node"], r["kind"], r["name"], r["action"]) for r in report["resources"]
            ]
            assert (node, rkind, rname, raction) == ("web-1", "File", "motd", "update")
            assert {n["node"]: n["mode"] for n in report["nodes"]}["web-1"] == "detect"
            assert (latest.parent / "latest.md").read_text().count("motd") >= 1

            # A second check finds the same drift: no second notice (checked below, once
            # a later notice proves the notifier has handled this check's events).
            mark = events.last_id()
            assert http.post(f"{url}/api/v1/reconcile", json=trigger,
                             headers=writer).status_code == 202  # fmt: skip
            until(
                lambda: events.of("run.finished", mark, command="plan"),
                "the second check",
                explain,
            )
            assert [e["data"]["node"] for e in events.of("drift.detected", mark)] == ["web-1"]
            assert not events.of("run.started", mark, command="apply")
            assert fingerprint(fleet, "web-1", MOTD) == before

            # 4. Metrics, with a read token, parsed as Prometheus parses them.
            assert http.get(f"{url}/metrics").status_code == 401
            scraped = http.get(f"{url}/metrics", headers=reader)
            assert scraped.status_code == 200
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(scraped.text)
                for s in family.samples
            }
            source = (("source", "infra"),)
            assert samples[("fazai_reconcile_duration_seconds_count", source)] >= 1
            synced = samples[("fazai_last_successful_sync_timestamp_seconds", source)]
            assert time.time() - 120 < synced <= time.time()
            assert samples[("fazai_source_up", source)] == 1
            assert samples[("fazai_drifted_resources", (("node", "web-1"),))] == 1
            assert samples[("fazai_drifted_resources", (("node", "db-1"),))] == 0

            # 5. manual: a new rule for edge-fw waits for approval; fazai approve applies it.
            c2 = infra.commit(
                [*base, file_doc("motd", {"node": "web-1"}, MOTD, "v1\n"),
                 rule_doc("allow-https", 443), rule_doc("allow-dns", 53, sequence=110)],
                "open 53",
            )  # fmt: skip
            infra.push()
            body = github_push(infra, c2, c1)
            answer = http.post(f"{url}/hooks/github", content=body,
                               headers=signed(body, hook_secret, str(uuid.uuid4())))  # fmt: skip
            assert answer.status_code == 202, answer.text
            (pending,) = until(
                lambda: events.of("approval.pending", revision=c2), "an approval", explain
            )
            approval = pending["data"]["approval_id"]
            assert pending["data"]["nodes"] == ["edge-fw"]
            listed = http.get(f"{url}/api/v1/approvals", headers=reader).json()["approvals"]
            assert [(a["id"], a["revision"], a["nodes"]) for a in listed] == [
                (approval, c2, ["edge-fw"])
            ]
            assert {(c["kind"], c["name"]) for c in listed[0]["plan"]["changes"]} == {
                ("FirewallRule", "allow-dns")
            }
            assert "allow-dns to 53" not in rule_descriptions(firewall)
            approve = subprocess.run(
                [*COMMAND, "approve", approval, "-y", "--url", url, "--token-ref", f"env:{WRITE}"],
                env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            assert approve.returncode == 0, approve.stderr
            run_id = int(approve.stdout)
            (done,) = until(
                lambda: events.of("run.finished", run_id=run_id), "the approved apply", explain
            )
            assert done["data"]["status"] == "succeeded"
            assert done["data"]["approval_id"] == approval
            record = http.get(f"{url}/api/v1/runs/{run_id}", headers=reader).json()
            assert (record["command"], record["trigger"], record["revision"]) == (
                "apply",
                "api",
                c2,
            )
            assert [(n["node"], n["status"]) for n in record["nodes"]] == [("edge-fw", "converged")]
            assert "allow-dns to 53" in rule_descriptions(firewall)
            assert http.get(f"{url}/api/v1/approvals", headers=reader).json()["approvals"] == []
            assert fingerprint(fleet, "web-1", MOTD) == before  # detect still never writes
            # The applied notice comes after every notice of earlier events (one queue per
            # target): by then a repeated drift notice would have arrived.
            until(lambda: receiver.notices("applied", runId=run_id), "the applied notice", explain)
            assert len(receiver.notices("drift", notified_before, node="web-1")) == 1, (
                receiver.received
            )

            # 6. SIGTERM: exit 0.
            assert serve.terminate() == 0, serve.tail()
            assert any(line.endswith("fazai.serve: stopped\n") for line in serve.output)
        finally:
            serve.kill()

    # No secret in what the controller logged, and no failure nobody noticed.
    logged = phase_one + "".join(serve.output)
    assert not [line for line in logged.splitlines() if " ERROR " in line or "Traceback" in line]
    for secret in (write_token, read_token, hook_secret, hook_url):
        assert secret not in logged
    print(f"fleet up in {fleet_up:.1f} s, story in {time.monotonic() - started:.1f} s")
