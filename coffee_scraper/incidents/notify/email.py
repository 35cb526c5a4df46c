"""E-mail over SMTP (smtplib): text/plain incident messages to the roster's people and configured extra addresses.

Implicit TLS (``smtp_ssl``), STARTTLS (``smtp_starttls``) and AUTH (``smtp_user``/``smtp_password``) come from
settings. Each message has a deterministic Message-ID (``<outbox-ID.INCIDENT@domain>``, the external_ref) and
``In-Reply-To``/``References`` to the incident's thread root, so mail clients thread one incident together.
5xx SMTP answers (refused recipient, rejected data) are permanent; 4xx and connection problems are retried.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime

from coffee_scraper.incidents.notify.base import Delivered, DeliveryError, Outgoing, RefLookup


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[-1].strip("> ") or "localhost"


def message_id(outbox_id: int, incident_id: str | None, sender: str) -> str:
    return f"<outbox-{outbox_id}.{incident_id or 'none'}@{_domain(sender)}>"


def thread_id(incident_id: str, sender: str) -> str:
    return f"<incident-{incident_id}@{_domain(sender)}>"


class EmailSender:
    channel = "email"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        user: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        use_ssl: bool = False,
        timeout_s: float = 15.0,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.user, self.password = user, password
        self.starttls, self.use_ssl, self.timeout_s = starttls, use_ssl, timeout_s

    def build(self, msg: Outgoing) -> EmailMessage:
        p = msg.payload
        em = EmailMessage()
        em["From"] = self.sender
        em["To"] = msg.target
        em["Subject"] = p["subject"]
        em["Date"] = format_datetime(msg.created_at)
        em["Message-ID"] = message_id(msg.id, msg.incident_id, self.sender)
        if msg.incident_id:
            root = thread_id(msg.incident_id, self.sender)
            em["In-Reply-To"] = root
            em["References"] = root
            em["X-Coffee-Scraper-Incident"] = msg.incident_id
        em["Auto-Submitted"] = "auto-generated"
        em.set_content(p["body"])
        return em

    def _connect(self) -> smtplib.SMTP:
        if self.use_ssl:
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=ssl.create_default_context())
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        if self.starttls:
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                smtp.quit()
                raise DeliveryError(
                    f"smtp {self.host}:{self.port} does not offer STARTTLS; "
                    "set COFFEE_SCRAPER_SMTP_STARTTLS=false or use the submission port"
                )
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        return smtp

    def send(self, msg: Outgoing, lookup: RefLookup) -> Delivered:
        em = self.build(msg)
        where = f"smtp {self.host}:{self.port}"
        try:
            with self._connect() as smtp:
                if self.user:
                    smtp.login(self.user, self.password or "")
                refused = smtp.send_message(em)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"{where}: login refused ({exc.smtp_code}); check COFFEE_SCRAPER_SMTP_USER/PASSWORD",
                permanent=True,
                status_code=exc.smtp_code,
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [c for c, _ in exc.recipients.values()]
            raise DeliveryError(
                f"{where}: recipient {msg.target} refused {codes}", permanent=all(c >= 500 for c in codes)
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"{where}: {exc.smtp_code} {exc.smtp_error!r}",
                permanent=exc.smtp_code >= 500,
                status_code=exc.smtp_code,
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{where}: {type(exc).__name__}: {exc}") from None
        if refused:
            raise DeliveryError(f"{where}: recipient {msg.target} refused: {refused}", permanent=True)
        return Delivered(external_ref=str(em["Message-ID"]), status_code=250)

    def close(self) -> None:
        return None
