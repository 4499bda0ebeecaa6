"""The escrow: the secrets a rollback needs, kept in the journal only encrypted.

A Linux snapshot holds the content of ``sensitive`` files and the password hashes of the
accounts it touches. The redaction masks them, so a rollback from the journal (after a
crash, or ``fazai rollback RUN``) could not put them back. A snapshot may therefore name
the secret fields its rollback needs (``Journal.record_snapshot(..., escrow=...)``); each
value under such a field is sealed here and stored in its place as a :class:`Sealed`
(``{"escrow": "fazai.escrow/1", "kid": ..., "sealed": ...}``), everything else secret-named
is masked as before.

Cipher: AES-256-GCM, a random 96-bit nonce per value, and as associated data the record
and the place in it the value was sealed for (transaction, kind, name, key, JSON pointer):
a ciphertext copied to another field, record or transaction does not open.

The key lives outside the SQLite file, looked up in this order (see :func:`key_ref`):

1. ``$FAZAI_ESCROW_KEY``: the key itself (32 random bytes in base64, e.g. from a secret
   manager or a systemd credential);
2. ``$FAZAI_ESCROW_KEY_FILE``: a file holding it, which must exist (a key made afresh at a
   wrong path would seal secrets nobody can open later);
3. else the file next to the state file (``state.db`` -> ``state.escrow.key``, see
   ``paths.default_escrow_key_path``), made on first use: mode 0600, written to a private
   temporary file, fsync'd, then hard-linked into place, so a reader never sees half a key
   and two controllers starting at once agree on one. It must stay private: a key file
   others can read or write is refused.

Opening never raises for a key that is missing, wrong or unreadable: each value that
cannot be opened is masked again and reported (:class:`EscrowFailure`), so a rollback
still restores everything else and says which secret it could not. No message here
carries a key or a secret.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import stat
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.errors import EscrowError, StoreError
from controller.secrets import Secret
from controller.store import paths
from controller.store.redact import MASK, is_secret_key
from controller.store.sealed import FORMAT, Sealed, parse

KEY_BYTES = 32
_NONCE = 12
_TAG = 16
_KEY_TEXT = re.compile(r"[A-Za-z0-9_-]{43}=?")
_HOW_TO_MAKE = "32 random bytes in base64, e.g. the output of `openssl rand -base64 32`"


@dataclass(frozen=True)
class KeyRef:
    """Where the escrow key is: ``env`` names a variable holding it, ``file`` a file;
    ``managed``: the default file next to the store, made on first use."""

    env: str | None = None
    file: Path | None = None
    managed: bool = False

    def describe(self) -> str:
        if self.env is not None:
            return f"environment variable {self.env}"
        return f"key file {self.file}"


def key_ref(state: Path, environ: Mapping[str, str] | None = None) -> KeyRef:
    """The escrow key of the state file ``state``, from the environment (``$FAZAI_ESCROW_KEY``,
    then ``$FAZAI_ESCROW_KEY_FILE``) or else the default file next to it."""
    env = os.environ if environ is None else environ
    if env.get(paths.ESCROW_KEY_ENV):
        return KeyRef(env=paths.ESCROW_KEY_ENV)
    named = env.get(paths.ESCROW_KEY_FILE_ENV)
    if named:
        return KeyRef(file=Path(named).expanduser())
    return KeyRef(file=paths.default_escrow_key_path(state), managed=True)


def new_key_text() -> str:
    """A fresh key as the key file and ``$FAZAI_ESCROW_KEY`` hold it."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()


@dataclass(frozen=True)
class EscrowFailure:
    """A sealed secret that could not be opened; names it, never shows it."""

    where: str  # the object, e.g. "File/api-token (/etc/app/token)"
    field: str  # the secret field, e.g. "secretContent"
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.field} could not be restored from the escrow: {self.reason}"


@dataclass(frozen=True)
class Revealed:
    """A journal value with its sealed secrets opened (``before``: plain again, so never
    printed by repr), and the secrets that could not be, masked in ``before``."""

    before: Mapping[str, Any] | None = field(repr=False)
    failures: tuple[EscrowFailure, ...] = ()


