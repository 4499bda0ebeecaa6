"""Where the state store lives when the caller does not say."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

FILE_NAME = "state.db"


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
