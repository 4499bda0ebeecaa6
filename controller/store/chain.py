"""The hash chain under the audit trail: canonical records, their digests, and the check.

Each record's digest covers every column of it (seq, time, actor, trigger, run, node,
action, payload, algorithm) and the digest of the record before it (``prev``; 64 zeros
for the first), so changing, removing or reordering any record breaks the chain at that
record. Without a key the digest is SHA-256: it catches edits by hand and bit rot, not an
attacker who recomputes the chain. With a key (``$FAZAI_AUDIT_KEY``, or a file named by
``$FAZAI_AUDIT_KEY_FILE``, kept away from the state file) it is HMAC-SHA256, which nobody
without the key can recompute. Removing records from the end leaves a valid shorter
chain: only an anchor kept elsewhere (the head digest ``verify`` prints) shows that.

The payload is stored as the exact canonical text that was hashed (sorted keys, no
spaces, ASCII, no floats: they are written as strings), so a verifier in any language
hashes the stored bytes and never re-encodes anything.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.errors import AuditKeyError

KEY_ENV = "FAZAI_AUDIT_KEY"
KEY_FILE_ENV = "FAZAI_AUDIT_KEY_FILE"
GENESIS = "0" * 64
PLAIN = "sha256"
KEYED = "hmac-sha256"
MIN_KEY_CHARS = 16
_REORDER_WINDOW = 64  # how far away a moved record is looked for, to name it "reordered"


@dataclass(frozen=True)
class KeyRef:
    """Where the audit key is: ``env`` names a variable holding it, ``file`` a file."""

    env: str | None = None
    file: Path | None = None

    def describe(self) -> str:
        return f"environment variable {self.env}" if self.env else f"key file {self.file}"


def key_ref(environ: Mapping[str, str] | None = None) -> KeyRef | None:
    """The configured audit key, or None (records are then plain SHA-256)."""
    env = os.environ if environ is None else environ
    if env.get(KEY_ENV):
        return KeyRef(env=KEY_ENV)
    if env.get(KEY_FILE_ENV):
        return KeyRef(file=Path(env[KEY_FILE_ENV]).expanduser())
    return None


class Key:
    """An opened HMAC key; ``kid`` names it in records without showing it."""

    __slots__ = ("_material", "kid")

    def __init__(self, material: bytes) -> None:
        self._material = material
        self.kid = hashlib.sha256(b"fazai.audit.kid\0" + material).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"Key(kid={self.kid})"

    def mac(self, data: bytes) -> str:
        return hmac.new(self._material, data, hashlib.sha256).hexdigest()


def load_key(ref: KeyRef, environ: Mapping[str, str] | None = None) -> Key:
    """The key ``ref`` points at; AuditKeyError names the reference, never the value."""
    env = os.environ if environ is None else environ
    where = ref.describe()
    if ref.env is not None:
        text = env.get(ref.env, "")
    else:
        assert ref.file is not None
        try:
            text = ref.file.read_text(encoding="utf-8")
        except OSError as exc:
            raise AuditKeyError(where, f"cannot read it: {exc.strerror or exc}") from exc
        except UnicodeDecodeError:
            raise AuditKeyError(where, "it is not UTF-8 text") from None
    value = text.strip()
    if len(value) < MIN_KEY_CHARS or "\n" in value:
        raise AuditKeyError(
            where, f"the audit key must be one line of at least {MIN_KEY_CHARS} characters"
        )
    return Key(value.encode())


def _plain(value: Any) -> Any:
    """JSON values with floats as strings (one text for one value, in every language)."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def canonical(value: Any) -> str:
    return dumps(_plain(value))


