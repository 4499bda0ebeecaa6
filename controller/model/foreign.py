"""YAML that is plainly not a FazAI document: a Kubernetes manifest, a CI or compose file.

A source folder is often a whole repository, with other tools' YAML beside FazAI's.
Those documents are skipped (and counted) rather than reported as errors. Skipping is
the dangerous direction: a FazAI document wrongly skipped is no longer described, and
with ``prune`` FazAI deletes what it described. So only what is *clearly* another
tool's is skipped, and anything that might be a FazAI document with a mistake in it
stays ours, to be reported as an error:

* an ``apiVersion`` that mentions FazAI anywhere (``fazai.dev``, ``faz.ai``,
  ``dev.fazai``, ``Fazai.dev``) or has a group close to ``fazai.dev`` (``fazia.dev``);
* a kind only FazAI has (``File``, ``Sysctl``, any case), whatever the group, and any
  document whose group is a FazAI platform name (``linux/``, ``opnsense/``);
* a group-less version other than exactly ``v1`` (``v1alpha1``, ``v1beta1``) when the
  document has a kind, ``metadata`` or ``spec``, or the version is FazAI-like
  (``v1alpha1``);
* ``Node`` or ``Service`` (kinds core Kubernetes has too) whose ``spec`` has a field of
  FazAI's kind, or under ``v1`` a field Kubernetes' kind does not have;
* near-miss key names (``apiversion``, ``api_version``, ``Kind``, ``Spec``, ``METADATA``),
  a ``kind`` without ``apiVersion``, or ``metadata`` with ``spec``;
* anything that is not a mapping, or a list of mappings of which one is ours.

The loader adds one rule on top: nothing is skipped in a file that also holds a FazAI
document (:func:`controller.model.yamlsource.read_documents`).
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from controller.model import kinds

GROUP = "fazai.dev"
# Kinds both FazAI and core Kubernetes (apiVersion: v1) have: the kind alone says nothing.
_SHARED_KINDS = frozenset({"node", "service"})
# The spec fields core Kubernetes' Node and Service have (v1 NodeSpec, ServiceSpec).
_KUBERNETES_SPEC = {
    "node": frozenset(
        {"configsource", "externalid", "podcidr", "podcidrs", "providerid", "taints"}
        | {"unschedulable"}
    ),
    "service": frozenset(
        {"allocateloadbalancernodeports", "clusterip", "clusterips", "externalips"}
        | {"externalname", "externaltrafficpolicy", "healthchecknodeport", "ports"}
        | {"internaltrafficpolicy", "ipfamilies", "ipfamilypolicy", "loadbalancerclass"}
        | {"loadbalancerip", "loadbalancersourceranges", "publishnotreadyaddresses"}
        | {"selector", "sessionaffinity", "sessionaffinityconfig", "trafficdistribution"}
        | {"type"}
    ),
}
_CLOSE = 0.7  # difflib ratio: 'fazia.dev' 0.89, 'fazai.io' 0.71; 'apps' 0.15, 'v1' 0.18
_KEY_CLOSE = 0.85  # 'apiverison' 0.9, 'metdata' 0.93; compose's 'version' 0.82 is not
_FAZAI_VERSION = re.compile(r"v\d+(alpha|beta)\d*")


def is_foreign(value: Any) -> bool:
    """Whether a parsed YAML document is plainly another tool's."""
    if isinstance(value, list):
        return bool(value) and all(isinstance(i, dict) and _foreign_mapping(i) for i in value)
    return isinstance(value, dict) and _foreign_mapping(value)


def _flat(text: str) -> str:
    """Lower-case ASCII letters and digits only: 'Api_Version' -> 'apiversion'."""
    decomposed = unicodedata.normalize("NFKD", text)
    return re.sub(r"[^a-z0-9]", "", decomposed.lower())


def _key_like(key: str, word: str) -> bool:
    flat = _flat(key)
    return flat == word or difflib.SequenceMatcher(None, flat, word).ratio() >= _KEY_CLOSE


def _foreign_mapping(value: dict[Any, Any]) -> bool:
    api = value.get("apiVersion")
    if isinstance(api, str) and _looks_ours(api):
        # Ours whatever its keys say (every test below only keeps a document ours): the
        # common case answered before the near-miss key tests, whose difflib ratios cost
        # 0.25 ms a document (0.08 s of loading 300).
        return False
    keys = [k for k in value if isinstance(k, str)]
    # A key spelt almost like one of FazAI's envelope is a FazAI document with a typo.
    for key in keys:
        for exact, word in (("apiVersion", "apiversion"), ("kind", "kind")):
            if key != exact and _flat(key) == word:
                return False
        if key not in ("apiVersion", "kind") and _key_like(key, "apiversion"):
            return False
        if key not in ("metadata", "spec") and (
            _flat(key) in ("metadata", "spec", "specs") or _key_like(key, "metadata")
        ):
            return False
    has_metadata = "metadata" in value
    has_spec = "spec" in value
    if "apiVersion" not in value:
        return "kind" not in value and not (has_metadata and has_spec)
    api = value["apiVersion"]
    kind = value.get("kind")
    if not isinstance(api, str) or ("kind" in value and not isinstance(kind, str)):
        return False
    if _looks_ours(api):
        return False
    kind_flat = _flat(kind) if isinstance(kind, str) else ""
    if kind_flat in _fazai_only_kinds():
        return False
    group = api.strip().rpartition("/")[0]
    if _flat(group) in _platforms():
        return False
    if not group and api.strip() != "v1":
        if _FAZAI_VERSION.fullmatch(api.strip().lower()):
            return False
        # Helm's Chart.yaml says 'apiVersion: v2' with no kind: plainly not ours.
        if "kind" in value or has_metadata or has_spec:
            return False
    if kind_flat in _SHARED_KINDS:
        return _foreign_shared(kind_flat, value.get("spec"), core=api.strip() == "v1")
    return True


def _foreign_shared(kind: str, spec: Any, *, core: bool) -> bool:
    """A Node or Service under another apiVersion: foreign unless its spec says FazAI."""
    if spec is None:
        # A Kubernetes Node is often written without a spec; a FazAI Service never is.
        return kind == "node" or not core
    if not isinstance(spec, Mapping):
        return False
    fields = {_flat(k) for k in spec if isinstance(k, str)}
    if fields & _fazai_spec_fields(kind):
        return False
    # Under core v1, a field Kubernetes' kind does not have is a FazAI spec with a typo.
    return not (core and fields - _KUBERNETES_SPEC[kind])


def _looks_ours(api: str) -> bool:
    if "fazai" in _flat(api):
        return True
    group = api.split("/", 1)[0].strip().lower()
    return difflib.SequenceMatcher(None, group, GROUP).ratio() >= _CLOSE


def _fazai_only_kinds() -> frozenset[str]:
    return frozenset(_flat(n) for n in kinds.names()) - _SHARED_KINDS


def _fazai_spec_fields(kind: str) -> frozenset[str]:
    for name in kinds.names():
        if _flat(name) == kind:
            properties = kinds.load_schema(name.lower()).get("properties", {})
            return frozenset(_flat(p) for p in properties)
    return frozenset()


def _platforms() -> frozenset[str]:
    found = {kind.platform for kind in map(kinds.get, kinds.names()) if kind is not None}
    return frozenset(_flat(p) for p in found if p) | {"linux", "opnsense"}
