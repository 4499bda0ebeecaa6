"""The hash chain under the audit trail: canonical records, their digests, and the check.

Each record's digest covers every column of it (seq, time, actor, trigger, run, node,
action, payload, algorithm) and the digest of the record before it (``prev``; 64 zeros
for the first), so changing, removing or reordering any record breaks the chain at that
record. Without a key the digest is SHA-256: it catches edits by hand and bit rot, not an
attacker who recomputes the chain. With a key (``$FAZAI_AUDIT_KEY``, or a file named by
``$FAZAI_AUDIT_KEY_FILE``, kept away from the state file) it is HMAC-SHA256, which nobody
without the key can recompute. Removing records from the end leaves a valid shorter
chain: only an anchor kept elsewhere (the head digest ``verify`` prints) shows that.

With a key set, a trail must end in a keyed record (a plain head means its keyed
records were removed, or the chain was recomputed without the key), and the first append
with a key (or a new key) writes a ``trail.keyed`` record naming the key id. Keys
rotate: ``$FAZAI_AUDIT_KEY_FILE`` may hold several keys, one a line, newest first; the
first signs new records, every one verifies, and the records' key ids must follow that
order (an older key after a newer one is a forgery with a leaked old key).

The payload is stored as the exact canonical text that was hashed (sorted keys, no
spaces, ASCII; a float a JSON number, a non-finite one ``{"#float": "nan"}``; a key that
is not a string ``"#int:1"``, and a string key starting with ``#`` gets one ``#`` more,
so no two values share a text), and a verifier in any language hashes the stored bytes
and never re-encodes anything (the export's ``payloadText``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
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
_COLUMN_NAMES: tuple[str, ...] = ("seq", "time", "actor", "trigger", "run_id", "node")
_COLUMN_NAMES += ("action", "payload", "alg", "prev", "digest")
_KEYED_ALG = re.compile(r"hmac-sha256:([0-9a-f]{16})")


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


class Keyring:
    """The audit keys given, newest first: the first signs new records, all verify."""

    __slots__ = ("keys",)

    def __init__(self, keys: Sequence[Key]) -> None:
        assert keys, "a keyring holds at least one key"
        self.keys = tuple(keys)

    def __repr__(self) -> str:
        return f"Keyring({', '.join(k.kid for k in self.keys)})"

    @property
    def signer(self) -> Key:
        return self.keys[0]

    def get(self, kid: str) -> Key | None:
        return next((k for k in self.keys if k.kid == kid), None)

    def rank(self, kid: str) -> int:
        """0 for the newest key, 1 for the one before it...; -1: not in the ring."""
        return next((i for i, k in enumerate(self.keys) if k.kid == kid), -1)

    def kids(self) -> str:
        return ", ".join(k.kid for k in self.keys)


def load_keys(ref: KeyRef, environ: Mapping[str, str] | None = None) -> Keyring:
    """The keys ``ref`` points at (a variable holds one; a file one a line, newest first,
    blank lines and ``#`` comments skipped); AuditKeyError names the reference, never a
    value."""
    env = os.environ if environ is None else environ
    where = ref.describe()
    if ref.env is not None:
        lines = [env.get(ref.env, "").strip()]
    else:
        assert ref.file is not None
        try:
            text = ref.file.read_text(encoding="utf-8")
        except OSError as exc:
            raise AuditKeyError(where, f"cannot read it: {exc.strerror or exc}") from exc
        except UnicodeDecodeError:
            raise AuditKeyError(where, "it is not UTF-8 text") from None
        lines = [ln.strip() for ln in text.splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith("#")] or [""]
    for number, value in enumerate(lines, 1):
        if len(value) < MIN_KEY_CHARS or "\n" in value:
            line = f" (key {number})" if len(lines) > 1 else ""
            raise AuditKeyError(
                where,
                f"the audit key{line} must be one line of at least {MIN_KEY_CHARS} characters",
            )
    return Keyring([Key(value.encode()) for value in lines])


def load_key(ref: KeyRef, environ: Mapping[str, str] | None = None) -> Key:
    """The key that signs new records (the first ``ref`` names)."""
    return load_keys(ref, environ).signer


def plain_key(key: Any) -> str:
    """A mapping key as the canonical text writes it: a string as it is (one starting
    with ``#`` escaped by one more), any other key tagged with its type, so ``1`` and
    ``"1"`` never share a text."""
    if isinstance(key, str):
        return "#" + key if key.startswith("#") else key
    return f"#{type(key).__name__}:{key}"


def plain_float(value: float) -> Any:
    """A float as a JSON number; NaN and the infinities, which JSON has not, tagged (a
    string key ``#float`` would have been escaped: no mapping of the data looks so)."""
    return value if math.isfinite(value) else {"#float": repr(value)}


def _plain(value: Any) -> Any:
    """JSON values, tagged where JSON would make two values one (see ``plain_key``)."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return plain_float(value)
    if isinstance(value, Mapping):
        return {plain_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def canonical(value: Any) -> str:
    return dumps(_plain(value))


def dumps(value: Any) -> str:
    """The canonical text of a value already plain (only JSON types, finite floats)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


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
    defect: str = ""  # why the stored row is not a record FazAI writes (edited by hand)

    def row(self) -> tuple[Any, ...]:
        """The columns, in the table's order."""
        return (
            self.seq,
            self.time,
            self.actor,
            self.trigger,
            self.run_id,
            self.node,
            self.action,
            self.payload,
            self.alg,
            self.prev,
            self.digest,
        )

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
        """The record for a SIEM (one JSON line each): the columns, the payload decoded
        (``None``, with ``defect`` saying why, when it is not a JSON object) and the exact
        text that was hashed (``payloadText``)."""
        payload: Any = None
        if not self.defect:
            payload = json.loads(self.payload)
        out = {
            "seq": self.seq,
            "time": self.time,
            "actor": self.actor,
            "trigger": self.trigger,
            "runId": self.run_id,
            "node": self.node,
            "action": self.action,
            "payload": payload,
            "payloadText": self.payload,
            "alg": self.alg,
            "prev": self.prev,
            "digest": self.digest,
        }
        if self.defect:
            out["defect"] = self.defect
        return out


def _shown(value: object) -> str:
    if isinstance(value, bytes):
        return f"<blob {value[:32].hex()}{'...' if len(value) > 32 else ''}>"
    return "" if value is None else str(value)


def from_row(row: Sequence[object]) -> Record:
    """A stored row as a Record, whatever its columns hold: a column of the wrong type
    (a BLOB, a NULL, a number where text belongs, a payload that is not a JSON object)
    is kept as text to show and named in ``defect``, for ``verify`` to report."""
    defects: list[str] = []
    values = dict(zip(_COLUMN_NAMES, row, strict=True))

    def text(name: str, optional: bool = False) -> Any:
        value = values[name]
        if isinstance(value, str) or (optional and value is None):
            return value
        defects.append(f"its {name} is {_type(value)}, not text")
        return _shown(value)

    seq = values["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool):
        defects.append(f"its seq is {_type(seq)}, not a number")
        seq = 0
    run_id = values["run_id"]
    if run_id is not None and (not isinstance(run_id, int) or isinstance(run_id, bool)):
        defects.append(f"its run_id is {_type(run_id)}, not a number")
        run_id = None
    record = Record(
        seq,
        text("time"),
        text("actor"),
        text("trigger"),
        run_id,
        text("node", optional=True),
        text("action"),
        text("payload"),
        text("alg"),
        text("prev"),
        text("digest"),
    )
    if not defects:
        try:
            decoded = json.loads(record.payload)
        except ValueError:
            decoded = None
        if not isinstance(decoded, dict):
            defects.append("its payload is not a JSON object")
    return Record(**{**vars(record), "defect": "; ".join(defects)}) if defects else record


def _type(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return "a BLOB"
    return f"a {type(value).__name__} ({_shown(value)[:40]!r})"


def alg_for(key: Key | None) -> str:
    return PLAIN if key is None else f"{KEYED}:{key.kid}"


def kid_of(alg: str) -> str | None:
    """The key id of a keyed ``alg`` (``hmac-sha256:<kid>``), else None."""
    matched = _KEYED_ALG.fullmatch(alg)
    return matched.group(1) if matched else None


def known_alg(alg: str) -> bool:
    """Only ``sha256`` and ``hmac-sha256:<16 hex digits>`` are written."""
    return alg == PLAIN or kid_of(alg) is not None


def digest(material: bytes, alg: str, key: Key | None) -> str:
    if alg == PLAIN:
        return hashlib.sha256(material).hexdigest()
    if kid_of(alg) is None:
        raise ValueError(f"unknown algorithm {alg!r}")
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
    unkeyed: int = 0  # plain SHA-256 records (written while no key was set)

    @property
    def ok(self) -> bool:
        return self.problem is None


def needs_key(records: Iterable[Record]) -> bool:
    return any(kid_of(r.alg) is not None for r in records)


def verify(
    records: Iterable[Record],
    keys: Keyring | Key | None = None,
    expect_head: str | None = None,
) -> Verified:
    """Check the chain of ``records`` (in seq order) and name the first bad record.

    ``keys``: the audit keys configured (None: none is). Raises AuditKeyError (it cannot
    be checked) when keyed records are met and no key is given, or a record's key id is
    none of the keys'. A plain record after a keyed one is a downgrade (someone
    recomputed a chain without the key), and so is a plain head when a key is set."""
    ring = Keyring([keys]) if isinstance(keys, Key) else keys
    rows = list(records)
    prev = GENESIS
    expected = 1
    state = _State()
    unkeyed = 0
    seen: set[str] = {GENESIS}
    for index, record in enumerate(rows):
        problem = _check(rows, index, record, expected, prev, ring, state)
        if problem is not None:
            return Verified(index, prev, problem, unkeyed)
        if record.alg == PLAIN:
            unkeyed += 1
        prev = record.digest
        seen.add(prev)
        expected = record.seq + 1
    if ring is not None and rows and rows[-1].alg == PLAIN:
        return Verified(
            len(rows),
            prev,
            Problem(
                rows[-1].seq,
                rows[-1].time,
                "removed",
                "an audit key is set but the trail ends in a plain SHA-256 record: its "
                "keyed records were removed, or it was recomputed without the key (unless "
                "the key was set only after this record: the next run writes a keyed one)",
            ),
            unkeyed,
        )
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
    return Verified(len(rows), prev, None, unkeyed)


@dataclass
class _State:
    """What the check carries from record to record: the last key id and its rank."""

    kid: str | None = None
    rank: int = 0


def _check(
    rows: list[Record],
    index: int,
    record: Record,
    expected: int,
    prev: str,
    ring: Keyring | None,
    state: _State,
) -> Problem | None:
    def problem(kind: str, message: str) -> Problem:
        return Problem(record.seq, record.time, kind, message)

    if record.defect:
        return problem("modified", f"{record.defect} (edited by hand)")
    if record.seq < expected:
        return problem(
            "reordered", f"duplicated or out of order (record {expected} was expected here)"
        )
    if record.seq != expected:
        missing = (
            f"record {expected} is missing"
            if record.seq == expected + 1
            else f"records {expected} to {record.seq - 1} are missing"
        )
        return problem("removed", f"{missing} (the chain jumps to this one)")
    if not known_alg(record.alg):
        return problem("modified", f"unknown algorithm {record.alg!r}")
    kid = kid_of(record.alg)
    key: Key | None = None
    if kid is not None:
        if ring is None:
            raise AuditKeyError(
                "the audit trail",
                f"record {record.seq} is keyed (HMAC); set ${KEY_ENV} or ${KEY_FILE_ENV} to "
                "the audit key to verify it",
            )
        key = ring.get(kid)
        if key is None:
            raise AuditKeyError(
                "the audit trail",
                f"cannot check: no key for kid {kid} (record {record.seq}); the keys given "
                f"have ids {ring.kids()}",
            )
        rank = ring.rank(kid)
        if state.kid is not None and rank > state.rank:
            return problem(
                "key",
                f"written with key id {kid}, older than key id {state.kid} of a record "
                "before it (keys rotate newest first: the first line of the key file signs)",
            )
        state.kid, state.rank = kid, rank
    elif state.kid is not None:
        return problem("modified", "a plain SHA-256 record after keyed ones (downgraded)")
    own = digest(record.material(), record.alg, key) == record.digest
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
