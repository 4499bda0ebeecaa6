"""Push webhooks: verify a delivery came from the forge, then say which branch moved.

    event = parse_push("github", request.headers, await request.body(), secret, guard=guard)
    for url in event.location_urls: ...   # the source configured by any of them matches

Verification runs on the raw body before anything is parsed:

* GitHub: ``X-Hub-Signature-256: sha256=HEX``, HMAC-SHA256 of the body with the secret;
  event ``X-GitHub-Event: push``, delivery id ``X-GitHub-Delivery``;
* GitLab: ``X-Gitlab-Token`` is the secret itself (GitLab signs nothing), compared in
  constant time; event ``X-Gitlab-Event: Push Hook``, delivery id ``X-Gitlab-Event-UUID``
  (``Idempotency-Key`` where that is missing);
* Gitea/Forgejo: ``X-Gitea-Signature`` / ``X-Forgejo-Signature``, HMAC-SHA256 hex of the
  body (Gitea also sends GitHub's header, taken too); event ``X-Gitea-Event`` /
  ``X-Forgejo-Event: push``, delivery id ``X-Gitea-Delivery`` / ``X-Forgejo-Delivery``.

What is refused (:class:`WebhookRefused`, its ``status_code`` is the answer to give): a
missing signature or token when a secret is configured (401), a forged one (403), a body
over 25 MiB (413), a payload that is not a push payload (400), and, with a
:class:`ReplayGuard`, a delivery id or a push already received (409: a captured
delivery replayed under a new id is the same content), or a GitHub push older than the
guard's ``ttl`` (409, from the payload's ``repository.pushed_at``). The content is the
signed body's digest, but for GitLab, which signs nothing (a re-encoded body carries
the same token), it is the push's parsed fields: project, ref, before and after. GitLab
and Gitea payloads carry no push time, so their content is remembered only for
``untimed_ttl`` (1 h): a genuine push of the same change again later (deploy, rollback
by force-push, deploy again) must be taken, and a replay costs little, the reconcile
fetching the branch's tip itself. The guard lives in memory: a restart forgets it.

What is authentic but not acted on (:class:`PushIgnored`, 202, so the forge does not show
a failed delivery): other events (ping, tag push hooks, pull requests), pushes of tags
(``refs/tags/...``) and branch deletions (``after`` all zeros, or ``deleted: true``).

With ``secret=None`` no authentication is configured and every well-formed delivery is
taken: only for a listener on loopback.

A push's ``revision`` is a hint: the reconcile loop fetches the branch and reconciles its
tip, so a replayed or reordered delivery never rolls a node back to an older commit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from controller.errors import PushIgnored, WebhookRefused
from controller.secrets import Secret

__all__ = [
    "PushEvent",
    "PushIgnored",
    "ReplayGuard",
    "WebhookRefused",
    "check_headers",
    "parse_push",
    "repository_key",
]

MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
ZERO_SHA = re.compile(r"^0+$")
_URL_KEYS = {
    "github": (("repository", ("clone_url", "ssh_url", "html_url", "git_url", "url", "svn_url")),),
    "gitlab": (
        ("project", ("git_http_url", "git_ssh_url", "web_url", "http_url", "ssh_url", "url")),
        ("repository", ("git_http_url", "git_ssh_url", "url", "homepage")),
    ),
    "gitea": (("repository", ("clone_url", "ssh_url", "html_url")),),
}


@dataclass(frozen=True)
class PushEvent:
    """A branch moved. ``location_urls`` are every URL the payload gives for the
    repository (HTTPS clone, SSH, web), so a source configured by any of them matches."""

    location_urls: tuple[str, ...]
    branch: str
    revision: str | None
    delivery_id: str
    forge: str = ""  # github, gitlab, gitea


class ReplayGuard:
    """Remembers what it was shown for ``ttl`` from first sight (at most ``capacity``
    entries, the oldest forgotten first). ``seen(key)`` is True for a key it holds, and
    records it otherwise; :meth:`first_sight` does that for several keys at once.
    Thread-safe.

    :func:`parse_push` records both the delivery id and a digest of the signed body: a
    captured delivery sent again under a new id is still the same signed content. A
    payload that carries no push time (GitLab, Gitea) cannot be judged stale by its own
    date, so its content is kept for ``untimed_ttl`` (default 1 h) instead: refusing a
    genuine re-push of the same change costs more than a replay, which changes nothing
    the reconcile would not do anyway."""

    def __init__(
        self,
        capacity: int = 10_000,
        ttl: float | timedelta = timedelta(hours=24),
        clock: Callable[[], float] = time.monotonic,
        untimed_ttl: float | timedelta = timedelta(hours=1),
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.ttl = _seconds(ttl)
        self.untimed_ttl = _seconds(untimed_ttl)
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()  # key -> when it is forgotten
        self._lock = threading.Lock()

    def seen(self, key: str) -> bool:
        return self.first_sight({key: self.ttl}) is not None

    def first_sight(self, keys: Mapping[str, float]) -> str | None:
        """The first of ``keys`` already held, or None after recording every one of them
        for its number of seconds."""
        now = self._clock()
        with self._lock:
            while self._seen:
                oldest, until = next(iter(self._seen.items()))
                if until > now:
                    break
                del self._seen[oldest]
            held = next((k for k in keys if self._seen.get(k, now) > now), None)
            if held is not None:
                return held
            for key, seconds in keys.items():
                self._seen[key] = now + seconds
                self._seen.move_to_end(key)
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
            return None

    def __len__(self) -> int:
        return len(self._seen)


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


_SIGNATURE_HEADERS = {
    "github": ("x-hub-signature-256",),
    "gitlab": ("x-gitlab-token",),
    "gitea": ("x-forgejo-signature", "x-gitea-signature", "x-hub-signature-256"),
}


def check_headers(forge: str, headers: Mapping[str, str], secret: Secret | None) -> None:
    """What the headers alone say, so a receiver can answer before reading a body of up
    to 25 MiB: WebhookRefused (401) when a secret is configured and the delivery carries
    no signature or token header at all, PushIgnored when its event is not a push.
    Nothing is verified here; :func:`parse_push` still checks everything."""
    name = _forge(forge)
    lowered = {k.lower(): v for k, v in headers.items()}
    if secret is not None and not any(h in lowered for h in _SIGNATURE_HEADERS[name]):
        names = ", ".join(_SIGNATURE_HEADERS[name])
        raise WebhookRefused(401, f"no signature ({names}); a secret is configured", forge=name)
    event = _event(name, lowered)
    if event != "push":
        raise PushIgnored(f"{event or 'an unnamed'} event, not a push", forge=name)


def _forge(forge: str) -> str:
    name = "gitea" if forge.lower() == "forgejo" else forge.lower()
    if name not in _URL_KEYS:
        raise WebhookRefused(404, f"no webhook for forge {forge!r}")
    return name


def parse_push(
    forge: str,
    headers: Mapping[str, str],
    body: bytes,
    secret: Secret | None,
    *,
    guard: ReplayGuard | None = None,
    now: Callable[[], float] = time.time,
) -> PushEvent:
    """The push a delivery announces, once it is verified; raises WebhookRefused (or its
    PushIgnored) otherwise. Give the ``guard`` here, and do not also call its ``seen``
    yourself: it records the delivery as it checks it."""
    name = _forge(forge)
    lowered = {k.lower(): v for k, v in headers.items()}
    if len(body) > MAX_BODY:
        raise WebhookRefused(413, f"payload over {MAX_BODY} bytes", forge=name)
    if secret is not None:
        _verify(name, lowered, body, secret)
    event = _event(name, lowered)
    delivery = _delivery(name, lowered) or "sha256:" + hashlib.sha256(body).hexdigest()
    if event != "push":
        raise PushIgnored(f"{event or 'an unnamed'} event, not a push", forge=name)
    payload = _payload(name, lowered, body)
    if guard is not None:
        timed = _fresh(name, payload, guard, now())
        content = _content_key(name, payload, body)
        held = guard.first_sight(
            {f"{name}:{delivery}": guard.ttl, content: guard.ttl if timed else guard.untimed_ttl}
        )
        if held == content:
            what = "push (project, ref, before, after)" if name == "gitlab" else "signed payload"
            raise WebhookRefused(
                409, f"this {what} was already received (under another delivery id)", forge=name
            )
        if held is not None:
            raise WebhookRefused(409, f"delivery {delivery} already received", forge=name)
    ref = payload.get("ref")
    if not isinstance(ref, str) or not ref.startswith("refs/"):
        raise WebhookRefused(400, "the push payload has no ref", forge=name)
    if not ref.startswith("refs/heads/"):
        kind = "tag" if ref.startswith("refs/tags/") else "ref"
        raise PushIgnored(f"push of {kind} {ref}, not of a branch", forge=name)
    branch = ref.removeprefix("refs/heads/")
    after = payload.get("after")
    revision = after if isinstance(after, str) and after else None
    if payload.get("deleted") is True or (revision is not None and ZERO_SHA.match(revision)):
        raise PushIgnored(f"branch {branch} deleted", forge=name)
    urls = _urls(name, payload)
    if not urls:
        raise WebhookRefused(400, "the push payload names no repository URL", forge=name)
    return PushEvent(urls, branch, revision, delivery, name)


def repository_key(url: str) -> tuple[str, str]:
    """(host, path) of a repository URL, to tell whether two URLs name the same
    repository: ``https://git.example/acme/infra.git``, ``git@git.example:acme/infra``
    and ``ssh://git@git.example:22/acme/infra`` all give ``("git.example",
    "acme/infra")``. Credentials, ports, case of the host, ``.git`` and slashes are
    ignored; a local path gives ``("", path)``."""
    text = url.strip()
    scp = re.match(r"^(?:[^@/]+@)?([^:/]+):(?!//)(.+)$", text)
    if scp and "://" not in text:
        host, path = scp.group(1), scp.group(2)
    elif "://" in text:
        parts = urlsplit(text)
        host, path = parts.hostname or "", parts.path
    else:
        return "", text.rstrip("/")
    path = path.strip("/").removesuffix(".git").strip("/")
    return host.lower(), path


def _verify(forge: str, headers: Mapping[str, str], body: bytes, secret: Secret) -> None:
    key = secret.reveal().encode()
    if forge == "gitlab":
        token = headers.get("x-gitlab-token")
        if token is None:
            raise WebhookRefused(
                401, "no X-Gitlab-Token header; a secret token is configured", forge=forge
            )
        if not hmac.compare_digest(token.encode(), key):
            raise WebhookRefused(403, "X-Gitlab-Token does not match", forge=forge)
        return
    digest = hmac.new(key, body, hashlib.sha256).hexdigest()
    if forge == "github":
        candidates = [("x-hub-signature-256", "sha256=" + digest)]
    else:
        candidates = [
            ("x-forgejo-signature", digest),
            ("x-gitea-signature", digest),
            ("x-hub-signature-256", "sha256=" + digest),
        ]
    for header, expected in candidates:
        sent = headers.get(header)
        if sent is None:
            continue
        if not hmac.compare_digest(sent.strip().lower().encode(), expected.encode()):
            raise WebhookRefused(403, f"{header} does not match the body", forge=forge)
        return
    names = ", ".join(_SIGNATURE_HEADERS[forge])
    raise WebhookRefused(401, f"no signature ({names}); a secret is configured", forge=forge)


def _event(forge: str, headers: Mapping[str, str]) -> str:
    if forge == "github":
        return headers.get("x-github-event", "").strip()
    if forge == "gitlab":
        sent = headers.get("x-gitlab-event", "").strip()
        return "push" if sent == "Push Hook" else sent
    return (headers.get("x-forgejo-event") or headers.get("x-gitea-event") or "").strip()


def _delivery(forge: str, headers: Mapping[str, str]) -> str:
    names: tuple[str, ...]
    if forge == "github":
        names = ("x-github-delivery",)
    elif forge == "gitlab":
        names = ("x-gitlab-event-uuid", "idempotency-key")
    else:
        names = ("x-forgejo-delivery", "x-gitea-delivery")
    return next((headers[n].strip() for n in names if headers.get(n, "").strip()), "")


def _payload(forge: str, headers: Mapping[str, str], body: bytes) -> Mapping[str, Any]:
    text = body
    if headers.get("content-type", "").split(";")[0].strip() == "application/x-www-form-urlencoded":
        # GitHub and Gitea can be set to send the JSON as a form field named payload.
        fields = parse_qs(body.decode("utf-8", "replace"))
        text = (fields.get("payload") or [""])[0].encode()
    try:
        payload = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # ValueError covers integers of thousands of digits; RecursionError, deep nesting.
        raise WebhookRefused(400, "the payload is not JSON", forge=forge) from exc
    if not isinstance(payload, dict):
        raise WebhookRefused(400, "the payload is not a JSON object", forge=forge)
    return payload


def _content_key(forge: str, payload: Mapping[str, Any], body: bytes) -> str:
    """What a replay under a new delivery id has in common with the original."""
    if forge != "gitlab":  # signed: the body cannot change without a new signature
        return f"{forge}:body:{hashlib.sha256(body).hexdigest()}"
    project = payload.get("project")
    path = project.get("path_with_namespace") if isinstance(project, Mapping) else None
    fields = [payload.get(k) for k in ("project_id", "ref", "before", "after")]
    fields += [path, list(_urls(forge, payload))]  # a fork may push the very same commits
    text = json.dumps(fields, sort_keys=True, default=str)
    return f"gitlab:push:{hashlib.sha256(text.encode()).hexdigest()}"


def _fresh(forge: str, payload: Mapping[str, Any], guard: ReplayGuard, now: float) -> bool:
    """Refuses a push older than the guard's ``ttl``; False when the payload carries no
    push time to judge by (the guard then keeps its digest longer)."""
    repository = payload.get("repository")
    pushed = repository.get("pushed_at") if isinstance(repository, Mapping) else None
    if forge != "github" or not isinstance(pushed, int | float) or isinstance(pushed, bool):
        return False
    age = now - float(pushed)
    if age > guard.ttl:
        raise WebhookRefused(409, f"stale delivery: pushed {age / 3600:.0f} h ago", forge=forge)
    return True


def _urls(forge: str, payload: Mapping[str, Any]) -> tuple[str, ...]:
    found: list[str] = []
    for section, keys in _URL_KEYS[forge]:
        holder = payload.get(section)
        if not isinstance(holder, Mapping):
            continue
        for key in keys:
            value = holder.get(key)
            if isinstance(value, str) and value.strip() and value.strip() not in found:
                found.append(value.strip())
    return tuple(found)
