#!/usr/bin/env python3
"""Commit-to-converged latency of `fazai serve` for a one-rule change.

A FirewallRule's destination port is changed in the desired-state git repository, one
commit at a time, and the time is taken from the moment the commit exists until the
change is *converged*: the new port is live on the firewall (the OPNsense emulator over
HTTPS; the bench hooks the moment the emulator's filter/apply makes it live, and then
reads it back over the emulator's REST API) AND the controller says the run is finished
(`run.finished` of the apply run on GET /api/v1/events). Two paths:

* webhook: a bare "remote" repository stands in for the forge. Each commit is pushed to
  it, then a GitHub-shaped push webhook, HMAC-signed, is POSTed to /hooks/github of a
  running `fazai serve` whose source is that remote (mirrored and fetched by the
  controller), mode auto, poll 0.
* watch: the source's `watch:` is a local working copy; the commit is made in it.

`--paths linux-webhook,linux-watch` do the same with one File on one real OpenSSH node
of controller.testing.fleet (subnet 10.231.24.0/24, root needed), read back in the node.

`fazai serve` runs as a subprocess with a generated fazai.yaml (API on a free loopback
port, a write token and the webhook secret given by environment reference). Each path
makes --warmup commits first (not counted), then --commits measured ones, one at a time
(the next commit only after the previous one converged and --gap seconds passed).
Printed: p50/p95/max, the per-phase breakdown from the controller's own event
timestamps, and the polling defaults of Argo CD and Flux. Results go to
bench/results/commit_to_converged.json.

    .venv/bin/python bench/commit_to_converged.py [--commits 20] [--warmup 2] [--paths ...]
    .venv/bin/python bench/commit_to_converged.py --diagnose   # + event-loop stalls, /healthz
    .venv/bin/python bench/commit_to_converged.py --profile    # + cProfile of serve's loop

--diagnose runs `fazai serve` under bench/_loopprobe.py (a sampling watchdog on its
event loop) and polls /healthz every 50 ms, then tells which phase of which reconcile
blocked the event loop, with the stacks. It perturbs the timings a little; the numbers
to quote come from a run without it. --profile runs cProfile on serve's event-loop
thread from the first measured commit on (SIGUSR1 to the probe) and prints the
controller's functions by cumulative time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _c2c import (
    LINUX_SUBNET,
    REPO,
    Commit,
    EventLog,
    Firewall,
    HealthProbe,
    LinuxNode,
    Seen,
    Serve,
    WorkingCopy,
    github_push,
    serve_config,
    stopping,
)

Target = Firewall | LinuxNode
PATHS = ("webhook", "watch", "linux-webhook", "linux-watch")

RESULTS = REPO / "bench" / "results" / "commit_to_converged.json"
BASE_PORT = 20000
TARGET_P95 = 2.0

# What users live with today: the documented default polling of the peers (seconds).
# Argo CD: timeout.reconciliation 120s plus timeout.reconciliation.jitter up to 60s
# (argocd-cm.yaml), "3 minutes (180 seconds) with a configurable jitter" (FAQ).
# Flux: GitRepository .spec.interval is required; `flux create source git` defaults it to
# 1m0s, the value the Flux examples use.
PEERS = (
    ("Argo CD, default polling", 120.0, 180.0),
    ("Flux, GitRepository interval 1m", 60.0, 60.0),
)

# The controller's marks in the order they come, to place an event-loop stall.
PHASE_MARKS = (
    "queued",
    "plan_started",
    "node_read",
    "plan_finished",
    "apply_started",
    "change_applied",
    "verified",
    "apply_finished",
)

# The phases of one commit, each from the previous mark (name, mark key).
PHASES = (
    ("commit -> reconcile.queued", "queued"),
    ("queued -> plan run.started", "plan_started"),
    ("plan run (fetch done; read + diff)", "plan_finished"),
    ("plan -> apply run.started", "apply_started"),
    ("apply -> change.applied", "change_applied"),
    ("change.applied -> node.verified", "verified"),
    ("verified -> run.finished", "apply_finished"),
    ("run.finished -> on the SSE stream", "finished_seen"),
    ("-> observed (read back from the target)", "observed"),
)


@dataclass
class Sample:
    index: int
    warmup: bool
    port: int
    revision: str
    marks: dict[str, float] = field(default_factory=dict)  # time.time() seconds
    hook_status: int | None = None
    apply_run: int | None = None
    runs_started: int = 0  # runs (plan or apply) started for this commit
    queued: int = 0  # reconcile.queued events after the commit
    live_at: float | None = None
    read_port: str | None = None
    target_requests: int = 0  # firewall: HTTP requests; Linux node: SSH connections
    target_seconds: float = 0.0  # firewall: time the emulator spent answering
    target_paths: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def converged(self) -> float | None:
        """Live on the target and run.finished received, whichever came last (a target
        without a live hook is live when observed)."""
        live = self.live_at if self.live_at is not None else self.marks.get("observed")
        if live is None or "finished_seen" not in self.marks:
            return None
        return max(live, self.marks["finished_seen"])

    def seconds(self, key: str = "observed") -> float | None:
        if key not in self.marks:
            return None
        return self.marks[key] - self.marks["commit"]


# --------------------------------------------------------------------------------------
# one commit


def measure(
    trigger: str,
    index: int,
    warmup: bool,
    copy: WorkingCopy,
    serve: Serve,
    log: EventLog,
    target: Target,
    remote_url: str,
    timeout: float,
) -> Sample:
    port = BASE_PORT + 1 + index
    first_event, first_live = log.mark(), target.mark()
    first_request = target.requests_mark()
    commit: Commit = copy.commit_change(target.change_document(port), f"bench: {port}")
    sample = Sample(index, warmup, port, commit.revision)
    sample.marks["commit_started"] = commit.started
    sample.marks["commit"] = commit.made
    if trigger == "webhook":
        copy.push(commit)
        assert commit.pushed is not None
        sample.marks["pushed"] = commit.pushed
        headers, body = github_push(remote_url, commit, serve.hook_secret)
        sample.hook_status = serve.post_hook(headers, body)
        sample.marks["hook_answered"] = time.time()
        if sample.hook_status != 202:
            sample.error = f"webhook answered {sample.hook_status}"
            return sample
    deadline = time.monotonic() + timeout
    revision = commit.revision

    def apply_finished(seen: Seen) -> bool:
        data = seen.data
        return (
            seen.type == "run.finished"
            and data.get("command") == "apply"
            and data.get("revision") == revision
        )

    finished = log.wait(first_event, apply_finished, deadline)
    if target.live_hook:
        sample.live_at = target.wait_live(port, first_live, deadline)
    if finished is None or (target.live_hook and sample.live_at is None):
        missing = "run.finished" if finished is None else "the change live on the target"
        sample.error = f"no {missing} within {timeout:g} s"
        _marks(sample, log.since(first_event), target.change_name)
        return sample
    sample.marks["finished_seen"] = finished.arrived
    count, busy, paths = target.requests_since(first_request)
    sample.target_requests, sample.target_seconds = count, round(busy, 4)
    sample.target_paths = paths
    sample.read_port = target.read()
    sample.marks["observed"] = time.time()
    if sample.read_port != str(port):
        sample.error = f"the target shows {sample.read_port}, expected {port}"
    status = finished.data.get("status")
    if status != "succeeded":
        sample.error = f"apply run finished {status}"
    _marks(sample, log.since(first_event), target.change_name)
    return sample


def _marks(sample: Sample, events: list[Seen], changing: str) -> None:
    """The controller's own timestamps of the commit's phases."""
    rev = sample.revision
    for seen in events:
        data, kind = seen.data, seen.type
        if kind == "reconcile.queued":
            sample.queued += 1
            sample.marks.setdefault("queued", seen.at)
        elif kind == "run.started" and data.get("revision") == rev:
            sample.runs_started += 1
            if data.get("command") == "plan":
                sample.marks.setdefault("plan_started", seen.at)
            elif data.get("command") == "apply":
                sample.marks.setdefault("apply_started", seen.at)
                sample.apply_run = data.get("run_id")
        elif kind == "run.finished" and data.get("revision") == rev:
            key = "plan_finished" if data.get("command") == "plan" else "apply_finished"
            sample.marks.setdefault(key, seen.at)
        elif kind == "node.read" and "plan_started" in sample.marks:
            sample.marks.setdefault("node_read", seen.at)
        elif (
            kind == "change.applied"
            and data.get("name") == changing
            and data.get("run_id") == sample.apply_run
        ):
            sample.marks.setdefault("change_applied", seen.at)
        elif kind == "node.verified" and data.get("run_id") == sample.apply_run:
            sample.marks.setdefault("verified", seen.at)


# --------------------------------------------------------------------------------------
# one path


def run_series(kind: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    folder = workdir / kind
    folder.mkdir(parents=True)
    trigger = kind.rsplit("-", 1)[-1]
    target: Target
    if kind.startswith("linux"):
        target = LinuxNode(folder / "fleet", args.subnet, args.stock_bashrc).start()
        files = target.documents(BASE_PORT, args.files)
    else:
        target = Firewall(folder / "firewall", args.version).start()
        files = target.documents(BASE_PORT, args.rules, args.aliases)
    remote_url = ""
    if trigger == "webhook":
        remote = folder / "remote.git"
        copy = WorkingCopy(folder / "work", files, remote=remote)
        remote_url = f"file://{remote}"
        source: dict[str, Any] = {"url": remote_url}
    else:
        copy = WorkingCopy(folder / "infra", files)
        source = {"watch": str(copy.path)}
    probe = folder / "loop.json" if args.diagnose else None
    cprofile = folder / "serve.prof" if args.profile else None
    serve = Serve(folder, serve_config(folder, source, settle=args.settle), probe, cprofile)
    out: dict[str, Any] = {
        "path": kind,
        "trigger": trigger,
        "target": target.kind,
        "config": str(serve.config_file),
    }
    health: HealthProbe | None = None

    def probe_health(url: str) -> None:
        # From the moment the API listens: the first reconcile is the biggest one.
        nonlocal health
        health = HealthProbe(url)
        health.start()

    try:
        listening = probe_health if args.diagnose else None
        out["ready_seconds"] = round(serve.start(args.start_timeout, listening), 3)
        log = EventLog(serve.client()).start()
        # The first reconcile (at start) applies the whole base state; wait for it.
        deadline = time.monotonic() + args.start_timeout
        if not _initially(target, deadline):
            with serve.client() as client:
                runs = client.get("/api/v1/runs", params={"limit": 4})["runs"]
            raise RuntimeError(
                f"the initial state never converged (the target shows {target.read()!r}); "
                f"last runs: {json.dumps(runs)}\n{serve.tail()}"
            )
        _wait_idle(serve, deadline)
        if cprofile is not None:
            serve.start_profiling()
        samples: list[Sample] = []
        with stopping(health):
            for i in range(args.warmup + args.commits):
                warm = i < args.warmup
                sample = measure(
                    trigger, i, warm, copy, serve, log, target, remote_url, args.timeout
                )
                samples.append(sample)
                _progress(kind, sample, args.warmup)
                if sample.error and not args.keep_going:
                    break
                _wait_idle(serve, time.monotonic() + args.timeout)
                time.sleep(args.gap)
        out["runs_check"] = _check_runs(serve, samples)
        out["samples"] = [_sample_dict(s) for s in samples]
        out["events"] = [s.event for s in log.since(0)]
        if health is not None:
            out["healthz"] = [[round(t, 4), round(s, 4)] for t, s in health.samples]
    finally:
        out["serve_exit"] = serve.stop()
        target.stop()
        out["serve_log_tail"] = serve.tail(15)
    if probe is not None and probe.exists():
        out["loop"] = json.loads(probe.read_text())
    if cprofile is not None and cprofile.exists():
        out["cprofile"] = top_functions(cprofile, args.profile_top)
    return out


def top_functions(path: Path, limit: int) -> list[dict[str, Any]]:
    """The controller's functions by cumulative time on the event-loop thread."""
    stats = pstats.Stats(str(path))
    rows = []
    for (file, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if "/controller/" not in file:
            continue
        short = file.split("/controller/", 1)[1]
        rows.append(
            {
                "function": f"controller/{short}:{line} {name}",
                "calls": calls,
                "own_s": round(own, 4),
                "cumulative_s": round(cumulative, 4),
            }
        )
    rows.sort(key=lambda r: -r["cumulative_s"])
    return rows[:limit]


def _initially(target: Target, deadline: float) -> bool:
    """Whether the first reconcile (at start) brought the changing resource in."""
    if target.live_hook:
        return target.wait_live(BASE_PORT, 0, deadline) is not None
    while time.monotonic() < deadline:
        if target.read() == str(BASE_PORT):
            return True
        time.sleep(0.2)
    return False


def _wait_idle(serve: Serve, deadline: float) -> None:
    """Until the source has nothing running (GET /api/v1/sources: busy false)."""
    with serve.client() as client:
        while time.monotonic() < deadline:
            sources = client.get("/api/v1/sources")["sources"]
            if sources and not any(s.get("busy") for s in sources):
                return
            time.sleep(0.05)
    raise RuntimeError(f"the source stayed busy:\n{serve.tail()}")


def _check_runs(serve: Serve, samples: list[Sample]) -> dict[str, Any]:
    """Cross-check with GET /api/v1/runs: every measured commit has one succeeded apply
    run at its revision."""
    with serve.client() as client:
        runs = client.get("/api/v1/runs", params={"limit": 1000})["runs"]
    by_revision: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_revision.setdefault(str(run.get("revision")), []).append(run)
    problems = []
    for sample in samples:
        applies = [r for r in by_revision.get(sample.revision, []) if r.get("command") == "apply"]
        if [r.get("status") for r in applies] != ["succeeded"]:
            problems.append(f"{sample.revision[:12]}: apply runs {applies}")
    return {"runs": len(runs), "problems": problems}


def _sample_dict(sample: Sample) -> dict[str, Any]:
    out = asdict(sample)
    out["seconds"] = _round(sample.seconds())
    converged = sample.converged
    out["converged_seconds"] = _round(converged - sample.marks["commit"] if converged else None)
    return out


def _round(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


def _progress(kind: str, sample: Sample, warmup: int) -> None:
    label = "warm-up" if sample.warmup else f"#{sample.index - warmup + 1:02d}"
    total = sample.seconds()
    shown = f"{total:.3f} s" if total is not None else "-"
    note = f"  ERROR: {sample.error}" if sample.error else ""
    print(f"  {kind:13} {label:8} {sample.revision[:10]} -> {shown}{note}", flush=True)


# --------------------------------------------------------------------------------------
# statistics and printing


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default 'linear')."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "n": len(values),
        "p50": round(percentile(values, 0.5), 4),
        "p95": round(percentile(values, 0.95), 4),
        "max": round(max(values), 4),
        "min": round(min(values), 4),
        "mean": round(sum(values) / len(values), 4),
    }


