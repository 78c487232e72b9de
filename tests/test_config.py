"""The configuration loader: values, defaults, every problem at once, warnings, the example."""

from __future__ import annotations

import dataclasses
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from bin_gateway.config import (
    Agency,
    AuthRequirement,
    Config,
    DeliveryMode,
    DeliverySettings,
    DkimSettings,
    GatewaySettings,
    HostPort,
    HttpSettings,
    InboundSettings,
    MailingList,
    ModerationSettings,
    Pseudonyms,
    StartTls,
    Subscription,
    TlsSettings,
    load_config,
    parse_config,
    parse_duration,
    parse_host_port,
    parse_size,
)
from bin_gateway.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent

MINIMAL = """
[gateway]
domain = "bin.example.nl"
hostname = "mail.bin.example.nl"
admin = "beheer@example.nl"

[dkim]
selector = "bin1"
private_key = "dkim.pem"

[[lists]]
id = "buurt-noord"
name = "BIN Noord"
coordinators = ["coordinator.noord@example.nl"]
"""

FULL = """
[gateway]
domain = "Bin.Example.NL"
hostname = "mail.bin.example.nl"
listen = ["127.0.0.1:2525", "[::1]:2526"]
data_dir = "state"
intake = "melding"
admin = "Beheer@Example.NL"
language = "en"
max_message_size = "2 MB"
keep_messages = "30d"

[tls]
certificate = "tls/cert.pem"
private_key = "tls/key.pem"

[dkim]
selector = "bin1"
private_key = "dkim.pem"

[inbound]
require = "dkim"
nameservers = ["127.0.0.1:5353", "::1"]
trusted_authserv_ids = ["MX1.Gemeente.Example"]
dns_timeout = "1500ms"

[moderation]
expire_after = "3d"
remind_after = "12h"

[delivery]
mode = "maildir"
smarthost = "smtp.provider.example:587"
starttls = "required"
username = "bin"
password_file = "secret.txt"
connections = 4
give_up_after = "5d"
maildir = "out"

[http]
listen = "127.0.0.1:8080"
public_url = "https://bin.example.nl/"

[[agencies]]
id = "politie"
name = "Politie Oost-Brabant"
senders = ["@Politie.Example", "wijkagent@gemeente.example"]
lists = ["buurt-noord"]

[[lists]]
id = "buurt-noord"
name = "BIN Noord"
coordinators = ["Coordinator.Noord@Example.NL"]
replies_to = ["coordinators"]
subscription = "approval"
subject_prefix = "BIN:"
language = "nl"
redact_contact_details = false
review_replies = true
acknowledge_replies = false
reply_thread_lifetime = "30d"
pseudonyms = "per_list"
replies_per_hour = 3
"""


def _pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def rsa_1024() -> bytes:
    return _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))  # noqa: S505  # the warning under test


@pytest.fixture(scope="module")
def rsa_2048() -> bytes:
    return _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    """A directory holding an Ed25519 DKIM key (dkim.pem), TLS files and a password file."""
    (tmp_path / "dkim.pem").write_bytes(_pem(ed25519.Ed25519PrivateKey.generate()))
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "cert.pem").write_text("cert")
    (tmp_path / "tls" / "key.pem").write_text("key")
    (tmp_path / "secret.txt").write_text("s3cret\n")
    return tmp_path