class _Key:
    """An opened key; ``kid`` tells keys apart without showing them."""

    __slots__ = ("_aead", "kid")

    def __init__(self, material: bytes) -> None:
        # Imported with the first key: cryptography costs every command that opens the
        # store 10-16 ms, and most applies seal no secret.
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.kid = hashlib.sha256(b"fazai.escrow.kid\0" + material).hexdigest()[:16]
        self._aead = AESGCM(material)

    def __repr__(self) -> str:
        return f"<escrow key {self.kid}>"

    def seal(self, plaintext: bytes, aad: bytes) -> Sealed:
        nonce = secrets.token_bytes(_NONCE)
        data = nonce + self._aead.encrypt(nonce, plaintext, aad)
        return Sealed(self.kid, base64.urlsafe_b64encode(data).decode())

    def open(self, sealed: Sealed, aad: bytes) -> bytes | None:
        """The plaintext, or None when the value does not authenticate."""
        try:
            data = base64.urlsafe_b64decode(sealed.data)
        except ValueError:
            return None
        if len(data) < _NONCE + _TAG:
            return None
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(data[:_NONCE], data[_NONCE:], aad)
        except InvalidTag:
            return None


class Escrow:
    """Seals and opens secrets with the key ``ref`` points at, for the store at ``store``
    (named in errors). The key is read at every use, never kept: a key file put right
    while a controller runs is used at its next rollback."""

    def __init__(self, ref: KeyRef, store: Path) -> None:
        self.ref = ref
        self.store = store

    def seal(self, value: Any, fields: Collection[str], context: Sequence[str]) -> Any:
        """A copy of ``value`` whose values under secret-named keys listed in ``fields``
        are :class:`Sealed` for ``context`` (the journal record); the key is only loaded
        (and the default key file only made) when there is something to seal.

        Raises EscrowError when the key cannot be had: the caller must not go on without
        a rollback it promised."""
        wanted = frozenset(f for f in fields if is_secret_key(f))
        if not wanted:
            return value
        key: _Key | None = None

        def lock(secret: Any, pointer: str) -> Sealed:
            nonlocal key
            if key is None:
                key = self.key(create=True)
            try:
                plaintext = json.dumps(secret, sort_keys=True, separators=(",", ":"))
            except (TypeError, ValueError):
                # not chained, and without the value: it is the secret
                raise StoreError(str(self.store), f"the secret at {pointer} is not JSON") from None
            return key.seal(plaintext.encode(), _aad(context, pointer))

        return _seal_walk(value, wanted, lock, "")

    def reveal(
        self, value: Mapping[str, Any] | None, context: Sequence[str], where: str
    ) -> Revealed:
        """``value`` (sealed for ``context``) with every sealed secret opened; what cannot
        be (no key, another key, a damaged or moved value) is masked and reported under
        ``where``, or the snapshot object it sits in. Never raises for the key."""
        failures: list[EscrowFailure] = []
        loaded: _Key | EscrowError | None = None

        def unlock(sealed: Sealed, pointer: str, where: str, name: str) -> Any:
            nonlocal loaded
            if loaded is None:
                try:
                    loaded = self.key(create=False)
                except EscrowError as exc:
                    loaded = exc
            if isinstance(loaded, EscrowError):
                reason = loaded.message
            elif sealed.kid != loaded.kid:
                reason = (
                    f"it was sealed with another key (id {sealed.kid}); the "
                    f"{self.ref.describe()} holds key {loaded.kid}"
                )
            else:
                plaintext = loaded.open(sealed, _aad(context, pointer))
                if plaintext is not None:
                    try:
                        return json.loads(plaintext)
                    except ValueError:
                        pass  # not chained nor shown: it would be the secret
                reason = "it does not open with this key: damaged, or moved from another record"
            failures.append(EscrowFailure(where, name, reason))
            return MASK

        if value is None:
            return Revealed(None)
        opened = _open_walk(value, unlock, "", where)
        return Revealed(opened, tuple(failures))

    def key(self, *, create: bool) -> _Key:
        """The key; with ``create`` the managed default file is made when missing."""
        ref = self.ref
        if ref.env is not None:
            text = os.environ.get(ref.env, "")
            if not text.strip():
                raise self._error(f"no escrow key: {ref.describe()} is not set")
            return _Key(self._decode(text))
        assert ref.file is not None
        if create and ref.managed:
            self._create(ref.file)
        return _Key(self._decode(self._read(ref.file)))

    # -- the key file ------------------------------------------------------------------

    def _read(self, path: Path) -> str:
        # The managed file is not followed through a link (its directory may be shared)
        # and must be private; a named file may be a link (Kubernetes secret volumes are).
        flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_NOFOLLOW if self.ref.managed else 0)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            hint = (
                "; it is made by the first apply that escrows a secret, and the secrets "
                "sealed with it cannot be opened without it"
                if self.ref.managed
                else ""
            )
            raise self._error(
                f"no escrow key: {self.ref.describe()} does not exist{hint}"
            ) from None
        except OSError as exc:
            raise self._error(
                f"escrow {self.ref.describe()}: cannot read it: {exc.strerror or exc}"
            ) from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise self._error(f"escrow {self.ref.describe()} is not a regular file")
            if self.ref.managed and info.st_mode & 0o077:
                raise self._error(
                    f"escrow {self.ref.describe()} is open to others (mode "
                    f"{stat.S_IMODE(info.st_mode):04o}); make it private: chmod 600 {path}"
                )
            data = os.read(fd, 4096)
        except OSError as exc:
            raise self._error(
                f"escrow {self.ref.describe()}: cannot read it: {exc.strerror or exc}"
            ) from exc
        finally:
            os.close(fd)
        try:
            return data.decode("ascii")
        except UnicodeDecodeError:
            raise self._error(
                f"escrow {self.ref.describe()} is not a key ({_HOW_TO_MAKE})"
            ) from None

    def _create(self, path: Path) -> None:
        if os.path.lexists(path):
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
            fd = os.open(
                temporary,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
            )
            try:
                try:
                    os.write(fd, (new_key_text() + "\n").encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
                # link, not rename: a key another controller just made is never replaced
                with contextlib.suppress(FileExistsError):
                    os.link(temporary, path)
            finally:
                os.unlink(temporary)
            directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            raise self._error(
                f"escrow {self.ref.describe()}: cannot create it: {exc.strerror or exc}"
            ) from exc

    def _decode(self, text: str) -> bytes:
        # The standard alphabet (openssl's) is accepted as well as the URL-safe one.
        raw = text.strip().replace("+", "-").replace("/", "_")
        if not _KEY_TEXT.fullmatch(raw):
            raise self._error(f"escrow {self.ref.describe()} is not a key ({_HOW_TO_MAKE})")
        return base64.urlsafe_b64decode(raw.rstrip("=") + "=")

    def _error(self, message: str) -> EscrowError:
        return EscrowError(str(self.store), message)


def _aad(context: Sequence[str], pointer: str) -> bytes:
    return json.dumps([FORMAT, *context, pointer], separators=(",", ":")).encode()


def _pointer(base: str, part: str | int) -> str:
    """RFC 6901: where a value sits in the record."""
    return f"{base}/{str(part).replace('~', '~0').replace('/', '~1')}"


def _seal_walk(
    value: Any, wanted: frozenset[str], lock: Callable[[Any, str], Sealed], pointer: str
) -> Any:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for name, item in value.items():
            here = _pointer(pointer, name)
            plain = item is not None and item != MASK and not isinstance(item, Secret | Sealed)
            if name in wanted and plain:
                out[name] = lock(item, here)
            else:
                out[name] = _seal_walk(item, wanted, lock, here)
        return out
    if isinstance(value, list | tuple):
        return [
            _seal_walk(item, wanted, lock, _pointer(pointer, i)) for i, item in enumerate(value)
        ]
    return value


def _open_walk(
    value: Any, unlock: Callable[[Sealed, str, str, str], Any], pointer: str, where: str
) -> Any:
    if isinstance(value, Mapping):
        if isinstance(value.get("kind"), str) and isinstance(value.get("name"), str):
            where = label(value["kind"], value["name"], value.get("key"))
        out: dict[str, Any] = {}
        for name, item in value.items():
            here = _pointer(pointer, name)
            sealed = parse(item)
            if sealed is not None:
                out[name] = unlock(sealed, here, where, name)
            else:
                out[name] = _open_walk(item, unlock, here, where)
        return out
    if isinstance(value, list):
        return [
            _open_walk(item, unlock, _pointer(pointer, i), where) for i, item in enumerate(value)
        ]
    return value


def label(kind: str, name: str, key: Any = None) -> str:
    """How failures name an object: ``kind/name (key)``, the key left out when it says
    nothing more."""
    shown = f" ({key})" if isinstance(key, str) and key and key != name else ""
    return f"{kind}/{name}{shown}"
