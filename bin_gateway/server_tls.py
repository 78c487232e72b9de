"""The certificate the SMTP listeners offer with STARTTLS, and its renewal on reload.

Certbot renews by replacing the files, not the config, so every reload (SIGHUP) reads
the configured certificate chain and key again (:meth:`ServerTls.reload`), off the event
loop, whether or not the config file changed. Each STARTTLS after that gets the new
context; sessions already in TLS keep the one they shook hands with. A pair that cannot
be used (a file missing or unreadable, a key of another certificate, an encrypted key)
is refused with the reason logged (``tls.reload_refused``), and the certificate in use
stays.

Why a new context rather than ``load_cert_chain`` on the one in use, which would also
change what new handshakes present: a load that fails halfway leaves that context
broken — after a key of another certificate or a missing key file every later handshake
fails (OpenSSL 3.0, tried) — and loading it in a thread would race the event loop's
handshakes on the same ``SSL_CTX``. A session reads :attr:`ServerTls.context` when the
client asks for STARTTLS (``smtp_server``), so swapping it is one assignment on the loop.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from .config import TlsSettings
from .errors import TlsFilesError

log = structlog.get_logger("bin_gateway.tls")


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    """What the log may say about the certificate offered: nothing secret."""

    subject: str
    serial: str  # hex
    not_after: str  # ISO 8601, UTC
    sha256: str  # fingerprint of the DER certificate, hex


def load_tls(settings: TlsSettings) -> tuple[ssl.SSLContext, CertificateFacts]:
    """A server context offering the configured pair, and its certificate's facts.

    Blocking (reads files). Raises TlsFilesError with a text fit for the admin.
    """
    facts = _describe(settings)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.certificate, settings.private_key,
                                password=_no_password)  # fmt: skip
    except OSError as exc:  # ssl.SSLError is one too
        raise TlsFilesError(_problem(settings, exc)) from None
    except ValueError as exc:  # raised by _no_password
        raise TlsFilesError(f'"{settings.private_key}": {exc}') from None
    return context, facts


class ServerTls:
    """The STARTTLS context new SMTP sessions get; a reload swaps in a new one."""

    def __init__(self, settings: TlsSettings) -> None:
        # At start a bad pair stops the gateway (TlsFilesError), as any unusable file does.
        self.context, self.certificate = load_tls(settings)

    async def reload(self, settings: TlsSettings) -> bool:
        """Offer the pair at ``settings`` to new sessions; False (logged) when refused."""
        try:
            context, facts = await asyncio.to_thread(load_tls, settings)
        except Exception as exc:  # a bug too must not take the running gateway down
            problem = str(exc) if isinstance(exc, TlsFilesError) else f"failed: {exc!r}"
            log.error("tls.reload_refused", problem=problem,
                      certificate=str(settings.certificate),
                      private_key=str(settings.private_key),
                      kept_serial=self.certificate.serial,
                      kept_not_after=self.certificate.not_after)
            return False
        renewed = facts != self.certificate
        self.context, self.certificate = context, facts
        log.info("tls.reloaded", certificate=str(settings.certificate), renewed=renewed,
                 **asdict(facts))
        return True


def _describe(settings: TlsSettings) -> CertificateFacts:
    """The facts of the first certificate in the chain file (the server's own)."""
    path = settings.certificate
    try:
        pem = path.read_bytes()
        _readable(settings.private_key)  # load_cert_chain's own error omits the file name
    except OSError as exc:
        raise TlsFilesError(f'"{exc.filename}" cannot be read ({exc.strerror})') from None
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise TlsFilesError(f'"{path}" holds no PEM certificate') from None
    return CertificateFacts(
        subject=cert.subject.rfc4514_string(),
        serial=f"{cert.serial_number:x}",
        not_after=cert.not_valid_after_utc.isoformat(),
        sha256=cert.fingerprint(hashes.SHA256()).hex(),
    )


def _readable(path: Path) -> None:
    with path.open("rb") as handle:
        handle.read(1)


def _problem(settings: TlsSettings, exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        if exc.reason == "KEY_VALUES_MISMATCH":
            return (f'"{settings.private_key}" is not the key of the certificate in '
                    f'"{settings.certificate}"')  # fmt: skip
        return (f'OpenSSL cannot use "{settings.certificate}" with "{settings.private_key}" '
                f"({exc.reason or exc})")  # fmt: skip
    # A file replaced between our read and OpenSSL's.
    return f'"{exc.filename or settings.certificate}" cannot be read ({exc.strerror})'


def _no_password() -> bytes:
    # Without a callback OpenSSL would ask for the passphrase on the terminal: a reload
    # thread would wait there for ever.
    raise ValueError("the private key is encrypted; give the gateway an unencrypted key")