def summarize(series: dict[str, Any]) -> dict[str, Any]:
    samples = [s for s in series["samples"] if not s["warmup"]]
    good = [s for s in samples if not s["error"] and s["seconds"] is not None]
    summary: dict[str, Any] = {
        "measured": len(samples),
        "failed": len(samples) - len(good),
        "observed": stats([s["seconds"] for s in good]),
        "converged": stats([s["converged_seconds"] for s in good]),
        "warmup_seconds": [s["seconds"] for s in series["samples"] if s["warmup"]],
        "runs_per_commit": sorted({s["runs_started"] for s in good}),
        "target_requests": stats([s["target_requests"] for s in good]),
        "target_seconds": stats([s["target_seconds"] for s in good]),
        # With a firewall that answered instantly: the controller's own share.
        "observed_minus_firewall": stats([s["seconds"] - s["target_seconds"] for s in good]),
    }
    phases: dict[str, dict[str, float]] = {}
    previous = "commit"
    if series["trigger"] == "webhook":
        phases["commit -> push + webhook 202"] = stats(
            [s["marks"]["hook_answered"] - s["marks"]["commit"] for s in good]
        )
    for name, key in PHASES:
        values = [
            s["marks"][key] - s["marks"][previous]
            for s in good
            if key in s["marks"] and previous in s["marks"]
        ]
        phases[name] = stats(values)
        previous = key
    summary["phases"] = phases
    return summary


