"""Notifications: what drifted or changed, on which node, from which commit, and why.

:class:`~controller.notify.dispatcher.Notifier` listens to the controller's events and
sends notices to JSON webhooks (``schemas/webhook.schema.json``), Slack-compatible
webhooks and email over SMTP; the same drift is said once, and again only when it changes
or is resolved (:mod:`controller.notify.policy`).
"""

from __future__ import annotations

from controller.notify.notice import Notice
from controller.notify.settings import NoticeKind, NotifySettings, from_config

__all__ = ["Notice", "NoticeKind", "NotifySettings", "from_config"]