def _load(confdir: Path, text: str) -> Config:
    path = confdir / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def _problems(confdir: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _load(confdir, text)
    assert caught.value.source == str(confdir / "config.toml")
    return caught.value.problems


def test_full_file_parses_to_expected_values(confdir: Path) -> None:
    """Every key of a complete file lands, normalised, in the documented dataclass field."""
    config = _load(confdir, FULL)
    assert config.source == confdir / "config.toml"
    assert config.gateway == GatewaySettings(
        domain="bin.example.nl",
        hostname="mail.bin.example.nl",
        listen=(HostPort("127.0.0.1", 2525), HostPort("::1", 2526)),
        data_dir=confdir / "state",
        intake="melding",
        admin="Beheer@example.nl",
        language="en",
        max_message_size=2 * 1024 * 1024,
        keep_messages=timedelta(days=30),
    )
    assert config.tls == TlsSettings(confdir / "tls/cert.pem", confdir / "tls/key.pem")
    assert config.dkim == DkimSettings("bin1", confdir / "dkim.pem")
    assert config.inbound == InboundSettings(
        require=AuthRequirement.DKIM,
        nameservers=(HostPort("127.0.0.1", 5353), HostPort("::1", 53)),
        trusted_authserv_ids=("mx1.gemeente.example",),
        dns_timeout=1.5,
    )
    assert config.moderation == ModerationSettings(timedelta(days=3), timedelta(hours=12))
    assert config.delivery == DeliverySettings(
        mode=DeliveryMode.MAILDIR,
        smarthost=HostPort("smtp.provider.example", 587),
        starttls=StartTls.REQUIRED,
        username="bin",
        password_file=confdir / "secret.txt",
        connections=4,
        give_up_after=timedelta(days=5),
        retry_after=timedelta(minutes=5),
        maildir=confdir / "out",
    )
    assert config.http == HttpSettings(HostPort("127.0.0.1", 8080), "https://bin.example.nl")
    assert config.agencies == (
        Agency(
            id="politie",
            name="Politie Oost-Brabant",
            senders=("@politie.example", "wijkagent@gemeente.example"),
            lists=("buurt-noord",),
        ),
    )
    assert config.lists == (
        MailingList(
            id="buurt-noord",
            name="BIN Noord",
            coordinators=("Coordinator.Noord@example.nl",),
            replies_to=("coordinators",),
            subscription=Subscription.APPROVAL,
            subject_prefix="BIN:",
            language="nl",
            redact_contact_details=False,
            review_replies=True,
            acknowledge_replies=False,
            reply_thread_lifetime=timedelta(days=30),
            pseudonyms=Pseudonyms.PER_LIST,
            replies_per_hour=3,
        ),
    )


def test_minimal_file_gets_documented_defaults(confdir: Path) -> None:
    """Optional keys and sections take the documented defaults."""
    config = _load(confdir, MINIMAL.replace("hostname =", 'language = "en"\nhostname ='))
    assert config.gateway.listen == (HostPort("0.0.0.0", 25),)  # noqa: S104  # compared, not bound
    assert config.gateway.data_dir == Path("/var/lib/bin-gateway")
    assert config.gateway.intake == "agency"
    assert config.gateway.max_message_size == 15 * 1024 * 1024
    assert config.tls is None
    assert config.http is None
    assert config.agencies == ()
    assert config.inbound == InboundSettings(AuthRequirement.ALIGNED, (), (), 5.0)
    assert config.moderation == ModerationSettings(timedelta(days=7), timedelta(hours=24))
    assert config.delivery == DeliverySettings(
        mode=DeliveryMode.SMTP,
        smarthost=HostPort("127.0.0.1", 25),
        starttls=StartTls.OPPORTUNISTIC,
        username="",
        password_file=None,
        connections=8,
        give_up_after=timedelta(days=4),
        retry_after=timedelta(minutes=5),
        maildir=Path("/var/lib/bin-gateway/outbox"),
    )
    (lst,) = config.lists
    assert lst.replies_to == ("origin", "coordinators")
    assert lst.subscription is Subscription.OPEN
    assert lst.subject_prefix == "[BIN Noord]"
    assert lst.language == "en"  # inherits gateway.language
    assert lst.redact_contact_details is True


BROKEN = """
[gateway]
domain = "bin.example.nl"
hostname = "mail"
listen = ["0.0.0.0:99999"]
admin = "beheer@example.nl"
language = "de"
max_message_size = "15 MX"

[dkim]
selector = "bin1"
private_key = "nope.pem"

[inbound]
require = "spf"

[moderation]
expire_after = "1 week"

[delivery]
connections = 0
bogus = 1

[[agencies]]
id = "politie"
name = "Politie"
senders = ["@politie.example"]
lists = ["buurt-noord", "buurt-west"]

[[lists]]
id = "buurt-noord"
name = "BIN Noord"
coordinators = ["coordinator@example.nl", "jan@"]

[[lists]]
id = "buurt+zuid"
name = "BIN Zuid"
coordinators = []

[[lists]]
id = "buurt-noord"
name = "BIN Noord 2"
coordinators = ["c@example.nl"]
replies_to = ["everyone"]
"""


def test_every_mistake_is_reported_at_once_with_its_key_path(confdir: Path) -> None:
    """A file with a dozen mistakes yields one ConfigError naming each with its dotted path."""
    problems = _problems(confdir, BROKEN)
    expected = [
        'gateway.hostname: "mail" is not a fully qualified name',
        "gateway.listen[0]: port 99999 is outside 1..65535",
        'gateway.language: "de" is not a supported language',
        'gateway.max_message_size: "15 MX" is not a size (use e.g. "15 MB")',
        "dkim.private_key: ",
        'inbound.require: "spf" is not one of "aligned", "dkim", "none"',
        'moderation.expire_after: "1 week" is not a duration',
        "delivery.connections: 0 is outside 1..100",
        "delivery.bogus: unknown key",
        'agencies[0].lists[1]: no list with id "buurt-west"',
        'lists[0].coordinators[1]: "jan@" is not a valid e-mail address (there must be',
        'lists[1].id: "buurt+zuid" is not a valid id',
        "lists[1].coordinators: must not be empty",
        'lists[2].id: duplicate list id "buurt-noord"',
        'lists[2].replies_to[0]: "everyone" is not one of "origin", "coordinators"',
    ]
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)
    assert len(problems) == len(expected), problems
    assert "nope.pem" in next(p for p in problems if p.startswith("dkim.private_key"))


