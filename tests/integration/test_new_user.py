"""What a new user hits first: the state file in use, an empty history, a mistyped
--state, a sandbox that cannot start, and the sandbox's folder left behind."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from controller.store import Command, NodeStatus, RunStatus, StateStore, Trigger
from controller.testing import sandbox
from controller.testing.fleet import fleet_available

SUBNET = "10.246.6"  # this file's own /24 (fleet subnets are locked host-wide)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A user with no state yet: XDG_STATE_HOME in tmp, no FAZAI_STATE."""
    out = {k: v for k, v in os.environ.items() if k != "FAZAI_STATE"}
    out["XDG_STATE_HOME"] = str(tmp_path / "xdg")
    return out


def fazai(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip


def test_history_says_it_is_empty_and_names_the_state_file(
    env: dict[str, str], tmp_path: Path
) -> None:
    default = tmp_path / "xdg" / "fazai" / "state.db"
    first = fazai(env, "history")
    assert first.returncode == 0 and first.stdout == ""
    assert f"state: {default}" in first.stderr
    assert "no runs recorded" in first.stderr and "does not exist yet" in first.stderr
    assert not default.exists()  # reading never creates it

    StateStore(default).close()
    empty = fazai(env, "history")
    assert empty.returncode == 0 and f"no runs recorded in {default}" in empty.stderr


def test_a_mistyped_state_file_is_refused_not_created(env: dict[str, str], tmp_path: Path) -> None:
    typo = tmp_path / "stat.db"
    for args in (("history", "--state", str(typo)), ("rollback", "1", "--state", str(typo))):
        done = fazai(env, *args)
        assert done.returncode == 2, done.stderr
        assert f"state store {typo} does not exist (mistyped --state" in done.stderr
        assert not typo.exists()
    via_env = fazai({**env, "FAZAI_STATE": str(typo)}, "history")
    assert via_env.returncode == 2 and "does not exist" in via_env.stderr
    assert not typo.exists()


def test_history_shows_a_plan_runs_nodes_as_in_sync_or_drift(
    env: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "state.db"
    with StateStore(db) as store:
        run = store.start_run(Trigger.CLI, Command.PLAN, "/srv/infra", "a" * 40, None)
        store.record_node(run, "web-1", NodeStatus.CONVERGED, "in sync", 0.1)
        store.record_node(run, "web-2", NodeStatus.SKIPPED, "2 change(s) found", 0.1)
        store.finish_run(run, RunStatus.SUCCEEDED)
        run = store.start_run(Trigger.CLI, Command.APPLY, "/srv/infra", "a" * 40, None)
        store.record_node(run, "web-1", NodeStatus.CONVERGED, "", 0.1)
        store.finish_run(run, RunStatus.SUCCEEDED)
    done = fazai(env, "history", "--state", str(db))
    assert done.returncode == 0, done.stderr
    applied, planned = done.stdout.splitlines()
    assert "web-1=in-sync, web-2=drift" in planned and "converged" not in planned
    assert "web-1=converged" in applied


needs_fleet = pytest.mark.skipif(fleet_available() is not None, reason=str(fleet_available()))


def _write(folder: Path, docs: list[dict[str, object]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "nodes.yaml").write_text(yaml.safe_dump_all(docs))
    return folder


def _firewall(tmp_path: Path, port: int) -> dict[str, object]:
    return {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": "Node",
        "metadata": {"name": "fw"},
        "spec": {
            "platform": "opnsense",
            "url": f"http://127.0.0.1:{port}",
            "apiKeyRef": {"file": str(tmp_path / "fw.key")},
            "apiSecretRef": {"file": str(tmp_path / "fw.secret")},
        },
    }


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


@needs_fleet
def test_a_sandbox_port_in_use_is_explained_not_called_a_bug(
    env: dict[str, str], tmp_path: Path, busy_port: int
) -> None:
    desired = _write(tmp_path / "desired", [_firewall(tmp_path, busy_port)])
    workdir = tmp_path / "sandbox"
    done = fazai(env, "demo", "--desired-state", str(desired), "--workdir", str(workdir))
    assert done.returncode == 2
    assert "internal error" not in done.stderr and "bug" not in done.stderr
    assert f"127.0.0.1:{busy_port} is already in use" in done.stderr
    assert "give the Node another port" in done.stderr


@needs_fleet
def test_a_sandbox_subnet_in_use_is_explained_not_called_a_bug(
    env: dict[str, str], tmp_path: Path
) -> None:
    workdir = tmp_path / "sandbox"
    node: dict[str, object] = {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": "Node",
        "metadata": {"name": "web-1"},
        "spec": {
            "platform": "linux",
            "address": f"{SUBNET}.11",
            "auth": {"privateKeyFile": str(workdir / "id_ed25519")},
            "knownHostsFile": str(workdir / "known_hosts"),
        },
    }
    desired = _write(tmp_path / "desired", [node])
    lock = Path(f"/run/lock/fazai-fleet-{SUBNET}.0-24.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as another fleet on this subnet would
        done = fazai(env, "demo", "--desired-state", str(desired), "--workdir", str(workdir))
    finally:
        os.close(fd)
    assert done.returncode == 2
    assert "internal error" not in done.stderr and "bug" not in done.stderr
    assert f"subnet {SUBNET}.0/24 is in use by another fleet" in done.stderr
    assert "addresses in another /24" in done.stderr


def test_demo_clean_removes_the_sandbox_folder_and_nothing_else(
    env: dict[str, str], tmp_path: Path
) -> None:
    workdir = tmp_path / "sandbox"
    with sandbox.claimed(workdir):
        (workdir / "id_ed25519").write_text("PRIVATE KEY")
        (workdir / "edge-fw.secret").write_text("s3cret")
        busy = fazai(env, "demo", "--clean", "--workdir", str(workdir))
        assert busy.returncode == 2 and "in use by another sandbox" in busy.stderr
        assert "stop it first" in busy.stderr and "another --workdir" not in busy.stderr
        assert (workdir / "id_ed25519").exists()
    done = fazai(env, "demo", "--clean", "--workdir", str(workdir))
    assert done.returncode == 0, done.stderr
    assert f"removed {workdir}\n" in done.stderr and not workdir.exists()
    again = fazai(env, "demo", "--clean", "--workdir", str(workdir))
    assert again.returncode == 0 and "nothing to clean" in again.stderr

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep").write_text("x")
    refused = fazai(env, "demo", "--clean", "--workdir", str(mine))
    assert refused.returncode == 2 and "was not made by `fazai demo`" in refused.stderr
    assert (mine / "keep").exists()


def _at_terminal(env: dict[str, str], answer: str, *args: str) -> tuple[int, str]:
    import pty

    main, side = pty.openpty()
    try:
        os.write(main, answer.encode() + b"\n")
        done = subprocess.run(
            [sys.executable, "-c", "from controller.cli import run; run()", *args],
            stdin=side, capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
    finally:
        os.close(main)
        os.close(side)
    return done.returncode, done.stderr


def test_answering_no_cancels_apply_without_an_error_and_drift_names_its_files(
    env: dict[str, str], tmp_path: Path
) -> None:
    from controller.testing.opnsense import EmulatorServer

    with EmulatorServer(version="26.1", tls=True) as emu:
        (tmp_path / "fw.key").write_text(emu.api_key + "\n")
        (tmp_path / "fw.secret").write_text(emu.api_secret + "\n")
        node = _firewall(tmp_path, 0)
        node["spec"] = {
            **node["spec"],  # type: ignore[dict-item]
            "url": emu.url,
            "tls": {"caBundle": str(emu.certificate)},
        }
        alias: dict[str, object] = {
            "apiVersion": "fazai.dev/v1alpha1",
            "kind": "FirewallAlias",
            "metadata": {"name": "admins"},
            "spec": {"target": {"node": "fw"}, "type": "host", "content": ["10.0.0.1"]},
        }
        desired = _write(tmp_path / "desired", [node, alias])
        db = tmp_path / "state.db"
        code, err = _at_terminal(env, "n", "apply", str(desired), "--state", str(db))
        assert code == 0, err
        assert "Apply cancelled: nothing applied." in err and "error" not in err
        assert f"state: {db}" in err
        assert emu.state.list("alias") == {} or all(
            a.get("name") != "admins" for a in emu.state.list("alias").values()
        )

        reports = tmp_path / "reports"
        drift = fazai(env, "drift", str(desired), "--state", str(db), "--report-dir", str(reports))
        assert drift.returncode == 1, drift.stderr
        written = drift.stderr.split("report written to ", 1)[1].split(" (each", 1)[0]
        files = [Path(p) for p in written.split(", ")]
        assert [p.suffix for p in files] == [".md", ".json", ".html"]
        assert all(p.is_file() for p in files)


@needs_fleet
def test_a_demo_without_its_example_says_where_to_find_one(
    env: dict[str, str], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere"
    done = fazai(env, "demo", "--desired-state", str(missing), "--workdir", str(tmp_path / "w"))
    assert done.returncode == 2 and "internal error" not in done.stderr
    assert f"no desired state at {missing}: pass --desired-state DIR" in done.stderr


def test_an_emulator_port_in_use_is_refused_before_printing_its_secret(
    env: dict[str, str], busy_port: int
) -> None:
    done = fazai(env, "emulate", "opnsense", "--listen", f"127.0.0.1:{busy_port}")
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{busy_port}" in done.stderr
    assert "pass another --listen" in done.stderr and "api secret" not in done.stderr


def test_the_sandbox_folder_is_private_and_an_existing_one_keeps_its_mode(tmp_path: Path) -> None:
    fresh = tmp_path / "made" / "sandbox"
    with sandbox.claimed(fresh):
        assert fresh.stat().st_mode & 0o777 == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with sandbox.claimed(shared):
        assert shared.stat().st_mode & 0o777 == 0o755


def test_plan_prune_reads_the_inventory_without_creating_a_store(
    env: dict[str, str], tmp_path: Path
) -> None:
    desired = _write(tmp_path / "desired", [_firewall(tmp_path, 1)])  # nothing listens on 1
    (tmp_path / "fw.key").write_text("k\n")
    (tmp_path / "fw.secret").write_text("s\n")
    typo = tmp_path / "stat.db"
    done = fazai(env, "plan", str(desired), "--prune", "--state", str(typo))
    assert f"state store {typo} does not exist yet" in done.stderr
    assert "nothing is pruned; it was not created" in done.stderr
    assert not typo.exists()
    fazai(env, "plan", str(desired), "--prune")  # the node is unreachable: exit 2 either way
    assert not (tmp_path / "xdg").exists()  # the default store was not made by reading it


def test_demo_clean_never_removes_a_users_files(env: dict[str, str], tmp_path: Path) -> None:
    from controller.errors import SandboxError

    theirs = tmp_path / "theirs"  # a folder that already holds someone's work
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("years of work")
    with (
        pytest.raises(SandboxError, match="already holds files no sandbox made"),
        sandbox.claimed(theirs),
    ):
        pass
    assert (theirs / "thesis.tex").read_text() == "years of work"
    assert not (theirs / sandbox.MARKER).exists()

    existing = tmp_path / "existing"  # empty when the demo took it, used by hand since
    existing.mkdir()
    with sandbox.claimed(existing) as claim:
        (existing / "id_ed25519").write_text("PRIVATE KEY")
        (existing / "nodes").mkdir()
        claim.wrote(existing / "edge-fw.secret")
        (existing / "edge-fw.secret").write_text("s3cret")
        (existing / "server.key").write_text("the user's TLS key")
        (existing / "notes.txt").write_text("mine")
    done = fazai(env, "demo", "--clean", "--workdir", str(existing))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt", "server.key"]
    assert "kept what no sandbox wrote: notes.txt, server.key" in done.stderr

    made = tmp_path / "made"  # FazAI made it: emptied, then removed when nothing else is left
    with sandbox.claimed(made):
        (made / "edge-fw-ca.pem").write_text("CA")
        (made / "infra").mkdir()
        (made / "infra" / "commit").write_text("the user's commit")
    done = fazai(env, "demo", "--clean", "--workdir", str(made))
    assert done.returncode == 0, done.stderr
    assert [p.name for p in made.iterdir()] == ["infra"]
    assert "may hold your commits" in done.stderr


def test_demo_clean_refuses_home_top_level_and_symlinked_folders(
    env: dict[str, str], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / sandbox.MARKER).write_text("")  # `fazai demo --workdir ~` from an older FazAI
    (home / "thesis.tex").write_text("years of work")
    done = fazai({**env, "HOME": str(home)}, "demo", "--clean", "--workdir", str(home))
    assert done.returncode == 2 and "cannot be a sandbox's folder" in done.stderr
    assert (home / "thesis.tex").exists()
    top = fazai(env, "demo", "--clean", "--workdir", "/tmp")
    assert top.returncode == 2 and "cannot be a sandbox's folder" in top.stderr

    real = tmp_path / "real"
    with sandbox.claimed(real):
        (real / "id_ed25519").write_text("PRIVATE KEY")
    link = tmp_path / "link"
    link.symlink_to(real)
    done = fazai(env, "demo", "--clean", "--workdir", str(link))
    assert done.returncode == 2, done.stderr
    assert "internal error" not in done.stderr
    assert f"is a symbolic link: not followed; pass the folder it points to, --workdir {real}" in (
        done.stderr.replace("\n", "")
    )
    assert (real / "id_ed25519").exists()


def test_demo_clean_without_permission_says_run_as_root(
    env: dict[str, str], tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to make a folder another user cannot read")
    workdir = tmp_path / "sandbox"
    with sandbox.claimed(workdir):
        (workdir / "id_ed25519").write_text("PRIVATE KEY")
    tmp_path.chmod(0o755)
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-c", "from controller.cli import run; run()",
         "demo", "--clean", "--workdir", str(workdir)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        env={**env, "HOME": "/nonexistent"},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "internal error" not in done.stderr and "run as root" in done.stderr
    assert (workdir / "id_ed25519").exists()


@pytest.fixture
def pruning_firewall(tmp_path: Path) -> Iterator[Path]:
    """A git repository whose firewall Node prunes (``spec.prune: true``), its
    emulator up: what a first CI run plans before anything was ever applied."""
    import git

    from controller.testing.opnsense import EmulatorServer

    with EmulatorServer(version="26.1", tls=True) as emu:
        (tmp_path / "fw.key").write_text(emu.api_key + "\n")
        (tmp_path / "fw.secret").write_text(emu.api_secret + "\n")
        node = _firewall(tmp_path, 0)
        node["spec"] = {
            **node["spec"],  # type: ignore[dict-item]
            "url": emu.url,
            "tls": {"caBundle": str(emu.certificate)},
            "prune": True,
        }
        alias: dict[str, object] = {
            "apiVersion": "fazai.dev/v1alpha1",
            "kind": "FirewallAlias",
            "metadata": {"name": "admins"},
            "spec": {"target": {"node": "fw"}, "type": "host", "content": ["10.0.0.1"]},
        }
        root = _write(tmp_path / "infra", [node])
        repo = git.Repo.init(root, initial_branch="main")
        author = git.Actor("t", "t@example.invalid")
        repo.git.add("--all")
        repo.index.commit("nodes", author=author, committer=author)
        repo.git.checkout("-b", "feature")
        (root / "alias.yaml").write_text(yaml.safe_dump(alias))
        repo.git.add("--all")
        repo.index.commit("an alias", author=author, committer=author)
        yield root


def test_a_first_plan_and_review_with_a_new_fazai_state_work(
    env: dict[str, str], tmp_path: Path, pruning_firewall: Path
) -> None:
    import git

    from controller.testing.forges import ForgeServer

    new = tmp_path / "ci" / "state.db"
    first = {**env, "FAZAI_STATE": str(new)}
    root = str(pruning_firewall)
    plan = fazai(first, "plan", root)
    assert plan.returncode == 1, plan.stderr  # the alias to create
    assert f"state store {new} does not exist yet (named by $FAZAI_STATE" in plan.stderr
    pair = fazai(first, "plan", root, "--base", "main", "--head", "feature")
    assert pair.returncode == 1, pair.stderr

    with ForgeServer("github", repo="acme/infra", pulls=[7]) as github:
        review = fazai(
            {**first, "FAZAI_TEST_FORGE_TOKEN": github.token},
            "review", root, "--base", "main", "--head", "feature",
            "--forge", "github", "--repo", "acme/infra", "--pr", "7",
            "--api-url", github.api_url, "--token-ref", "env:FAZAI_TEST_FORGE_TOKEN",
        )  # fmt: skip
        assert review.returncode == 1, review.stderr
        head = git.Repo(root).commit("feature").hexsha
        assert [s["state"] for s in github.statuses(head)] == ["pending", "success"]

        # A plan that stops after the pending status leaves it "error", not pending.
        (tmp_path / "garbage.db").write_text("not a database\n" * 100)
        broken = fazai(
            {**first, "FAZAI_STATE": str(tmp_path / "garbage.db"),
             "FAZAI_TEST_FORGE_TOKEN": github.token},
            "review", root, "--base", "main", "--head", "feature",
            "--forge", "github", "--repo", "acme/infra", "--pr", "7",
            "--api-url", github.api_url, "--token-ref", "env:FAZAI_TEST_FORGE_TOKEN",
        )  # fmt: skip
        assert broken.returncode == 2, broken.stderr
        states = [s["state"] for s in github.statuses(head)]
        assert states == ["pending", "success", "pending", "error"]
    assert not new.exists() and not new.parent.exists()

    history = fazai(first, "history")
    assert history.returncode == 2  # a read command still refuses the missing store
    assert "named by $FAZAI_STATE: mistyped? Without it the default is" in history.stderr
    assert f"The default is {new}" not in history.stderr


def test_a_sandbox_starting_while_clean_runs_holds_a_live_folder(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A demo that opened the marker just before a --clean removed it (and the folder)
    must not run on the removed folder: it starts again on a new one, and holds it."""
    workdir = tmp_path / "sandbox"
    with sandbox.claimed(workdir):
        (workdir / "id_ed25519").write_text("PRIVATE KEY")
    real_flock = fcntl.flock
    cleaned: list[subprocess.CompletedProcess[str]] = []

    def flock_after_a_clean(fd: int, operation: int) -> None:
        if not cleaned:  # the first claim step: a --clean runs between open and lock
            cleaned.append(fazai(env, "demo", "--clean", "--workdir", str(workdir)))
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_a_clean)
    with sandbox.claimed(workdir):
        assert cleaned[0].returncode == 0, cleaned[0].stderr
        assert f"removed {workdir}\n" in cleaned[0].stderr
        assert (workdir / sandbox.MARKER).is_file()
        busy = fazai(env, "demo", "--clean", "--workdir", str(workdir))
        assert busy.returncode == 2 and "in use by another sandbox" in busy.stderr


DEMO_SUBNET = "10.247.6"  # the whole demo's own /24


@needs_fleet
def test_demo_then_clean_leaves_nothing_behind(env: dict[str, str], tmp_path: Path) -> None:
    """The example, moved to a folder, subnet and port of its own: the demo runs end to
    end, leaves its keys, the firewall's secret and its store, and --clean removes every
    one of them and the folder it made."""
    from controller.testing import sandbox as sandboxing

    workdir = tmp_path / "sandbox"
    desired = tmp_path / "desired"
    shutil.copytree(sandboxing.example_state_dir(), desired)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for path in desired.rglob("*.yaml"):
        text = path.read_text().replace("/var/lib/fazai/sandbox", str(workdir))
        text = text.replace("10.231.0.", f"{DEMO_SUBNET}.").replace(":18443", f":{port}")
        path.write_text(text)
    done = fazai(env, "demo", "--desired-state", str(desired), "--workdir", str(workdir))
    assert done.returncode == 0, done.stderr[-3000:]
    left = {p.name for p in workdir.iterdir()}
    assert {"id_ed25519", "known_hosts", "edge-fw.secret", "state.db", sandbox.MARKER} <= left

    cleaned = fazai(env, "demo", "--clean", "--workdir", str(workdir))
    assert cleaned.returncode == 0, cleaned.stderr
    assert not workdir.exists(), sorted(p.name for p in workdir.iterdir())
