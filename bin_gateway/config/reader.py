"""The configuration file: TOML in, frozen dataclasses out, every problem reported at once.

``load_config`` is synchronous (it reads files): call it at start, or through
``asyncio.to_thread`` on SIGHUP. Each section has a small reader function working on a
``Table`` (see ``table``). If anything was recorded, the half-filled values are dropped
and one ``ConfigError`` carries all problems.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from bin_gateway.config.settings import (
    REPLY_TARGETS,
    RESERVED_LOCAL_PARTS,
    Agency,
    AuthRequirement,
    Config,
    DeliveryMode,
    DeliverySettings,
    DkimSettings,
    GatewaySettings,
    HttpSettings,
    InboundSettings,
    MailingList,
    ModerationSettings,
    Pseudonyms,
    StartTls,
    Subscription,
    TlsSettings,
)
from bin_gateway.config.table import Table
from bin_gateway.config.values import (
    HostPort,
    address_key,
    choice,
    display_text,
    file_path,
    host_name,
    local_id,
    mail_domain,
    nonempty_name,
    normalise_address,
    one_of,
    parse_duration,
    parse_host_port,
    positive,
    public_url,
    quoted,
    sender_entry,
    supported_language,
)
from bin_gateway.errors import ConfigError
from bin_gateway.keys import read_private_key


def _read_gateway(t: Table) -> GatewaySettings:
    domain = t.parsed("domain", mail_domain, None, "")
    data_dir = file_path(t.base, must_exist=False)
    return GatewaySettings(
        domain=domain,
        hostname=t.parsed("hostname", host_name, None, ""),
        listen=t.parsed_list(
            "listen", lambda s: parse_host_port(s, 25, any_port=True), ("0.0.0.0:25",),
            nonempty=True,
        ),
        data_dir=t.parsed("data_dir", data_dir, "/var/lib/bin-gateway", Path()),
        intake=t.parsed("intake", _intake, "agency", ""),
        admin=t.parsed("admin", _outside(domain, normalise_address), None, ""),
        language=t.parsed("language", supported_language, "nl", "nl"),
        max_message_size=t.size("max_message_size", "15 MB"),
        keep_messages=t.parsed(
            "keep_messages", positive(parse_duration), "90d", timedelta(days=90)
        ),
    )


def _intake(text: str) -> str:
    if local_id(text) in RESERVED_LOCAL_PARTS:
        raise ValueError(f"{quoted(text)} is a reserved address")
    return text


def _read_tls(t: Table) -> TlsSettings:
    readable = file_path(t.base, must_exist=True)
    return TlsSettings(
        certificate=t.parsed("certificate", readable, None, Path()),
        private_key=t.parsed("private_key", readable, None, Path()),
    )


def _read_dkim(t: Table) -> DkimSettings:
    def usable_key(text: str) -> Path:
        path = file_path(t.base, must_exist=False)(text)
        read_private_key(path)  # the signer's own loader: check-config refuses what it would
        return path

    return DkimSettings(
        selector=t.parsed("selector", lambda s: host_name(s, fqdn=False), None, ""),
        private_key=t.parsed("private_key", usable_key, None, Path()),
    )


def _read_inbound(t: Table) -> InboundSettings:
    nameserver = lambda s: parse_host_port(s, 53, ip_only=True)  # noqa: E731
    return InboundSettings(
        require=t.parsed("require", choice(AuthRequirement), "aligned", AuthRequirement.ALIGNED),
        nameservers=t.parsed_list("nameservers", nameserver, ()),
        trusted_authserv_ids=t.parsed_list("trusted_authserv_ids", _authserv_id, ()),
        dns_timeout=t.parsed(
            "dns_timeout", positive(parse_duration), "5s", timedelta(seconds=5)
        ).total_seconds(),
    )


def _authserv_id(text: str) -> str:
    """An authserv-id (RFC 8601): usually the MTA's host name; kept lower-case, as
    domain names compare case-insensitively."""
    if not text or any(char.isspace() or ord(char) < 32 for char in text):
        raise ValueError(f"{quoted(text)} is not an authserv-id")
    return text.lower()


def _read_moderation(t: Table) -> ModerationSettings:
    duration = positive(parse_duration)
    expire = t.parsed("expire_after", duration, "7d", timedelta(days=7))
    remind = t.parsed("remind_after", duration, "24h", timedelta(hours=24))
    if remind >= expire:
        t.problem("remind_after", "must be shorter than expire_after")
    return ModerationSettings(expire_after=expire, remind_after=remind)


def _read_delivery(t: Table, gateway: GatewaySettings) -> DeliverySettings:
    password = file_path(t.base, must_exist=True)
    settings = DeliverySettings(
        mode=t.parsed("mode", choice(DeliveryMode), "smtp", DeliveryMode.SMTP),
        smarthost=t.parsed(
            "smarthost", lambda s: parse_host_port(s, 25), "127.0.0.1:25", HostPort("", 0)
        ),
        starttls=t.parsed("starttls", choice(StartTls), "opportunistic", StartTls.OPPORTUNISTIC),
        username=t.parsed("username", display_text, "", ""),
        password_file=t.parsed("password_file", lambda s: password(s) if s else None, "", None),
        connections=t.integer("connections", 8, 1, 100),
        give_up_after=t.parsed("give_up_after", positive(parse_duration), "4d", timedelta(days=4)),
        retry_after=t.parsed("retry_after", positive(parse_duration), "5m", timedelta(minutes=5)),
        maildir=t.parsed(
            "maildir",
            file_path(t.base, must_exist=False),
            str(gateway.data_dir / "outbox"),
            Path(),
        ),
        timeout=t.parsed(
            "timeout", positive(parse_duration), "60s", timedelta(seconds=60)
        ).total_seconds(),
    )
    if settings.username and not t.raw.get("password_file"):
        t.problem("password_file", "required when a username is set")
    if settings.password_file is not None and not settings.username:
        t.problem("username", "required when a password_file is set")
    return settings


def _read_http(t: Table) -> HttpSettings:
    return HttpSettings(
        listen=t.parsed(
            "listen", lambda s: parse_host_port(s, 8025, any_port=True), "127.0.0.1:8025",
            HostPort("", 0),
        ),
        public_url=t.parsed("public_url", public_url, None, ""),
    )


def _read_list(t: Table, gateway: GatewaySettings) -> MailingList:
    list_id = t.parsed("id", local_id, None, "")
    name = t.parsed("name", nonempty_name, None, "")
    return MailingList(
        id=list_id,
        name=name,
        coordinators=t.parsed_list(
            "coordinators", _outside(gateway.domain, normalise_address), nonempty=True
        ),
        replies_to=t.parsed_list("replies_to", one_of(REPLY_TARGETS), REPLY_TARGETS, nonempty=True),
        subscription=t.parsed("subscription", choice(Subscription), "open", Subscription.OPEN),
        subject_prefix=t.parsed("subject_prefix", display_text, f"[{name}]", ""),
        language=t.parsed("language", supported_language, gateway.language, gateway.language),
        redact_contact_details=t.boolean("redact_contact_details", True),
        review_replies=t.boolean("review_replies", False),
        acknowledge_replies=t.boolean("acknowledge_replies", True),
        reply_thread_lifetime=t.parsed(
            "reply_thread_lifetime", positive(parse_duration), "90d", timedelta(days=90)
        ),
        pseudonyms=t.parsed("pseudonyms", choice(Pseudonyms), "per_bulletin",
                            Pseudonyms.PER_BULLETIN),
        replies_per_hour=t.integer("replies_per_hour", 10, 1, 10_000),
    )


def _outside(domain: str, parse: Callable[[str], str]) -> Callable[[str], str]:
    """Wrap an address parser: mail to the gateway's own domain comes back to it (a loop)."""

    def parse_outside(text: str) -> str:
        address = parse(text)
        if domain and address.rpartition("@")[2] == domain:
            raise ValueError(f"{quoted(address)} is in the gateway's own domain (a mail loop)")
        return address

    return parse_outside