def test_unknown_keys_are_errors_at_every_level(confdir: Path) -> None:
    """A typo'd key anywhere (top level, section, agency, list) is refused, not ignored."""
    text = MINIMAL.replace("[dkim]", "lisen = []\n[dkim]") + (
        "redact = false\n[extra]\na = 1\n"
        '[[agencies]]\nid = "a"\nname = "A"\nsenders = ["@a.example"]\nlist = []\n'
    )
    assert sorted(_problems(confdir, text)) == [
        "agencies[0].list: unknown key",
        "extra: unknown key",
        "gateway.lisen: unknown key",
        "lists[0].redact: unknown key",
    ]


def test_wrong_types_are_named(confdir: Path) -> None:
    """A value of the wrong TOML type names the expected and the actual type."""
    text = MINIMAL.replace('hostname = "mail.bin.example.nl"', 'hostname = 5\nlisten = "x:25"')
    text += 'redact_contact_details = "no"\n[delivery]\nconnections = "8"\n'
    assert _problems(confdir, text) == [
        "gateway.hostname: expected a string, got an integer",
        "gateway.listen: expected a list, got a string",
        "delivery.connections: expected an integer, got a string",
        "lists[0].redact_contact_details: expected true or false, got a string",
    ]


def test_toml_syntax_error_is_one_problem_with_position(confdir: Path) -> None:
    """Broken TOML is reported as a single problem that says where."""
    problems = _problems(confdir, '[gateway]\ndomain = "bin.example.nl\n')
    assert len(problems) == 1
    assert problems[0].startswith("TOML syntax error:")
    assert "line 2" in problems[0]


def test_missing_required_sections_name_their_keys() -> None:
    """An empty file names every required key, including the [dkim] section and a list."""
    with pytest.raises(ConfigError) as caught:
        parse_config("", "<empty>")
    assert caught.value.source == "<empty>"
    assert caught.value.problems == [
        "gateway.domain: missing (required)",
        "gateway.hostname: missing (required)",
        "gateway.admin: missing (required)",
        "dkim.selector: missing (required)",
        "dkim.private_key: missing (required)",
        "lists: at least one [[lists]] entry is required",
    ]


def test_list_ids_must_not_collide_with_reserved_addresses(confdir: Path) -> None:
    """List ids may not shadow the intake, postmaster, abuse, moderatie, bounce or reactie."""
    lists = "".join(
        f'[[lists]]\nid = "{name}"\nname = "L"\ncoordinators = ["c@example.nl"]\n'
        for name in ("melding", "postmaster", "abuse", "moderatie", "bounce", "reactie")
    )
    text = MINIMAL.replace("hostname =", 'intake = "melding"\nhostname =') + lists
    problems = _problems(confdir, text)
    assert [p.split(":")[0] for p in problems] == [f"lists[{i}].id" for i in range(1, 7)]
    assert problems[0] == 'lists[1].id: "melding" is taken by the intake or a reserved address'


