"""The reconcile engine: diff desired against live state and plan the difference."""
