"""``fazai import``: documents for what a node holds and no document describes.

In the spirit of ``terraform import``: the node is read, and each unmanaged object
becomes a document that states it as it is and binds to it (``spec.adopt``), ready to
commit. Planned, such a document is in sync; applied, its object becomes FazAI's (owned
by the platform's id, so prune can reach it). Nothing is written to the node here.

Two kinds of object are left out, each with a line saying why: one the inventory says
FazAI already owns (its document left the source while prune was off: a second,
adopting document would make two owners, and prune of one would delete the other's
object), and one whose document would not pass validation (a floating rule on no
interface, say): a document the user cannot commit helps no one, and one invalid
document would block the whole repository.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from controller import providers
from controller.errors import FazaiError
from controller.model import crosscheck, validate
from controller.model.document import API_VERSION, Document
from controller.model.state import DesiredState
from controller.model.yamlsource import read_documents
from controller.providers.base import Importer, Unmanaged
from controller.store import OwnedObject
from controller.words import count

MAX_NAME = 63


def importer(platform: str) -> Importer:
    provider: Any = providers.for_platform(platform)
    if not isinstance(provider, Importer):
        raise FazaiError(f"import is not available for {platform} nodes yet")
    return provider


@dataclass(frozen=True)
class Imported:
    documents: tuple[dict[str, Any], ...]
    skipped: tuple[str, ...] = ()  # one line per object left out, and why


async def documents(
    state: DesiredState,
    node_name: str,
    only_kinds: Collection[str] = (),
    *,
    owned: Sequence[OwnedObject],
) -> Imported:
    """One document per unmanaged object of ``node_name`` (of ``only_kinds``, when given),
    named uniquely against the desired state and each other, less the objects ``owned``
    (the node's inventory) holds and those whose document would not validate."""
    node = state.nodes[node_name]
    provider = importer(str(node.spec["platform"]))
    found = await provider.unmanaged(node, state.resources_for(node_name), state.source)
    taken = {(d.kind, d.name) for d in state.resources}
    candidates: list[tuple[Unmanaged, dict[str, Any]]] = []
    skipped: list[str] = []
    for item in sorted(found, key=lambda i: (i.kind, i.name)):
        if only_kinds and item.kind not in only_kinds:
            continue
        record = provider.owner(node_name, item, owned)
        if record is not None:
            skipped.append(
                f"{item.kind} {item.name}: FazAI owns it already as {record.kind}/"
                f"{record.name}, whose document is no longer in the source; restore that "
                "document (prune would delete the object), not imported"
            )
            continue
        hint, spec = provider.import_spec(item)
        name = unique_name(item.kind, dns_name(hint, item.kind), taken)
        taken.add((item.kind, name))
        body = {
            "apiVersion": API_VERSION,
            "kind": item.kind,
            "metadata": {"name": name},
            "spec": {"target": {"node": node_name}, **spec},
        }
        candidates.append((item, body))
    valid = _valid(state, candidates, skipped)
    return Imported(tuple(valid), tuple(skipped))


def _valid(
    state: DesiredState,
    candidates: Sequence[tuple[Unmanaged, dict[str, Any]]],
    skipped: list[str],
) -> list[dict[str, Any]]:
    """The candidates that pass the kind's schema and checks beside the desired state,
    as ``fazai validate`` would see them once saved; each other one gets a line in
    ``skipped``. Repeated until none fails, since leaving one out (an alias) can fail
    another (a rule using it)."""
    kept = list(candidates)
    while True:
        parsed: dict[str, tuple[int, Document]] = {}
        bad: dict[int, str] = {}
        for index, (_, body) in enumerate(kept):
            raws, problems = read_documents("import", yaml.safe_dump(body).encode())
            document, found = validate.to_document(raws[0]) if raws else (None, [])
            errors = [p for p in [*problems, *found] if p.is_error]
            if errors or document is None:
                bad[index] = _why(errors[0].path, errors[0].message) if errors else "unreadable"
            else:
                parsed[document.subject] = (index, document)
        documents = [*state.nodes.values(), *state.resources, *(d for _, d in parsed.values())]
        for problem in crosscheck.check(documents, state.source):
            if problem.is_error and problem.subject in parsed:
                bad.setdefault(parsed[problem.subject][0], _why(problem.path, problem.message))
        if not bad:
            return [body for _, body in kept]
        for index, why in sorted(bad.items()):
            item = kept[index][0]
            skipped.append(f"{item.kind} {item.name}: its document would not validate ({why})")
        kept = [c for i, c in enumerate(kept) if i not in bad]


def _why(path: str, message: str) -> str:
    return f"{path}: {message}" if path else message


def dns_name(text: str, kind: str) -> str:
    """``text`` as a DNS-1123 label: lower case, runs of anything else made one '-'."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:MAX_NAME].rstrip("-")
    return name or kind.lower()


def unique_name(kind: str, name: str, taken: Collection[tuple[str, str]]) -> str:
    if (kind, name) not in taken:
        return name
    for number in range(2, len(taken) + 3):
        suffix = f"-{number}"
        candidate = name[: MAX_NAME - len(suffix)].rstrip("-") + suffix
        if (kind, candidate) not in taken:
            return candidate
    raise AssertionError("unreachable: more names than taken ones were tried")


def render(docs: Sequence[Mapping[str, Any]], node: str) -> str:
    """The documents as one multi-document YAML stream, with a header saying what it is."""
    header = (
        f"# fazai import: {count(len(docs), 'object')} on {node} that no document describes.\n"
        "# Each binds to its object (spec.adopt): applied, FazAI owns it (prune can then\n"
        "# delete it once its document goes); nothing is created twice.\n"
    )
    if not docs:
        return header
    body = yaml.safe_dump_all(
        [dict(d) for d in docs], sort_keys=False, default_flow_style=False, allow_unicode=False
    )
    return header + body