def test_intake_must_not_be_reserved(confdir: Path) -> None:
    """The intake local part cannot be postmaster (or another fixed address)."""
    text = MINIMAL.replace("hostname =", 'intake = "postmaster"\nhostname =')
    assert _problems(confdir, text) == ['gateway.intake: "postmaster" is a reserved address']


def test_own_domain_addresses_are_refused_as_loops(confdir: Path) -> None:
    """An admin or coordinator address in the gateway's own domain would loop: refused."""
    text = MINIMAL.replace("beheer@example.nl", "beheer@bin.example.nl").replace(
        "coordinator.noord@example.nl", "noord@BIN.example.nl"
    )
    assert _problems(confdir, text) == [
        'gateway.admin: "beheer@bin.example.nl" is in the gateway\'s own domain (a mail loop)',
        'lists[0].coordinators[0]: "noord@bin.example.nl" is in the gateway\'s own domain'
        " (a mail loop)",
    ]


def test_one_sender_belongs_to_one_agency(confdir: Path) -> None:
    """The same sender entry in two agencies is ambiguous and refused."""
    agencies = "".join(
        f'[[agencies]]\nid = "{i}"\nname = "{i}"\nsenders = ["@Politie.example"]\n'
        for i in ("a", "b")
    )
    assert _problems(confdir, MINIMAL + agencies) == [
        'agencies[1].senders[0]: "@politie.example" is already a sender of "a"'
    ]


def test_list_item_paths_count_invalid_items_too(confdir: Path) -> None:
    """A problem's [index] is the item's position in the file, also after an invalid item."""
    text = MINIMAL.replace(
        '["coordinator.noord@example.nl"]', '["jan@", "ok@example.nl", "x@bin.example.nl"]'
    )
    text += '[[agencies]]\nid = "a"\nname = "A"\nsenders = [1, "@bin.example.nl"]\n'
    assert _problems(confdir, text) == [
        'lists[0].coordinators[0]: "jan@" is not a valid e-mail address'
        " (there must be something after the @-sign)",
        'lists[0].coordinators[2]: "x@bin.example.nl" is in the gateway\'s own domain'
        " (a mail loop)",
        "agencies[0].senders[0]: expected a string, got an integer",
        'agencies[0].senders[1]: "@bin.example.nl" is in the gateway\'s own domain (a mail loop)',
    ]


def test_sections_and_lists_of_the_wrong_shape(confdir: Path) -> None:
    """A section given as a value, an empty lists array and a zero size are each one problem."""
    header = MINIMAL[: MINIMAL.index("[[lists]]")]
    text = "lists = []\nhttp = 5\n" + header.replace(
        "hostname =", "max_message_size = 0\nhostname ="
    )
    assert _problems(confdir, text) == [
        "gateway.max_message_size: must be larger than zero",
        "http: expected a table, got an integer",
        "lists: at least one [[lists]] entry is required",
    ]
    text = "gateway = 5\n" + MINIMAL.replace("[gateway]", "[old]")
    assert _problems(confdir, text)[0] == "gateway: expected a table, got an integer"


def test_delivery_credentials_come_in_pairs(confdir: Path) -> None:
    """A username needs a password file and a password file needs a username."""
    text = MINIMAL + '[delivery]\nusername = "bin"\n'
    assert _problems(confdir, text) == ["delivery.password_file: required when a username is set"]
    text = MINIMAL + '[delivery]\npassword_file = "secret.txt"\n'
    assert _problems(confdir, text) == ["delivery.username: required when a password_file is set"]


def test_moderation_reminder_must_come_before_expiry(confdir: Path) -> None:
    """A reminder after expiry could never be sent: refused."""
    text = MINIMAL + '[moderation]\nexpire_after = "1d"\nremind_after = "2d"\n'
    assert _problems(confdir, text) == [
        "moderation.remind_after: must be shorter than expire_after"
    ]


def test_names_with_control_characters_are_refused(confdir: Path) -> None:
    """Names end up in headers; a newline in one would inject a header."""
    text = MINIMAL.replace('name = "BIN Noord"', 'name = "BIN\\r\\nBcc: x@evil.example"')
    (problem,) = _problems(confdir, text)
    assert problem.startswith("lists[0].name: ") and "control characters" in problem