def print_summary(results: dict[str, Any]) -> None:
    print()
    print(
        "commit-to-converged, seconds: webhook/watch = one FirewallRule on the OPNsense "
        "emulator (HTTPS); linux-* = one File on an SSH fleet node"
    )
    header = f"{'path':34} {'n':>3} {'p50':>7} {'p95':>7} {'max':>7}  target p95 < {TARGET_P95:g} s"
    print(header)
    print("-" * len(header))
    for kind, series in results["series"].items():
        summary = series["summary"]
        observed = summary["observed"]
        if not observed:
            print(f"{'fazai serve, ' + kind:34} FAILED ({summary['failed']} failed)")
            continue
        verdict = "met" if observed["p95"] < TARGET_P95 else "MISSED"
        print(
            f"{'fazai serve, ' + kind:34} {observed['n']:>3} {observed['p50']:>7.3f} "
            f"{observed['p95']:>7.3f} {observed['max']:>7.3f}  {verdict}"
            + (f"  ({summary['failed']} failed)" if summary["failed"] else "")
        )
    for name, low, high in PEERS:
        mean_wait = _mean_residual(low, high)
        print(
            f"{name:34} {'':>3} {mean_wait:>7.1f} {'':>7} {high:>7.1f}  "
            f"detection only: mean wait for a commit at a random moment, worst case"
        )
    for kind, series in results["series"].items():
        print(f"\nbreakdown, {kind} (p50 / p95 seconds, from the controller's event times)")
        for name, values in series["summary"]["phases"].items():
            if values:
                print(f"  {name:40} {values['p50']:>7.3f} {values['p95']:>7.3f}")
        requests, busy = (
            series["summary"]["target_requests"],
            series["summary"]["target_seconds"],
        )
        if requests and requests["max"] > 0 and series["target"] == "File":
            print(f"  node: {requests['p50']:.0f} SSH connections per commit (sshd's log)")
        elif requests and requests["max"] > 0:
            rest = series["summary"]["observed_minus_firewall"]
            print(
                f"  firewall: {requests['p50']:.0f} requests per commit, "
                f"{busy['p50']:.3f} s (p50) of the total spent inside the emulator; "
                f"the total without it: p50 {rest['p50']:.3f} s, p95 {rest['p95']:.3f} s"
            )
        warm = series["summary"]["warmup_seconds"]
        if warm:
            print(f"  warm-up commits (not counted): {', '.join(f'{w:.3f}' for w in warm if w)}")
        if series.get("runs_check", {}).get("problems"):
            print(f"  /api/v1/runs cross-check: {series['runs_check']['problems']}")


