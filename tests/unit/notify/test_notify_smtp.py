"""Email notices through a real SMTP server on loopback (aiosmtpd): plain, STARTTLS with a
login, implicit TLS; refusals, temporary failures and untrusted certificates."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from controller.notify.notice import Notice
from controller.notify.senders import DeliveryError, SmtpSender
from controller.notify.settings import EmailTarget, NoticeKind, SecretRef, Smtp
from controller.testing.opnsense.server import self_signed_certificate

NOTICE = Notice(
    NoticeKind.ROLLED_BACK,
    "Apply rolled back on rep-db-1",
    "Run 7 on rep-db-1 rolled back: verify: sysctl value is still 0",
    datetime(2025, 3, 1, 6, tzinfo=UTC),
    source="infra",
    node="rep-db-1",
    revision="0123456789abcdef",
    run_id=7,
    reason="verify: sysctl value is still 0",
)


@dataclass
class Mailbox:
    messages: list[tuple[Envelope, Message]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    answer: str = "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.answer.startswith("250"):
            assert isinstance(envelope.content, bytes)
            self.messages.append((envelope, message_from_bytes(envelope.content)))
        return self.answer

    def authenticate(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"fazai",
            b"s3cret pass",
        ):
            self.logins.append(data.login.decode())
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    cert, key = self_signed_certificate(tmp_path, "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return cert, context


def serve(mailbox: Mailbox, **options: Any) -> Controller:
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=free_port(), authenticator=mailbox.authenticate,
        **options,
    )  # fmt: skip
    controller.start()
    return controller


@pytest.fixture
def credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[SecretRef, SecretRef]:
    monkeypatch.setenv("FAZAI_TEST_SMTP_USER", "fazai")
    (tmp_path / "smtp.pass").write_text("s3cret pass\n")
    return SecretRef(env="FAZAI_TEST_SMTP_USER"), SecretRef(file=str(tmp_path / "smtp.pass"))


def email(port: int, **smtp: Any) -> EmailTarget:
    return EmailTarget(
        name="mail",
        smtp=Smtp(host=smtp.pop("host", "127.0.0.1"), port=port, **smtp),
        sender="fazai@example.net",
        recipients=("ops@example.net", "net@example.net"),
        timeout=5.0,
    )


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    yield Mailbox()


async def test_plain_smtp_delivers_one_message_to_every_recipient(mailbox: Mailbox) -> None:
    server = serve(mailbox)
    try:
        await SmtpSender(email(server.port)).send(NOTICE)
    finally:
        server.stop()
    ((envelope, message),) = mailbox.messages
    assert envelope.mail_from == "fazai@example.net"
    assert envelope.rcpt_tos == ["ops@example.net", "net@example.net"]
    assert message["Subject"] == "[FazAI] Apply rolled back on rep-db-1"
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    text = body.decode()
    assert "Node: rep-db-1" in text and "Commit: 0123456789abcdef" in text
    assert "verify: sysctl value is still 0" in text


async def test_starttls_and_a_login_by_reference(
    mailbox: Mailbox,
    certificate: tuple[Path, ssl.SSLContext],
    credentials: tuple[SecretRef, SecretRef],
) -> None:
    cert, context = certificate
    server = serve(mailbox, tls_context=context, require_starttls=True, auth_require_tls=True)
    user, password = credentials
    try:
        target = email(server.port, starttls=True, user=user, password=password, ca_bundle=cert)
        await SmtpSender(target).send(NOTICE)
        wrong = SecretRef(env="FAZAI_TEST_SMTP_USER")  # the user name as the password
        bad = email(server.port, starttls=True, user=user, password=wrong, ca_bundle=cert)
        with pytest.raises(DeliveryError, match="refused the login") as caught:
            await SmtpSender(bad).send(NOTICE)
        assert not caught.value.retryable
        untrusted = email(server.port, starttls=True, user=user, password=password)
        with pytest.raises(DeliveryError, match="certificate not trusted") as refused:
            await SmtpSender(untrusted).send(NOTICE)
        assert not refused.value.retryable
    finally:
        server.stop()
    assert mailbox.logins == ["fazai"] and len(mailbox.messages) == 1
    assert "s3cret" not in str(caught.value)


async def test_implicit_tls(
    mailbox: Mailbox,
    certificate: tuple[Path, ssl.SSLContext],
    credentials: tuple[SecretRef, SecretRef],
) -> None:
    cert, context = certificate
    # aiosmtpd does not count implicit TLS as TLS for AUTH; the connection is TLS regardless.
    server = serve(mailbox, ssl_context=context, auth_require_tls=False)
    user, password = credentials
    try:
        target = email(server.port, ssl=True, user=user, password=password, ca_bundle=cert)
        await SmtpSender(target).send(NOTICE)
    finally:
        server.stop()
    assert mailbox.logins == ["fazai"] and len(mailbox.messages) == 1


@pytest.mark.parametrize(("answer", "retryable"), [("451 try later", True), ("554 no", False)])
async def test_server_answers_map_to_retryable_or_not(
    mailbox: Mailbox, answer: str, retryable: bool
) -> None:
    mailbox.answer = answer
    server = serve(mailbox)
    try:
        with pytest.raises(DeliveryError) as caught:
            await SmtpSender(email(server.port)).send(NOTICE)
    finally:
        server.stop()
    assert caught.value.retryable is retryable
    assert answer.split()[0] in caught.value.message


async def test_no_server_is_retryable() -> None:
    with pytest.raises(DeliveryError) as caught:
        await SmtpSender(email(free_port())).send(NOTICE)
    assert caught.value.retryable


async def test_credentials_are_never_sent_in_clear_to_another_host(
    credentials: tuple[SecretRef, SecretRef],
) -> None:
    user, password = credentials
    target = email(25, host="smtp.example.net", user=user, password=password)
    with pytest.raises(DeliveryError, match="unencrypted") as caught:
        await SmtpSender(target).send(NOTICE)
    assert not caught.value.retryable
