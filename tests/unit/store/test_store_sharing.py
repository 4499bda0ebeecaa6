"""Two store objects on one file (two controllers, or the CLI beside the daemon)."""

from __future__ import annotations

from pathlib import Path

from controller.store import Command, NodeStatus, RunStatus, StateStore, Trigger


def test_two_stores_see_each_others_committed_writes(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore(path) as daemon, StateStore(path) as cli:
        assert cli.list_runs() == []  # read before the write: a snapshot must not stick

        run_id = daemon.start_run(Trigger.WATCH, Command.APPLY, "src", "b" * 40)
        daemon.record_node(run_id, "web-1", NodeStatus.CONVERGED, "ok", 0.5)

        (seen,) = cli.list_runs()
        assert (seen.id, seen.status, seen.nodes[0].node) == (run_id, "in_progress", "web-1")

        cli.finish_run(run_id, RunStatus.SUCCEEDED)
        run = daemon.get_run(run_id)
        assert run is not None and run.status is RunStatus.SUCCEEDED

        txn = daemon.begin_transaction(run_id, "web-1")
        assert [t.id for t in cli.open_transactions()] == [txn]
        daemon.own("web-1", "File", "motd", "/etc/motd", run_id)
        assert cli.is_owned("web-1", "File", "motd")
