from __future__ import annotations

import asyncio

import pytest

from controller.reconcile.backoff import Backoff
from controller.reconcile.locks import NodeLocks
from controller.reconcile.matching import branch_name, same_repository
from controller.reconcile.triggers import is_ref_change


def test_backoff_doubles_up_to_the_cap_with_jitter_and_resets() -> None:
    highest = Backoff(1.0, 10.0, rand=lambda: 1.0)
    assert [highest.next() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    lowest = Backoff(1.0, 10.0, rand=lambda: 0.0)
    assert [lowest.next() for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 5.0]
    lowest.reset()
    assert lowest.next() == 0.5
    real = Backoff(2.0, 300.0)
    waits = [real.next() for _ in range(20)]
    assert all(1.0 <= w <= 300.0 for w in waits)
    assert max(waits[-5:]) >= 150.0  # reached the cap region
    with pytest.raises(ValueError):
        Backoff(0, 1)


async def test_node_locks_serialize_overlapping_holders_without_deadlock() -> None:
    locks = NodeLocks()
    inside: list[str] = []
    log: list[tuple[str, str]] = []

    async def hold(name: str, nodes: list[str]) -> None:
        async with locks.hold(nodes):
            for node in nodes:
                assert node not in inside, f"{node} held twice"
            inside.extend(nodes)
            log.append(("in", name))
            await asyncio.sleep(0.02)
            for node in nodes:
                inside.remove(node)
            log.append(("out", name))

    # Opposite orders would deadlock if locks were taken as given.
    await asyncio.wait_for(
        asyncio.gather(
            hold("a", ["web-1", "db-1"]),
            hold("b", ["db-1", "web-1"]),
            hold("c", ["edge-fw"]),
            hold("d", ["web-1"]),
        ),
        timeout=2,
    )
    assert len(log) == 8
    assert not any(locks.locked(n) for n in ("web-1", "db-1", "edge-fw"))


@pytest.mark.parametrize(
    "other",
    [
        "https://github.com/Acme/Infra.git",
        "https://github.com/acme/infra",
        "https://token@github.com/acme/infra/",
        "git@github.com:acme/infra.git",
        "ssh://git@github.com:22/acme/infra.git",
        "http://github.com/acme/infra.git",
    ],
)
def test_the_urls_a_forge_sends_name_the_same_repository(other: str) -> None:
    assert same_repository("https://github.com/acme/infra.git", other)


@pytest.mark.parametrize(
    "other",
    [
        "https://github.com/acme/infra-old.git",
        "https://gitlab.com/acme/infra.git",
        "git@github.com:acme/other.git",
        "/srv/acme/infra",
    ],
)
def test_other_repositories_do_not_match(other: str) -> None:
    assert not same_repository("https://github.com/acme/infra.git", other)


def test_local_paths_compare_by_real_path(tmp_path: object) -> None:
    from pathlib import Path

    root = Path(str(tmp_path))
    (root / "repo").mkdir()
    (root / "link").symlink_to(root / "repo")
    assert same_repository(str(root / "repo"), f"file://{root / 'link'}")
    assert same_repository(str(root / "repo") + "/", str(root / "link"))
    assert not same_repository(str(root / "repo"), str(root / "other"))
    assert branch_name("refs/heads/main") == "main"
    assert branch_name("main") == "main"


def test_only_head_and_refs_are_commit_signals() -> None:
    from pathlib import Path

    git_dir = Path("/wc/.git")
    assert is_ref_change([git_dir], "/wc/.git/refs/heads/main")
    assert is_ref_change([git_dir], "/wc/.git/HEAD")
    assert is_ref_change([git_dir], "/wc/.git/packed-refs")
    assert not is_ref_change([git_dir], "/wc/.git/refs/heads/main.lock")
    assert not is_ref_change([git_dir], "/wc/.git/index")
    assert not is_ref_change([git_dir], "/wc/.git/objects/ab/cdef")
    assert not is_ref_change([git_dir], "/wc/.git/logs/HEAD")
    assert not is_ref_change([git_dir], "/wc/state.yaml")  # an uncommitted edit
