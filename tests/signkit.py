"""Signed commits for tests: real SSH keys (ssh-keygen) and real GPG keys (gnupg)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

import git

AUTHOR = git.Actor("Test", "test@example.invalid")


class SshKey:
    def __init__(self, folder: Path, name: str) -> None:
        self.private = folder / name
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(self.private)],
            check=True,
        )
        self.public = Path(f"{self.private}.pub").read_text().strip()

    def allowed_signers_line(self, principal: str) -> str:
        return f"{principal} {self.public}\n"


class GpgKey:
    """A key pair in its own short-pathed GnuPG home (its agent is killed on close)."""

    def __init__(self, email: str) -> None:
        self.email = email
        self.home = Path(tempfile.mkdtemp(prefix="fzg-"))
        self.home.chmod(0o700)
        self._gpg(
            "--pinentry-mode", "loopback", "--passphrase", "",
            "--quick-gen-key", f"Test <{email}>", "ed25519", "sign", "never",
        )  # fmt: skip

    def _gpg(self, *args: str) -> str:
        result = subprocess.run(
            ["gpg", "--batch", "--no-tty", "--quiet", *args],
            env={**os.environ, "GNUPGHOME": str(self.home)},
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout

    def export(self, path: Path) -> Path:
        path.write_text(self._gpg("--armor", "--export", self.email))
        return path

    def close(self) -> None:
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--kill", "all"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> GpgKey:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def commit(
    repo: git.Repo,
    files: dict[str, str],
    message: str,
    *,
    ssh: SshKey | None = None,
    gpg: GpgKey | None = None,
) -> str:
    """Write ``files`` in the working copy and commit them, signed with ``ssh`` or
    ``gpg`` (or unsigned); the new commit's SHA."""
    root = Path(str(repo.working_tree_dir))
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    repo.git.add("--all")
    options = ["-c", f"user.name={AUTHOR.name}", "-c", f"user.email={AUTHOR.email}"]
    env = dict(os.environ)
    if ssh is not None:
        options += ["-c", "gpg.format=ssh", "-c", f"user.signingkey={ssh.private}"]
    if gpg is not None:
        options += ["-c", "gpg.format=openpgp", "-c", f"user.signingkey={gpg.email}"]
        env["GNUPGHOME"] = str(gpg.home)
    sign = ["-S"] if ssh or gpg else ["--no-gpg-sign"]
    subprocess.run(
        ["git", "-C", str(root), *options, "commit", "-q", *sign, "-m", message],
        env=env,
        check=True,
        capture_output=True,
    )
    return str(repo.head.commit.hexsha)
