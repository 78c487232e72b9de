"""Every SMTP reply the gateway sends, in one place.

Replies tell the peer little and the log everything: the text here is generic and
readable by the person who gets the sender's bounce; the reason goes to the log.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SmtpReply:
    code: int
    status: str  # enhanced status code, RFC 3463
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}"

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 300


OK = SmtpReply(250, "2.0.0", "OK")
OK_QUEUED = SmtpReply(250, "2.0.0", "Message accepted")
OK_RECIPIENT = SmtpReply(250, "2.1.5", "Recipient OK")

RELAY_DENIED = SmtpReply(
    550, "5.7.1", "Relaying denied: this server only accepts mail for its own domain"
)
UNKNOWN_RECIPIENT = SmtpReply(550, "5.1.1", "No such address here")
EXPIRED_TOKEN = SmtpReply(550, "5.1.1", "This address has expired")
TOO_MANY_RECIPIENTS = SmtpReply(452, "4.5.3", "Too many recipients")
OTHER_ROUTE = SmtpReply(452, "4.5.3", "Please send to this address in a separate transaction")
MESSAGE_TOO_BIG = SmtpReply(552, "5.3.4", "Message too big")
NOT_ALLOWED = SmtpReply(550, "5.7.1", "You are not allowed to send to this address")
NOT_AUTHENTICATED = SmtpReply(
    550, "5.7.1", "Sender domain not authenticated (no aligned DKIM signature or SPF pass)"
)
AMBIGUOUS_FROM = SmtpReply(550, "5.7.1", "The From header must hold exactly one address")
NOT_A_COORDINATOR = SmtpReply(550, "5.7.1", "Only a coordinator of this list can decide on it")
LOOP_DETECTED = SmtpReply(550, "5.4.6", "Mail loop detected")
MALFORMED = SmtpReply(554, "5.6.0", "Message could not be parsed")
TOO_COMPLEX = SmtpReply(554, "5.6.0", "Message has too many or too deeply nested MIME parts")
HEADER_TOO_BIG = SmtpReply(554, "5.6.0", "Message header block is too large")
DNS_TEMPFAIL = SmtpReply(
    451, "4.7.0", "Temporary DNS failure while authenticating; try again later"
)
LOCAL_ERROR = SmtpReply(451, "4.3.0", "Temporary local problem; try again later")
STORAGE_FULL = SmtpReply(452, "4.3.1", "Insufficient system storage; try again later")
SHUTTING_DOWN = SmtpReply(421, "4.3.2", "Service shutting down; try again later")
TOO_MANY_CONNECTIONS = SmtpReply(421, "4.4.5", "Too many connections; try again later")
TOO_MANY_FROM_CLIENT = SmtpReply(
    421, "4.7.0", "Too many connections from your address; try again later"
)
NOT_THE_MEMBER = SmtpReply(
    550, "5.7.1", "This reply address belongs to a member of the list; send from that address"
)
NOT_THREAD_PARTY = SmtpReply(
    550, "5.7.1", "Only the agency or a coordinator of the list can answer through this address"
)