def dumps(value: Any) -> str:
    """The canonical text of a value already plain (no floats, only JSON types)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@dataclass(frozen=True)
class Record:
    """One audit record as stored; ``payload`` is its canonical JSON text."""

    seq: int
    time: str
    actor: str
    trigger: str
    run_id: int | None
    node: str | None
    action: str
    payload: str
    alg: str
    prev: str
    digest: str

    def material(self, seq: int | None = None, prev: str | None = None) -> bytes:
        """What the digest covers (with ``seq``/``prev`` as given, to find moved ones)."""
        fields = [
            self.seq if seq is None else seq,
            self.time,
            self.actor,
            self.trigger,
            self.run_id,
            self.node,
            self.action,
            self.payload,
            self.alg,
            self.prev if prev is None else prev,
        ]
        return canonical(fields).encode()

    def to_dict(self) -> dict[str, Any]:
        """The record for a SIEM (one JSON line each): the columns, the payload decoded."""
        return {
            "seq": self.seq,
            "time": self.time,
            "actor": self.actor,
            "trigger": self.trigger,
            "runId": self.run_id,
            "node": self.node,
            "action": self.action,
            "payload": json.loads(self.payload),
            "alg": self.alg,
            "prev": self.prev,
            "digest": self.digest,
        }


def alg_for(key: Key | None) -> str:
    return PLAIN if key is None else f"{KEYED}:{key.kid}"


def digest(material: bytes, alg: str, key: Key | None) -> str:
    if alg == PLAIN:
        return hashlib.sha256(material).hexdigest()
    if key is None:
        raise AuditKeyError("the audit trail", "a keyed record needs the audit key")
    return key.mac(material)


@dataclass(frozen=True)
class Problem:
    seq: int
    time: str
    kind: str  # modified, removed, reordered, truncated, key
    message: str

    def __str__(self) -> str:
        when = f" ({self.time})" if self.time else ""
        return f"record {self.seq}{when}: {self.kind}: {self.message}"


@dataclass(frozen=True)
class Verified:
    count: int
    head: str  # the last record's digest (GENESIS for an empty trail): anchor it elsewhere
    problem: Problem | None = None
    unkeyed: int = 0  # plain records before the first keyed one (written before the key)

    @property
    def ok(self) -> bool:
        return self.problem is None


def needs_key(records: Iterable[Record]) -> bool:
    return any(r.alg.startswith(KEYED) for r in records)


def verify(
    records: Iterable[Record], key: Key | None = None, expect_head: str | None = None
) -> Verified:
    """Check the chain of ``records`` (in seq order) and name the first bad record.

    Raises AuditKeyError when keyed records are met and no ``key`` is given. A plain
    record after a keyed one is a downgrade (someone recomputed a chain without the key)."""
    rows = list(records)
    prev = GENESIS
    expected = 1
    keyed = False
    unkeyed = 0
    seen: set[str] = {GENESIS}
    for index, record in enumerate(rows):
        problem = _check(rows, index, record, expected, prev, key, keyed)
        if problem is not None:
            return Verified(index, prev, problem, unkeyed)
        if record.alg.startswith(KEYED):
            keyed = True
        else:
            unkeyed += 1
        prev = record.digest
        seen.add(prev)
        expected = record.seq + 1
    if expect_head is not None and expect_head.lower() not in seen:
        last = rows[-1] if rows else None
        return Verified(
            len(rows),
            prev,
            Problem(
                last.seq if last else 0,
                last.time if last else "",
                "truncated",
                f"the anchored head {expect_head} is not in the trail: records were removed "
                "from its end, or the trail was rewritten",
            ),
            unkeyed,
        )
    return Verified(len(rows), prev, None, unkeyed if keyed else 0)


def _check(
    rows: list[Record],
    index: int,
    record: Record,
    expected: int,
    prev: str,
    key: Key | None,
    keyed: bool,
) -> Problem | None:
    def problem(kind: str, message: str) -> Problem:
        return Problem(record.seq, record.time, kind, message)

    if record.seq != expected:
        missing = (
            f"record {expected} is missing"
            if record.seq == expected + 1
            else f"records {expected} to {record.seq - 1} are missing"
        )
        return problem("removed", f"{missing} (the chain jumps to this one)")
    if record.alg.startswith(KEYED):
        if key is None:
            raise AuditKeyError(
                "the audit trail",
                f"record {record.seq} is keyed (HMAC); set ${KEY_ENV} or ${KEY_FILE_ENV} to "
                "the audit key to verify it",
            )
        if record.alg != alg_for(key):
            return problem(
                "key",
                f"written with another HMAC key (key id {record.alg.partition(':')[2]}); "
                f"the key given has id {key.kid}",
            )
    elif keyed:
        return problem("modified", "a plain SHA-256 record after keyed ones (downgraded)")
    try:
        own = digest(record.material(), record.alg, key) == record.digest
    except AuditKeyError:
        own = False
    if not own:
        moved = _written_as(rows, index, record, key)
        if moved is not None:
            return problem(
                "reordered", f"it was written as record {moved}: records were moved or removed"
            )
        return problem("modified", "its content does not match its digest")
    if record.prev != prev:
        return problem(
            "removed",
            "its link to the record before does not match: a record before it was removed "
            "or replaced",
        )
    return None


def _written_as(rows: list[Record], index: int, record: Record, key: Key | None) -> int | None:
    """The seq ``record`` hashes with, when it is not its own (it was moved)."""
    low = max(1, record.seq - _REORDER_WINDOW)
    for seq in range(low, record.seq + _REORDER_WINDOW + 1):
        if seq != record.seq and digest(record.material(seq=seq), record.alg, key) == record.digest:
            return seq
    return None