def _mean_residual(low: float, high: float) -> float:
    """Mean wait until the next poll for a commit made at a random moment, when the
    period between polls is uniform on [low, high]: E[P^2] / (2 E[P])."""
    mean = (low + high) / 2
    second = mean * mean + (high - low) ** 2 / 12
    return second / (2 * mean)


# --------------------------------------------------------------------------------------
# --diagnose: where the event loop blocks


def diagnose(series: dict[str, Any], threshold: float) -> dict[str, Any]:
    """Each event-loop stall (from _loopprobe) placed in the phase of the commit it fell
    in, with its innermost frames; /healthz answers slower than ``threshold``."""
    loop = series.get("loop") or {}
    samples = series["samples"]
    placed = []
    first = samples[0]["marks"]["commit_started"] if samples else math.inf
    for stall in loop.get("stalls", []):
        start, seconds = stall["start"], stall["seconds"]
        where = "at start (the first reconcile)" if start < first else "between commits"
        for sample in samples:
            marks = sample["marks"]
            end = marks.get("observed", marks["commit"] + 60)
            if marks["commit_started"] <= start <= end:
                phase = "commit"
                for key in PHASE_MARKS:
                    if key in marks and marks[key] <= start:
                        phase = key
                where = f"commit {sample['index']} after {phase} (+{start - marks['commit']:.3f} s)"
                break
        top = stall["stacks"][0]["stack"] if stall["stacks"] else []
        # The watchdog samples every `interval` while it waits: far fewer samples than
        # that means the watchdog thread itself was not scheduled, i.e. the machine was
        # busy, not the event loop blocked.
        expected = seconds / loop.get("interval", 0.01)
        placed.append(
            {
                "start": start,
                "seconds": seconds,
                "where": where,
                "samples": stall["samples"],
                "starved": stall["samples"] < 0.5 * expected,
                "innermost": [line for line in top[-8:]],
                "controller_frames": [line for line in top if line.startswith("controller/")],
            }
        )
    health = series.get("healthz") or []
    slow = [(t, s) for t, s in health if s >= threshold]
    return {
        "stalls": placed,
        "max_lag": loop.get("max_lag"),
        "stalled_seconds": loop.get("stalled_seconds"),
        "profile": loop.get("profile"),
        "healthz": {
            "requests": len(health),
            "max": max((s for _, s in health), default=None),
            "p50": round(percentile([s for _, s in health], 0.5), 4) if health else None,
            "slow": slow,
        },
    }


