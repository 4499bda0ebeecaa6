"""YAML that is plainly not a FazAI document: a Kubernetes manifest, a CI or compose file.

A source folder is often a whole repository, with other tools' YAML beside FazAI's.
Those documents are skipped (and counted) rather than reported as errors; but anything
that might be a FazAI document with a mistake in it stays ours, so that the mistake is
reported instead of the document silently vanishing:

* an ``apiVersion`` whose group is ``fazai.dev`` or close to it (``fazia.dev/v1``) is
  ours, as is one without a group (``v1alpha1``) on a kind only FazAI has (``File``);
* a document with a ``kind`` but no ``apiVersion``, or with ``metadata`` and ``spec``, is
  ours;
* any other ``apiVersion`` (``v1``, ``apps/v1``, ``argoproj.io/v1alpha1``), or a mapping
  with neither ``apiVersion`` nor ``kind``, or a list of such mappings, is not.
"""

from __future__ import annotations

import difflib
from typing import Any

from controller.model import kinds

GROUP = "fazai.dev"
# Kinds both FazAI and core Kubernetes (apiVersion: v1) have: the kind says nothing.
_SHARED_KINDS = frozenset({"Node", "Service"})
_CLOSE = 0.7  # difflib ratio: 'fazia.dev' 0.89, 'fazai.io' 0.71; 'apps' 0.15, 'v1' 0.18


def is_foreign(value: Any) -> bool:
    """Whether a parsed YAML document is plainly another tool's."""
    if isinstance(value, list):
        return bool(value) and all(isinstance(i, dict) and _foreign_mapping(i) for i in value)
    return isinstance(value, dict) and _foreign_mapping(value)


def _foreign_mapping(value: dict[str, Any]) -> bool:
    if "apiVersion" not in value:
        return "kind" not in value and not ("metadata" in value and "spec" in value)
    api = value["apiVersion"]
    if not isinstance(api, str) or _looks_ours(api):
        return False
    kind = value.get("kind")
    ours_only = isinstance(kind, str) and kind in kinds.names() and kind not in _SHARED_KINDS
    return not ("/" not in api and ours_only)


def _looks_ours(api: str) -> bool:
    group = api.split("/", 1)[0].strip().lower()
    if "fazai" in group:
        return True
    return difflib.SequenceMatcher(None, group, GROUP).ratio() >= _CLOSE
