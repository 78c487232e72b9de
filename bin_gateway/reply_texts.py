"""Phrases of the reply flow's mails that depend on counts: who gets it, what was removed.

The member reads these in the acknowledgement, so they say plainly what happened to
their reply ("your phone number was left out") without repeating any of it.
"""

from __future__ import annotations

from .anonymise import Report
from .config import MailingList


def coordinators_phrase(language: str, lst: MailingList) -> str:
    several = len(lst.coordinators) > 1
    if language == "nl":
        return f"de coördinator{'en' if several else ''} van {lst.name}"
    return f"the coordinator{'s' if several else ''} of {lst.name}"


def removed_summary(report: Report, language: str) -> str:
    """A short list of what was left out or changed, or "" when nothing was."""
    nl = language == "nl"
    lines: list[str] = []
    if report.quote_removed:
        lines.append("het oorspronkelijke bericht dat in uw antwoord stond" if nl
                     else "the original message quoted in your reply")
    if report.signature_removed:
        lines.append("uw ondertekening" if nl else "your signature")
    if report.identity_redacted:
        lines.append("uw naam of e-mailadres in de tekst" if nl
                     else "your name or e-mail address in the text")
    if report.addresses_redacted:
        lines.append(_count(report.addresses_redacted, "e-mailadres", "e-mailadressen", nl)
                     if nl else _count(report.addresses_redacted, "e-mail address",
                                       "e-mail addresses", nl))
    if report.phones_redacted:
        lines.append(_count(report.phones_redacted, "telefoonnummer", "telefoonnummers", nl)
                     if nl else _count(report.phones_redacted, "phone number", "phone numbers",
                                       nl))
    if report.dropped:
        label = "bijlagen die we niet doorsturen: " if nl else "attachments we do not pass on: "
        lines.append(label + ", ".join(report.dropped))
    text = ""
    if lines:
        head = "Dit hebben we weggelaten:" if nl else "What we left out:"
        text = head + "\n" + "\n".join(f"* {line}" for line in lines) + "\n"
    if report.images_kept:
        text += ("Foto's zijn meegestuurd, zonder de verborgen gegevens erin (zoals de plek"
                 " waar ze zijn gemaakt).\n" if nl else
                 "Photos were passed on, without the hidden data in them (such as where they"
                 " were taken).\n")
    return text


def _count(n: int, one: str, many: str, nl: bool) -> str:
    return f"{n} {one if n == 1 else many}" + (" (vervangen door [afgeschermd])" if nl
                                               else " (replaced by [afgeschermd])")
