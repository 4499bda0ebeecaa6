"""The shipped default policies: YAML Policy documents in the repository's ``policies/``
folder, packaged as ``controller/policy/defaults`` (a link to it) so a wheel carries
them. Read and validated like any document; a broken default is a bug, never skipped."""

from __future__ import annotations

from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

from controller.errors import InvalidInputError
from controller.model import validate
from controller.model.yamlsource import read_documents
from controller.policy import kind as _kind  # noqa: F401  (registers Policy before reading)
from controller.policy.document import Policy, from_document

# The defaults every installation must have: a missing one (a wheel built without the
# data files, a broken link) would silently drop a guardrail.
EXPECTED = frozenset(
    {
        "fazai-access-files",
        "fazai-agent-proposals",
        "fazai-firewall-rules",
        "fazai-system-users",
    }
)


class MissingDefaultsError(RuntimeError):
    """FazAI is installed without its default policies: a packaging bug, never skipped."""


@cache
def shipped_policies() -> tuple[Policy, ...]:
    folder = resources.files("controller.policy").joinpath("defaults")
    if not folder.is_dir():
        raise MissingDefaultsError(f"the shipped default policies are missing ({folder})")
    policies = _read(folder)
    missing = EXPECTED - {p.name for p in policies}
    if missing:
        raise MissingDefaultsError(
            f"shipped default policies missing from {folder}: {', '.join(sorted(missing))}"
        )
    return policies


def _read(folder: Traversable) -> tuple[Policy, ...]:
    policies: list[Policy] = []
    problems = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        raws, found = read_documents(f"policies/{entry.name}", entry.read_bytes())
        problems.extend(found)
        for raw in raws:
            document, found = validate.to_document(raw)
            # The defaults are checked by schema only: their fazai- names are theirs.
            problems.extend(found)
            if document is not None:
                policies.append(from_document(document, shipped=True))
    if problems:
        raise InvalidInputError(problems)
    return tuple(policies)
