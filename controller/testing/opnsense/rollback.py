"""The filter rollback timer of OPNsense up to 26.1 (``filter rollback_timer``).

``apply/{revision}`` starts ``rollback_timer.php``: unless ``cancelRollback/{revision}``
removes its lock file within 60 seconds, the filter rules are copied back from the backup
of that revision and the filter reloaded. The script runs under ``flock -n``, so while one
timer runs another apply/{revision} arms nothing. Here the wait is a real
``threading.Timer`` whose length tests can shorten.
"""

from __future__ import annotations

import re
import threading

from controller.testing.opnsense.state import EmulatorState

ROLLBACK_SCRIPT = "/usr/local/opnsense/scripts/filter/rollback_timer.php"


class RollbackTimer:
    def __init__(self, state: EmulatorState, seconds: float = 60.0) -> None:
        self.state = state
        self.seconds = seconds
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._revision: str | None = None
        self.fired: list[str] = []  # revisions rolled back to, in order

    @staticmethod
    def sanitize(revision: str) -> str:
        return re.sub(r"[^0-9.]", "", revision)

    @property
    def armed(self) -> str | None:
        """The revision a running timer will restore, None when no timer runs."""
        with self._lock:
            return self._revision

    def arm(self, revision: str) -> bool:
        rev = self.sanitize(revision)
        with self._lock:
            if not rev or self._timer is not None:
                return False
            self._revision = rev
            self._timer = threading.Timer(self.seconds, self._fire, args=(rev,))
            self._timer.daemon = True
            self._timer.start()
            return True

    def cancel(self, revision: str) -> bool:
        """rollback_cancel.php: True (exit 0) when the timer of that revision was stopped."""
        rev = self.sanitize(revision)
        with self._lock:
            if self._timer is None or not rev or rev != self._revision:
                return False
            self._timer.cancel()
            self._timer = None
            self._revision = None
            return True

    def _fire(self, rev: str) -> None:
        with self._lock:
            if self._revision != rev:
                return
            self._timer = None
            self._revision = None
        restore_filter(self.state, rev, f"{ROLLBACK_SCRIPT} made changes", "root")
        self.fired.append(rev)

    def stop(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None
            self._revision = None


def restore_filter(state: EmulatorState, revision: str, description: str, who: str) -> bool:
    """Filter::rollback() and a filter reload: rules from that backup become live."""
    with state.lock:
        backup = state.backup_by_revision(revision)
        if backup is None:
            return False
        state.restore(backup, ["rule"], settings=False)
        state.save(description, who)
        state.mark_applied(["filter"])
        return True
