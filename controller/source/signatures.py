"""Commit signature verification: only commits signed by allowed keys are reconciled.

Git verifies (``git verify-commit``) with a configuration of our own that nothing in the
repository or the user's git config can widen:

* SSH signatures against an ssh-keygen ``allowed_signers`` file
  (``gpg.ssh.allowedSignersFile``); without one, every SSH signature is refused;
* GPG signatures against a private GnuPG home holding only the configured public keys
  (imported at start); without keys that home is empty and every GPG signature is
  refused. A key being in that keyring is what allows it: GnuPG's web of trust is not
  consulted.

Only the head commit of the branch is checked: its signer vouches for the whole tree
that is applied.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from controller.errors import SourceError

VERIFY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Verdict:
    revision: str
    accepted: bool
    reason: str  # who signed it, or why it is refused
    # The signer's identity, accepted signatures only: the SSH principal of
    # allowedSigners, or the GPG key's user id ("Name <email>").
    signer: str = ""


class SignaturePolicy:
    """The keys whose signatures are accepted. Use as a context manager (or call
    :meth:`open` and :meth:`close`): it keeps a private GnuPG home while open."""

    def __init__(
        self,
        allowed_signers: Path | None = None,
        gpg_keys: Sequence[Path] = (),
        *,
        timeout: float = VERIFY_TIMEOUT_S,
    ) -> None:
        self.allowed_signers = allowed_signers
        self.gpg_keys = tuple(gpg_keys)
        self.timeout = timeout
        self._home: Path | None = None

    def open(self) -> SignaturePolicy:
        """Create the GnuPG home and import the keys; SourceError names a key that cannot
        be imported."""
        if self._home is not None:
            return self
        # Short path under /tmp: GnuPG's sockets live in its home and have a length limit.
        self._home = Path(tempfile.mkdtemp(prefix="fazai-gpg-"))
        self._home.chmod(0o700)
        try:
            for key in self.gpg_keys:
                self._import(key)
        except BaseException:
            self.close()
            raise
        return self

    def _import(self, key: Path) -> None:
        try:
            result = subprocess.run(
                ["gpg", "--batch", "--no-tty", "--quiet", "--import", "--", str(key)],
                env=self._env(),
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SourceError(f"cannot import GPG key {key}: {exc}") from exc
        if result.returncode != 0:
            detail = result.stderr.strip().splitlines()[-1:] or ["gpg failed"]
            raise SourceError(f"cannot import GPG key {key}: {detail[0]}")

    def close(self) -> None:
        home, self._home = self._home, None
        if home is None:
            return
        # An agent may have been started for the home; do not leave it behind.
        if shutil.which("gpgconf"):
            subprocess.run(
                ["gpgconf", "--homedir", str(home), "--kill", "all"],
                capture_output=True,
                timeout=10,
                check=False,
            )
        shutil.rmtree(home, ignore_errors=True)

    def __enter__(self) -> SignaturePolicy:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _env(self) -> dict[str, str]:
        if self._home is None:
            raise RuntimeError("SignaturePolicy used before open()")
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env["GNUPGHOME"] = str(self._home)
        env["LC_ALL"] = "C"  # the messages parsed below are git's and ssh-keygen's English
        return env

    def verify(self, repository: Path | str, revision: str) -> Verdict:
        """Whether ``revision`` of the repository at ``repository`` (a work tree or a git
        directory) is signed by an allowed key. SourceError when git cannot be run."""
        signers = str(self.allowed_signers) if self.allowed_signers else os.devnull
        argv = [
            "git",
            "-C",
            str(repository),
            "-c",
            f"gpg.ssh.allowedSignersFile={signers}",
            "-c",
            "gpg.ssh.revocationFile=",
            "-c",
            "gpg.program=gpg",
            "-c",
            "gpg.ssh.program=ssh-keygen",
            "-c",
            "gpg.minTrustLevel=undefined",
            "verify-commit",
            "--raw",
            "--",  # a revision is an operand, never an option
            revision,
        ]
        try:
            result = subprocess.run(
                argv,
                env=self._env(),
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SourceError(f"cannot verify the signature of {revision[:12]}: {exc}") from exc
        output = (result.stderr + result.stdout).strip()
        if result.returncode == 0:
            return Verdict(revision, True, _signed_by(output), _signer(output))
        return Verdict(revision, False, _refusal(output))


def _signed_by(output: str) -> str:
    for line in output.splitlines():
        if line.startswith('Good "git" signature for '):
            # Good "git" signature for alice@example with ED25519 key SHA256:...
            return "SSH signature by " + line.removeprefix('Good "git" signature for ')
        if line.startswith("[GNUPG:] GOODSIG "):
            _, _, keyid, *uid = line.split(" ")
            return f"GPG signature by {' '.join(uid)} (key {keyid})"
    return "signed by an allowed key"


def _signer(output: str) -> str:
    for line in output.splitlines():
        if line.startswith('Good "git" signature for '):
            return line.removeprefix('Good "git" signature for ').split(" with ", 1)[0].strip()
        if line.startswith("[GNUPG:] GOODSIG "):
            return " ".join(line.split(" ")[3:]).strip()
    return ""


def _refusal(output: str) -> str:
    if not output:
        return "the commit is not signed"
    if "No principal matched" in output:
        return "signed by an SSH key that is not in allowedSigners"
    if "allowedSignersFile needs to be configured" in output:
        return "signed with SSH, and no allowedSigners is configured"
    for line in output.splitlines():
        if line.startswith("[GNUPG:] NO_PUBKEY "):
            return f"signed by a GPG key that is not in gpgKeys (key {line.split(' ')[2]})"
        if line.startswith("[GNUPG:] BADSIG "):
            return "the GPG signature does not match the commit"
        if line.startswith(("[GNUPG:] EXPKEYSIG ", "[GNUPG:] REVKEYSIG ")):
            return "signed by an expired or revoked GPG key"
    if "Could not verify signature" in output or "Signature verification failed" in output:
        return "the SSH signature does not match the commit"
    last = [line for line in output.splitlines() if not line.startswith("[GNUPG:]")][-1:]
    return f"signature not accepted: {last[0] if last else 'git verify-commit failed'}"