def print_diagnosis(kind: str, found: dict[str, Any]) -> None:
    print(
        f"\nevent-loop stalls, {kind}: max lag {found['max_lag']} s, "
        f"{found['stalled_seconds']} s stalled in total"
    )
    health = found["healthz"]
    print(
        f"  /healthz: {health['requests']} requests, p50 {health['p50']} s, "
        f"max {health['max']} s, {len(health['slow'])} slower than the threshold"
    )
    for stall in sorted(found["stalls"], key=lambda s: -s["seconds"])[:12]:
        note = "  (few samples: the process was starved of CPU)" if stall["starved"] else ""
        print(f"  {stall['seconds']:.3f} s  {stall['where']}{note}")
        for line in stall["controller_frames"][-4:] or stall["innermost"][-3:]:
            print(f"      {line}")
        print(f"      innermost: {stall['innermost'][-1] if stall['innermost'] else '-'}")
    profile = found.get("profile") or {}
    if profile.get("innermost_controller"):
        print("  where the stalled samples were (innermost controller frame, samples of 10 ms):")
        for frame, count in profile["innermost_controller"][:10]:
            print(f"    {count:5d}  {frame}")


# --------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    def out(*cmd: str) -> str:
        try:
            return subprocess.run(
                cmd, capture_output=True, text=True, cwd=REPO, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "git_head": out("git", "rev-parse", "--short", "HEAD"),
        "git_dirty": bool(out("git", "status", "--porcelain", "--", "controller")),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", type=int, default=20, help="measured commits per path")
    ap.add_argument("--warmup", type=int, default=2, help="commits first, not counted")
    ap.add_argument(
        "--paths",
        default="webhook,watch",
        help=f"comma-separated, of: {', '.join(PATHS)} (linux-*: a File on a fleet node)",
    )
    ap.add_argument("--rules", type=int, default=20, help="rules besides the changing one")
    ap.add_argument("--aliases", type=int, default=5)
    ap.add_argument("--files", type=int, default=10, help="linux-*: files besides the changing one")
    ap.add_argument("--version", default="26.1", help="OPNsense release to emulate")
    ap.add_argument("--subnet", default=LINUX_SUBNET, help="linux-*: the fleet's /24")
    ap.add_argument(
        "--stock-bashrc",
        action="store_true",
        help="linux-*: Debian's /root/.bashrc on the node, not this host's copy",
    )
    ap.add_argument("--settle", default=None, help="fazai.yaml settle (default: its own)")
    ap.add_argument("--gap", type=float, default=0.5, help="seconds between commits")
    ap.add_argument("--timeout", type=float, default=30.0, help="per commit, seconds")
    ap.add_argument(
        "--start-timeout", type=float, default=300.0, help="for serve's first reconcile, seconds"
    )
    ap.add_argument("--diagnose", action="store_true", help="event-loop watchdog + /healthz")
    ap.add_argument("--stall", type=float, default=0.1, help="--diagnose threshold, seconds")
    ap.add_argument(
        "--profile", action="store_true", help="cProfile serve's event-loop thread (slower)"
    )
    ap.add_argument("--profile-top", type=int, default=40, help="functions shown by --profile")
    ap.add_argument("--keep-going", action="store_true", help="go on after a failed commit")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = ap.parse_args()
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = set(paths) - set(PATHS)
    if unknown:
        ap.error(f"unknown path(s): {', '.join(sorted(unknown))}")

    workdir = Path(tempfile.mkdtemp(prefix="fazai-c2c-"))
    results: dict[str, Any] = {
        "benchmark": "commit_to_converged",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "target_p95_seconds": TARGET_P95,
        "peers": [
            {
                "name": n,
                "poll_min_s": lo,
                "poll_max_s": hi,
                "mean_wait_s": round(_mean_residual(lo, hi), 1),
            }
            for n, lo, hi in PEERS
        ],
        "series": {},
    }
    print(f"workdir {workdir}; {args.warmup} warm-up + {args.commits} commits per path", flush=True)
    code = 0
    try:
        for kind in paths:
            started = time.monotonic()
            series = run_series(kind, workdir, args)
            series["wall_seconds"] = round(time.monotonic() - started, 1)
            series["summary"] = summarize(series)
            if args.diagnose:
                series["diagnosis"] = diagnose(series, args.stall)
            results["series"][kind] = series
            if series["summary"]["failed"] or not series["summary"]["observed"]:
                code = 1
    finally:
        results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=1, default=str))
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_summary(results)
    if args.diagnose:
        for kind, series in results["series"].items():
            print_diagnosis(kind, series["diagnosis"])
    if args.profile:
        for kind, series in results["series"].items():
            print(f"\ncProfile of fazai serve's event-loop thread, {kind} (the commits only)")
            print(f"  {'cumulative s':>12} {'own s':>8} {'calls':>8}  function")
            for row in series.get("cprofile", []):
                print(
                    f"  {row['cumulative_s']:>12.3f} {row['own_s']:>8.3f} {row['calls']:>8}  "
                    f"{row['function']}"
                )
    print(f"\nwrote {args.output}")
    return code


if __name__ == "__main__":
    sys.exit(main())
