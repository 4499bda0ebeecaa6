"""Where the state store lives when the caller does not say."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

FILE_NAME = "state.db"

# The escrow key (see ``escrow``): the key itself, or a file holding it. When neither is
# set, a key file next to the state file, made on first use.
ESCROW_KEY_ENV = "FAZAI_ESCROW_KEY"
ESCROW_KEY_FILE_ENV = "FAZAI_ESCROW_KEY_FILE"
ESCROW_KEY_SUFFIX = ".escrow.key"


def default_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$FAZAI_STATE`` (the file itself), else ``$XDG_STATE_HOME/fazai/state.db``, else
    ``~/.local/state/fazai/state.db``.

    The XDG base-directory spec says a relative ``XDG_STATE_HOME`` is invalid and must be
    ignored, so it is: a relative one would put the journal wherever the process happens to
    start, and the next start would not find the open transactions there."""
    env = os.environ if environ is None else environ
    explicit = env.get("FAZAI_STATE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = env.get("XDG_STATE_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "fazai" / FILE_NAME
    return Path("~").expanduser() / ".local" / "state" / "fazai" / FILE_NAME


def default_escrow_key_path(state: Path) -> Path:
    """The escrow key file of the state file ``state``: ``state.db`` -> ``state.escrow.key``
    in the same directory.

    Not ``state.db.key``: copying ``state.db*`` (the database with its WAL, for a backup
    or a bug report) must not take the key along with the ciphertexts it opens."""
    return state.with_name(state.stem + ESCROW_KEY_SUFFIX)
