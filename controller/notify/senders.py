"""Sending one notice to one target: HTTP webhooks (JSON, Slack) and SMTP.

Every send has a timeout. Failures become :class:`DeliveryError`, whose ``retryable`` says
whether a later attempt can succeed (timeouts, connection failures, HTTP 429 and 5xx,
SMTP 4xx) or not (other HTTP 4xx, SMTP 5xx, a refused login, a missing secret). Messages
name the target, never its URL: a webhook URL is a credential (Slack's carries the token).
"""

from __future__ import annotations

import asyncio
import ipaddress
import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any, Protocol

import httpx

import controller
from controller.errors import FazaiError, SecretError
from controller.notify import formats
from controller.notify.notice import Notice
from controller.notify.settings import EmailTarget, SlackTarget, Target, WebhookTarget


class DeliveryError(FazaiError):
    """A notice could not be delivered to ``target``; ``retry_after`` is the wait the
    target asked for (HTTP Retry-After), if any."""

    def __init__(
        self, target: str, message: str, *, retryable: bool, retry_after: float | None = None
    ) -> None:
        self.target = target
        self.message = message
        self.retryable = retryable
        self.delay = retry_after if retryable else None  # the tree's name for it
        self.retry_after = retry_after
        super().__init__(f"{target}: {message}")


class Sender(Protocol):
    async def send(self, notice: Notice) -> None: ...

    async def close(self) -> None: ...


class HttpSender:
    """POSTs ``payload(notice)`` as JSON to the URL the target's reference holds."""

    def __init__(
        self,
        target: WebhookTarget | SlackTarget,
        payload: Callable[[Notice], dict[str, Any]],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.target = target
        self.payload = payload
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(target.timeout),
            transport=transport,
            follow_redirects=False,  # a redirect could carry the body to another host
            headers={"User-Agent": f"fazai/{controller.__version__}"},
        )

    async def send(self, notice: Notice) -> None:
        name = self.target.name
        try:
            url = self.target.url.resolve(name, "urlRef").reveal()
        except SecretError as exc:
            raise DeliveryError(name, exc.message, retryable=False) from exc
        try:
            response = await self._client.post(
                url,
                json=self.payload(notice),
                headers={"X-FazAI-Notice": notice.kind.value},
            )
        except httpx.TimeoutException as exc:
            raise DeliveryError(
                name, f"no answer within {self.target.timeout:g}s", retryable=True
            ) from exc
        except httpx.TransportError as exc:
            # httpx's transport messages name the failure (refused, reset, TLS), not the URL
            raise DeliveryError(
                name, f"cannot connect: {_scrub(exc, url)}", retryable=True
            ) from exc
        except httpx.InvalidURL as exc:
            raise DeliveryError(name, "the URL is not valid", retryable=False) from exc
        status = response.status_code
        if status < 300:
            return
        retryable = status == 429 or status >= 500
        raise DeliveryError(
            name,
            f"HTTP {status} {response.reason_phrase}",
            retryable=retryable,
            retry_after=_retry_after(response.headers.get("Retry-After")),
        )

    async def close(self) -> None:
        await self._client.aclose()


class SmtpSender:
    """One SMTP session per notice (smtplib in a thread: notices are rare, and a fresh
    connection never trips over a server's idle timeout)."""

    def __init__(self, target: EmailTarget) -> None:
        self.target = target

    async def send(self, notice: Notice) -> None:
        t = self.target
        message = formats.to_email(notice, t.sender, t.recipients, t.subject_prefix)
        credentials = None
        if t.smtp.user is not None and t.smtp.password is not None:
            try:
                credentials = (
                    t.smtp.user.resolve(t.name, "smtp.userRef").reveal(),
                    t.smtp.password.resolve(t.name, "smtp.passwordRef").reveal(),
                )
            except SecretError as exc:
                raise DeliveryError(t.name, exc.message, retryable=False) from exc
        # The thread ends on its own: every socket operation has the target's timeout.
        await asyncio.to_thread(self._send, message, credentials)

    def _send(self, message: EmailMessage, credentials: tuple[str, str] | None) -> None:
        t = self.target
        smtp = t.smtp
        if credentials and not (smtp.ssl or smtp.starttls) and not _loopback(smtp.host):
            raise DeliveryError(
                t.name,
                f"refusing to send SMTP credentials to {smtp.host} unencrypted; "
                "set smtp.starttls or smtp.ssl",
                retryable=False,
            )
        context = _tls_context(t)
        try:
            client: smtplib.SMTP
            if smtp.ssl:
                client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=t.timeout, context=context)
            else:
                client = smtplib.SMTP(smtp.host, smtp.port, timeout=t.timeout)
            with client:
                client.ehlo()
                if smtp.starttls:
                    client.starttls(context=context)
                    client.ehlo()
                if credentials:
                    client.login(*credentials)
                refused = client.send_message(message)
            if refused:
                raise DeliveryError(
                    t.name, f"recipients refused: {', '.join(sorted(refused))}", retryable=False
                )
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                t.name, f"{smtp.host} refused the login ({exc.smtp_code})", retryable=False
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(t.name, f"{smtp.host}: {exc}", retryable=False) from exc
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                t.name,
                f"{smtp.host} answered {exc.smtp_code} {_text(exc.smtp_error)}",
                retryable=400 <= exc.smtp_code < 500,
            ) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(
                t.name, f"recipients refused: {', '.join(sorted(exc.recipients))}", retryable=False
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(
                t.name,
                f"{smtp.host}: certificate not trusted ({exc.verify_message})",
                retryable=False,
            ) from exc
        except TimeoutError as exc:
            raise DeliveryError(
                t.name,
                f"{smtp.host}:{smtp.port} gave no answer within {t.timeout:g}s",
                retryable=True,
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                t.name, f"{smtp.host}:{smtp.port}: {type(exc).__name__}: {exc}", retryable=True
            ) from exc

    async def close(self) -> None:
        return None


def sender_for(target: Target, transport: httpx.AsyncBaseTransport | None = None) -> Sender:
    if isinstance(target, WebhookTarget):
        return HttpSender(target, formats.to_json, transport)
    if isinstance(target, SlackTarget):
        return HttpSender(target, formats.to_slack, transport)
    if isinstance(target, EmailTarget):
        return SmtpSender(target)
    raise TypeError(f"no sender for {type(target).__name__}")


def _tls_context(target: EmailTarget) -> ssl.SSLContext:
    ca = target.smtp.ca_bundle
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    if not target.smtp.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare for webhooks; the backoff applies


def _scrub(exc: Exception, url: str) -> str:
    text = str(exc) or type(exc).__name__
    return text.replace(url, "<url>")


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
