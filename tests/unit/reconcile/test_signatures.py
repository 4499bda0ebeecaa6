"""Commit signature verification with real SSH and GPG signatures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import git
import pytest

from controller.errors import SourceError
from controller.source.signatures import SignaturePolicy
from tests.signkit import GpgKey, SshKey, commit


@pytest.fixture
def repo(tmp_path: Path) -> git.Repo:
    return git.Repo.init(tmp_path / "repo", initial_branch="main")


@pytest.fixture
def gpg_keys() -> Iterator[tuple[GpgKey, GpgKey]]:
    with GpgKey("alice@example.invalid") as alice, GpgKey("mallory@example.invalid") as mallory:
        yield alice, mallory


def test_ssh_signatures(tmp_path: Path, repo: git.Repo) -> None:
    alice, mallory = SshKey(tmp_path, "alice"), SshKey(tmp_path, "mallory")
    signers = tmp_path / "allowed_signers"
    signers.write_text(alice.allowed_signers_line("alice@example.invalid"))
    unsigned = commit(repo, {"a.yaml": "1\n"}, "unsigned")
    good = commit(repo, {"a.yaml": "2\n"}, "by alice", ssh=alice)
    foreign = commit(repo, {"a.yaml": "3\n"}, "by mallory", ssh=mallory)
    with SignaturePolicy(allowed_signers=signers) as policy:
        accepted = policy.verify(repo.git_dir, good)
        assert accepted.accepted
        assert accepted.reason.startswith("SSH signature by alice@example.invalid")
        assert accepted.signer == "alice@example.invalid"  # an actor of the commit
        refused = policy.verify(repo.git_dir, foreign)
        assert not refused.accepted and refused.signer == ""
        assert refused.reason == "signed by an SSH key that is not in allowedSigners"
        bare = policy.verify(repo.git_dir, unsigned)
        assert (bare.accepted, bare.reason) == (False, "the commit is not signed")
    # Without allowedSigners no SSH signature is accepted, whatever git config says.
    repo.git.config("gpg.ssh.allowedSignersFile", str(signers))
    with SignaturePolicy() as nobody:
        assert not nobody.verify(repo.git_dir, good).accepted


def test_gpg_signatures(tmp_path: Path, repo: git.Repo, gpg_keys: tuple[GpgKey, GpgKey]) -> None:
    alice, mallory = gpg_keys
    key_file = alice.export(tmp_path / "alice.asc")
    unsigned = commit(repo, {"a.yaml": "1\n"}, "unsigned")
    good = commit(repo, {"a.yaml": "2\n"}, "by alice", gpg=alice)
    foreign = commit(repo, {"a.yaml": "3\n"}, "by mallory", gpg=mallory)
    with SignaturePolicy(gpg_keys=[key_file]) as policy:
        accepted = policy.verify(repo.working_tree_dir or "", good)
        assert accepted.accepted, accepted.reason
        assert "alice@example.invalid" in accepted.reason
        assert "<alice@example.invalid>" in accepted.signer
        refused = policy.verify(repo.git_dir, foreign)
        assert not refused.accepted
        assert refused.reason.startswith("signed by a GPG key that is not in gpgKeys")
        assert not policy.verify(repo.git_dir, unsigned).accepted
        home = policy._home
        assert home is not None and home.is_dir()
    assert not home.exists()  # the private keyring is removed on close


def test_a_key_file_that_is_not_a_key_is_refused_at_open(tmp_path: Path) -> None:
    junk = tmp_path / "junk.asc"
    junk.write_text("not a key\n")
    policy = SignaturePolicy(gpg_keys=[junk])
    with pytest.raises(SourceError, match="cannot import GPG key"):
        policy.open()