def test_relative_paths_resolve_against_the_config_directory(
    confdir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """data_dir, key files, password_file and maildir are relative to the file, not the cwd."""
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    config = _load(confdir, FULL.replace('maildir = "out"\n', ""))
    assert config.gateway.data_dir == confdir / "state"
    assert config.dkim.private_key == confdir / "dkim.pem"
    assert config.delivery.password_file == confdir / "secret.txt"
    assert config.delivery.maildir == confdir / "state" / "outbox"  # default under data_dir


def test_unreadable_files_are_problems_not_crashes(confdir: Path) -> None:
    """Missing or unreadable key, certificate and password files are each reported."""
    (confdir / "dkim.pem").unlink()
    (confdir / "secret.txt").unlink()
    (confdir / "tls" / "key.pem").unlink()
    (confdir / "tls" / "key.pem").mkdir()  # a directory where a file should be
    problems = _problems(confdir, FULL)
    assert [p.split(":")[0] for p in problems] == [
        "tls.private_key",
        "dkim.private_key",
        "delivery.password_file",
    ]
    assert problems[0].endswith("cannot be read (Is a directory)")
    assert "dkim.pem does not exist" in problems[1]
    assert problems[2].endswith('secret.txt" cannot be read (No such file or directory)')


def test_a_file_that_is_no_dkim_key_is_refused(confdir: Path) -> None:
    """check-config refuses a DKIM key file the signer could not use (here: a certificate)."""
    (confdir / "dkim.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n")
    (problem,) = _problems(confdir, MINIMAL)
    assert problem.startswith("dkim.private_key: ") and "dkim.pem" in problem


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that does not exist gives a ConfigError, not a traceback."""
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.toml")
    assert caught.value.problems == ["cannot be read (No such file or directory)"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15 MB", 15 * 1024**2),
        ("15MB", 15 * 1024**2),
        ("500 KB", 500 * 1024),
        ("1 GB", 1024**3),
        ("2 mib", 2 * 1024**2),
        ("1.5 MB", 1536 * 1024),
        ("900", 900),
        ("10 B", 10),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    """Sizes use binary units and a bare number is bytes."""
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["15 MX", "", "MB", "-1 MB", "15 TB", "1,5 MB"])
def test_parse_size_rejects_garbage(text: str) -> None:
    """Anything but a number with an optional known unit is refused with a hint."""
    with pytest.raises(ValueError, match=r'is not a size \(use e\.g\. "15 MB"\)'):
        parse_size(text)


def test_size_may_be_a_toml_integer(confdir: Path) -> None:
    """max_message_size = 1000 (a TOML integer) means 1000 bytes."""
    text = MINIMAL.replace("hostname =", "max_message_size = 1000\nhostname =")
    assert _load(confdir, text).gateway.max_message_size == 1000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("24h", timedelta(hours=24)),
        ("30m", timedelta(minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1d 12h", timedelta(days=1, hours=12)),
        ("1w", timedelta(weeks=1)),
        ("500ms", timedelta(milliseconds=500)),
        ("0.5s", timedelta(milliseconds=500)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    """Durations are number+unit pairs (w, d, h, m, s, ms), combinable."""
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "7 days", "7x", "-1d", "1d-2h"])
def test_parse_duration_rejects_garbage(text: str) -> None:
    """A bare number or an unknown unit is not a duration."""
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_durations_must_be_positive(confdir: Path) -> None:
    """A zero give-up time or DNS timeout is refused."""
    text = MINIMAL + '[delivery]\ngive_up_after = "0s"\n[inbound]\ndns_timeout = "0ms"\n'
    assert _problems(confdir, text) == [
        'inbound.dns_timeout: "0ms" must be longer than zero',
        'delivery.give_up_after: "0s" must be longer than zero',
    ]


def test_delivery_timeout_is_read_in_seconds(confdir: Path) -> None:
    """delivery.timeout bounds one copy at the smarthost: 60 s unless set, never zero."""
    assert _load(confdir, MINIMAL).delivery.timeout == 60.0
    assert _load(confdir, MINIMAL + '[delivery]\ntimeout = "1500ms"\n').delivery.timeout == 1.5
    assert _problems(confdir, MINIMAL + '[delivery]\ntimeout = "0s"\n') == [
        'delivery.timeout: "0s" must be longer than zero',
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:25", HostPort("127.0.0.1", 25)),
        ("[::1]:2525", HostPort("::1", 2525)),
        ("[::1]", HostPort("::1", 53)),
        ("::1", HostPort("::1", 53)),
        ("Mail.Example.NL:587", HostPort("mail.example.nl", 587)),
        ("localhost", HostPort("localhost", 53)),
    ],
)
def test_parse_host_port(text: str, expected: HostPort) -> None:
    """host:port accepts IPv4, bracketed or bare IPv6 and names; the port may default."""
    assert parse_host_port(text, 53) == expected


@pytest.mark.parametrize("text", ["", ":25", "host:", "[::1]:", "[1.2.3.4]:25", "a b:25", "x:0"])
def test_parse_host_port_rejects_garbage(text: str) -> None:
    """Empty hosts, empty or zero ports and bad names are refused."""
    with pytest.raises(ValueError):
        parse_host_port(text, 25)


def test_host_port_str_round_trips() -> None:
    """str(HostPort) is the text parse_host_port reads back (brackets for IPv6)."""
    for hp in (HostPort("::1", 25), HostPort("127.0.0.1", 2525), HostPort("mx.example", 25)):
        assert parse_host_port(str(hp), 1) == hp


def test_agency_allows_exact_domains_and_addresses(confdir: Path) -> None:
    """'@domain' covers that domain only (not subdomains); addresses match case-insensitively."""
    text = MINIMAL + (
        '[[agencies]]\nid = "politie"\nname = "Politie"\n'
        'senders = ["@politie.example", "Wijkagent@gemeente.example", "@münchen.de"]\n'
    )
    (agency,) = _load(confdir, text).agencies
    assert agency.senders == (
        "@politie.example",
        "Wijkagent@gemeente.example",
        "@xn--mnchen-3ya.de",
    )
    assert agency.allows("iemand@politie.example")
    assert agency.allows("Iemand@POLITIE.Example")
    assert agency.allows("wijkagent@Gemeente.example")
    assert agency.allows("a@MÜNCHEN.de") and agency.allows("a@xn--mnchen-3ya.de")
    assert not agency.allows("iemand@sub.politie.example")
    assert not agency.allows("iemand@politie.example.evil.example")
    assert not agency.allows("iemand@evilpolitie.example")
    assert not agency.allows("collega@gemeente.example")
    assert not agency.allows("politie.example")
    assert not agency.allows("")


def test_agency_for_prefers_an_exact_address_over_a_domain(confdir: Path) -> None:
    """An address listed by one agency wins over another agency's whole-domain entry."""
    text = MINIMAL + (
        '[[agencies]]\nid = "gemeente"\nname = "Gemeente"\nsenders = ["@gemeente.example"]\n'
        '[[agencies]]\nid = "politie"\nname = "Politie"\nsenders = ["wijkagent@gemeente.example"]\n'
    )
    config = _load(confdir, text)
    assert config.agency_for("WIJKAGENT@gemeente.example") is config.agencies[1]
    assert config.agency_for("ambtenaar@gemeente.example") is config.agencies[0]
    assert config.agency_for("someone@evil.example") is None


def test_is_coordinator_and_list_by_id(confdir: Path) -> None:
    """Coordinator checks ignore case; list_by_id finds lists by their exact id."""
    config = _load(confdir, MINIMAL)
    lst = config.list_by_id("buurt-noord")
    assert lst is not None and lst.is_coordinator("Coordinator.Noord@EXAMPLE.nl")
    assert not lst.is_coordinator("coordinator.zuid@example.nl")
    assert not lst.is_coordinator("coordinator.noord@example.nl.evil.example")
    assert config.list_by_id("buurt-zuid") is None


def test_warnings_name_each_risky_setting(confdir: Path, rsa_1024: bytes) -> None:
    """require=none, no TLS on a public listener, a short RSA key, unredacted replies,
    plain-text smarthost and an http unsubscribe URL each give a warning."""
    (confdir / "dkim.pem").write_bytes(rsa_1024)
    text = MINIMAL.replace("coordinators =", "redact_contact_details = false\ncoordinators =")
    text += (
        '[inbound]\nrequire = "none"\n'
        '[delivery]\nsmarthost = "smtp.provider.example"\nstarttls = "off"\n'
        '[http]\npublic_url = "http://bin.example.nl"\n'
    )
    warnings = _load(confdir, text).warnings()
    assert len(warnings) == 6, warnings
    for fragment in (
        'inbound.require = "none"',
        "no [tls] while listening on 0.0.0.0:25",
        "1024-bit RSA key",
        'lists "buurt-noord": redact_contact_details = false',
        'delivery.starttls = "off" to smtp.provider.example:25',
        "http.public_url is not https",
    ):
        assert any(fragment in w for w in warnings), (fragment, warnings)


def test_no_warnings_for_safe_settings(confdir: Path, rsa_2048: bytes) -> None:
    """Loopback listeners, a 2048-bit key and plain text only to a loopback host are fine."""
    (confdir / "dkim.pem").write_bytes(rsa_2048)
    text = MINIMAL.replace("hostname =", 'listen = ["127.0.0.1:2525", "[::1]:25"]\nhostname =')
    text += '[delivery]\nstarttls = "off"\n'
    assert _load(confdir, text).warnings() == []


def _example_with_temp_files(confdir: Path) -> str:
    return (
        (REPO / "config.example.toml")
        .read_text(encoding="utf-8")
        .replace("/etc/bin-gateway/dkim/bin1.pem", str(confdir / "dkim.pem"))
        .replace("/etc/bin-gateway/tls/fullchain.pem", str(confdir / "tls/cert.pem"))
        .replace("/etc/bin-gateway/tls/privkey.pem", str(confdir / "tls/key.pem"))
    )


def test_example_file_loads(confdir: Path) -> None:
    """config.example.toml is valid and carries the SPEC §6 example values."""
    config = _load(confdir, _example_with_temp_files(confdir))
    assert config.gateway.domain == "bin.example.nl"
    assert config.gateway.admin == "beheer@example.nl"
    assert config.agencies[0].lists == ("buurt-noord", "buurt-zuid")
    assert [lst.id for lst in config.lists] == ["buurt-noord", "buurt-zuid"]
    assert config.http is not None and config.http.public_url == "https://bin.example.nl"
    assert config.warnings() == []


def test_example_file_sets_every_key() -> None:
    """Each field of each settings dataclass appears in config.example.toml."""
    raw = tomllib.loads((REPO / "config.example.toml").read_text(encoding="utf-8"))
    sections = {
        "gateway": GatewaySettings,
        "tls": TlsSettings,
        "dkim": DkimSettings,
        "inbound": InboundSettings,
        "moderation": ModerationSettings,
        "delivery": DeliverySettings,
        "http": HttpSettings,
    }
    for name, cls in sections.items():
        assert set(raw[name]) == {f.name for f in dataclasses.fields(cls)}, name
    assert set(raw["agencies"][0]) == {f.name for f in dataclasses.fields(Agency)}
    assert set(raw["lists"][0]) == {f.name for f in dataclasses.fields(MailingList)}


def test_reply_settings_default_and_bad_values_are_reported_together(confdir: Path) -> None:
    """The F4 list keys default sensibly; wrong values are all reported with their keys."""
    lst = _load(confdir, MINIMAL).lists[0]
    assert (lst.review_replies, lst.acknowledge_replies, lst.pseudonyms,
            lst.replies_per_hour) == (False, True, Pseudonyms.PER_BULLETIN, 10)
    assert lst.reply_thread_lifetime == timedelta(days=90)
    text = MINIMAL.replace("coordinators =", (
        'review_replies = "ja"\npseudonyms = "soms"\nreplies_per_hour = 0\n'
        'reply_thread_lifetime = "0s"\ncoordinators ='))
    problems = _problems(confdir, text)
    for key in ("review_replies", "pseudonyms", "replies_per_hour", "reply_thread_lifetime"):
        assert any(p.startswith(f"lists[0].{key}") or f".{key}:" in p for p in problems), (
            key, problems)