def _read_lists(root: Table, gateway: GatewaySettings) -> tuple[MailingList, ...]:
    tables = root.tables("lists")
    if not tables and root.raw.get("lists", []) == []:
        root.problem("lists", "at least one [[lists]] entry is required")
    reserved = RESERVED_LOCAL_PARTS | {gateway.intake}
    seen: set[str] = set()
    lists = []
    for t in tables:
        lst = _read_list(t, gateway)
        if lst.id in reserved:
            t.problem("id", f"{quoted(lst.id)} is taken by the intake or a reserved address")
        elif lst.id in seen:
            t.problem("id", f"duplicate list id {quoted(lst.id)}")
        seen.add(lst.id)
        lists.append(lst)
    return tuple(lists)


def _read_agencies(root: Table, list_ids: set[str], domain: str) -> tuple[Agency, ...]:
    def known_list(text: str) -> str:
        if text not in list_ids:
            raise ValueError(f"no list with id {quoted(text)}")
        return text

    agencies: list[Agency] = []
    owners: dict[str, str] = {}  # sender entry -> agency id: one sender, one agency
    for t in root.tables("agencies"):
        agency_id = t.parsed("id", local_id, None, "")
        if any(agency_id == other.id for other in agencies):
            t.problem("id", f"duplicate agency id {quoted(agency_id)}")

        def unclaimed(text: str, agency_id: str = agency_id) -> str:
            sender = _outside(domain, sender_entry)(text)
            owner = owners.setdefault(address_key(sender) or sender, agency_id)
            if owner != agency_id:
                raise ValueError(f"{quoted(sender)} is already a sender of {quoted(owner)}")
            return sender

        agencies.append(
            Agency(
                id=agency_id,
                name=t.parsed("name", nonempty_name, None, ""),
                senders=t.parsed_list("senders", unclaimed, nonempty=True),
                lists=t.parsed_list("lists", known_list, ()),
            )
        )
    return tuple(agencies)


