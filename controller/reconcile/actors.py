"""Who set a change going, and whether an approver is one of them.

A pass's actors are the API tokens that asked for it (coalesced requests keep every one)
and, for the commit it reconciles, the commit's author and committer. None of them may
approve the change: the author wrote it, the committer put it on the branch, a token that
asked for the pass chose when it runs. A git identity is only as true as the commit says:
without signed commits anyone who can push can write any author (see README, "Roles");
with signatures required, the signer's identity is an actor too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from controller.engine import trail


@dataclass(frozen=True)
class Actors:
    tokens: tuple[str, ...] = ()  # token names that asked for the pass, sorted
    author: str = ""  # "Name <email>" of the commit reconciled ("": unknown)
    committer: str = ""
    signature: str | None = None  # what the signature check said; None: not checked
    signer: str = ""  # who signed the commit (SSH principal, GPG user id), when checked

    @property
    def names(self) -> tuple[str, ...]:
        """Every actor, each once: token names, then the commit's identities (the
        signer's is the one a forger cannot write)."""
        people = (*self.tokens, self.author, self.committer, self.signer)
        return tuple(dict.fromkeys(n for n in people if n))

    def __str__(self) -> str:
        """The run's recorded actor (runs table, audit trail)."""
        if not self.author:
            text = ", ".join(self.tokens)
            return text
        text = trail.commit_actor(self.author, self.signature)
        if self.committer and self.committer != self.author:
            text += f", committed by {self.committer}"
        if self.tokens:
            text += f" (requested by {', '.join(self.tokens)})"
        return text


def normalize(actor: str | Actors | Iterable[str]) -> tuple[str, ...]:
    """The actor names of what a caller passes as ``actor``: one name, an Actors, or
    several names."""
    if isinstance(actor, Actors):
        return actor.names
    if isinstance(actor, str):
        return (actor,) if actor else ()
    return tuple(dict.fromkeys(a for a in actor if a))


def _identity(actor: str) -> tuple[str, str]:
    """(name, email) of a git identity "Name <email>"; a bare address is an email."""
    display, sep, rest = actor.partition("<")
    if sep:
        return display.strip(), rest.removesuffix(">").strip()
    return ("", actor.strip()) if "@" in actor else (actor.strip(), "")


def is_actor(actors: Sequence[str], name: str, identities: Sequence[str] = ()) -> bool:
    """Whether the approver token ``name``, whose configured ``identities`` are emails or
    names it commits under, is one of ``actors``. Compared ignoring case:

    * a token actor (a name with no ``<``) is that token's name;
    * a git identity is the token's when one of its identities is the identity's name
      or email, or when the token's name is the name, the email or the email's local part.

    The name rule only adds refusals: it can never answer "not the actor" for a token the
    identities say is one. A token named unlike its commits (``ops-alice`` committing as
    ``alice@example.com``) is only recognised through ``identities``."""
    if not name:
        return False
    wanted = name.casefold()
    own = {i.strip().casefold() for i in identities if i.strip()}
    for actor in actors:
        if not actor:
            continue
        if "<" not in actor and "@" not in actor:
            if actor.strip().casefold() == wanted or actor.strip().casefold() in own:
                return True
            continue
        person, email = _identity(actor)
        forms = {f.casefold() for f in (person, email) if f}
        if own & forms:
            return True
        if wanted in forms or (email and wanted == email.partition("@")[0].casefold()):
            return True
    return False
