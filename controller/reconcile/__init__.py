"""The controller people leave running: sources watched, reconciles queued and run.

``fazai serve`` builds a :class:`~controller.reconcile.handle.ControllerHandle` (the
reconcile loop) and the HTTP API on top of it (``controller.server``).
"""