def _read_config(root: Table, source: str) -> Config:
    """Read the sections in the order of config.example.toml, so problems come in that order."""
    gateway = _read_gateway(_required(root.table("gateway", required=True)))
    tls = root.table("tls")
    tls_settings = _read_tls(tls) if tls else None
    dkim = _read_dkim(_required(root.table("dkim", required=True)))
    inbound = _read_inbound(_optional(root, "inbound"))
    moderation = _read_moderation(_optional(root, "moderation"))
    delivery = _read_delivery(_optional(root, "delivery"), gateway)
    http = root.table("http")
    http_settings = _read_http(http) if http else None
    lists = _read_lists(root, gateway)
    agencies = _read_agencies(root, {lst.id for lst in lists}, gateway.domain)
    return Config(
        Path(source), gateway, tls_settings, dkim, inbound, moderation, delivery,
        http_settings, agencies, lists,
    )  # fmt: skip


def _required(table: Table | None) -> Table:
    # table(required=True) returns None only for a wrong type, already reported
    return table if table is not None else Table({}, "", [], Path())


def _optional(root: Table, key: str) -> Table:
    """An optional section with defaults: absent reads as empty."""
    table = root.table(key)
    return table if table is not None else Table({}, key, [], root.base)


def parse_config(text: str, source: str = "<string>", *, base_dir: Path | None = None) -> Config:
    """Parse TOML text; relative paths resolve against ``base_dir`` (default: the cwd).

    Raises ConfigError listing every problem found.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"TOML syntax error: {exc}"]) from None
    problems: list[str] = []
    root = Table(raw, "", problems, (base_dir or Path.cwd()).absolute())
    config = _read_config(root, source)
    root.report_unknown_keys()
    if problems:
        raise ConfigError(source, problems)
    return config


def load_config(path: Path) -> Config:
    """Read and validate the file at ``path`` (paths inside resolve against its directory)."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: editors on Windows add a BOM
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot be read ({exc.strerror})"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [f"not UTF-8 text (byte {exc.start})"]) from None
    return parse_config(text, str(path), base_dir=path.parent)
