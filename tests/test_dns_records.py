"""The DNS records the gateway tells its admin to publish, and their zone-file text."""

from __future__ import annotations

import dns.rdatatype
import dns.zone
import pytest
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.TXT import TXT

from bin_gateway.dns_records import DnsRecord, dns_records, format_zone

DKIM_TXT = "v=DKIM1; k=rsa; p=" + "A" * 392  # the length of an RSA-2048 record


def records(**overrides: str | None) -> list[DnsRecord]:
    args: dict[str, str | None] = {
        "domain": "buurtnet.example",
        "hostname": "mx.buurtnet.example",
        "selector": "bin1",
        "dkim_txt": DKIM_TXT,
        "admin": "beheer@buurtnet.example",
    }
    args.update(overrides)
    return dns_records(**args)  # type: ignore[arg-type]


def test_expected_records() -> None:
    """MX, SPF, DKIM and DMARC carry the names and values the spec asks for."""
    got = [(r.name, r.type, r.value) for r in records()]
    assert got == [
        ("buurtnet.example", "MX", "10 mx.buurtnet.example"),
        ("buurtnet.example", "TXT", "v=spf1 mx -all"),
        ("bin1._domainkey.buurtnet.example", "TXT", DKIM_TXT),
        (
            "_dmarc.buurtnet.example",
            "TXT",
            "v=DMARC1; p=reject; adkim=s; aspf=r; rua=mailto:beheer@buurtnet.example",
        ),
    ]


def test_spf_comment_mentions_smarthost() -> None:
    """The SPF comment tells where to add the smarthost's addresses."""
    spf = next(r for r in records() if r.value.startswith("v=spf1"))
    assert "smarthost" in spf.comment
    assert "before -all" in spf.comment


@pytest.mark.parametrize(("ip", "kind"), [("192.0.2.7", "A"), ("2001:db8::0:7", "AAAA")])
def test_server_ip_adds_address_record(ip: str, kind: str) -> None:
    """With server_ip, the MX host gets an A or AAAA record (and a PTR reminder)."""
    address = next(r for r in records(server_ip=ip) if r.type == kind)
    assert address.name == "mx.buurtnet.example"
    assert address.value == ip.replace("::0:", "::")
    assert "PTR" in address.comment


def test_names_are_normalised() -> None:
    """Upper case and a final dot in the inputs give lower-case names without the dot."""
    got = records(domain="BuurtNet.Example.", hostname="MX.buurtnet.example.", selector="Bin1")
    assert [r.name for r in got][2] == "bin1._domainkey.buurtnet.example"
    assert got[0].value == "10 mx.buurtnet.example"


def test_foreign_report_address_explains_authorisation() -> None:
    """A rua= address in another domain comes with the record that domain must publish."""
    dmarc = records(admin="beheer@example.org")[-1]
    assert "buurtnet.example._report._dmarc.example.org" in dmarc.comment
    assert "_report._dmarc" not in records()[-1].comment


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("admin", "beheer@x.example; p=none", "rua="),
        ("admin", "beheer", "rua="),
        ("domain", "buurt net.example", "domain"),
        ("selector", "bin1;x", "selector"),
        ("dkim_txt", "p=abc", "v=DKIM1"),
        ("server_ip", "mx.example", "server_ip"),
    ],
)
def test_bad_input_is_refused(field: str, value: str, expected: str) -> None:
    """Inputs that would produce a broken or misleading record raise ValueError."""
    with pytest.raises(ValueError, match=expected):
        records(**{field: value})


def test_zone_text_parses_and_round_trips() -> None:
    """format_zone's output is a valid zone file whose records equal the values given."""
    given = records(server_ip="192.0.2.7")
    text = format_zone(given)
    zone = dns.zone.from_text(
        "$ORIGIN buurtnet.example.\n$TTL 3600\n"
        "@ IN SOA ns.buurtnet.example. hostmaster.buurtnet.example. 1 7200 900 1209600 3600\n"
        "@ IN NS ns.buurtnet.example.\n" + text,
        relativize=False,
    )
    txt = set()
    for name, _ttl, rdata in zone.iterate_rdatas(dns.rdatatype.TXT):
        assert isinstance(rdata, TXT)
        txt.add((str(name).rstrip("."), b"".join(rdata.strings).decode()))
    assert txt == {(r.name, r.value) for r in given if r.type == "TXT"}
    mx = [rdata for _name, _ttl, rdata in zone.iterate_rdatas(dns.rdatatype.MX)]
    assert all(isinstance(m, MX) for m in mx)
    assert [(m.preference, str(m.exchange)) for m in mx if isinstance(m, MX)] == [
        (10, "mx.buurtnet.example.")
    ]


def test_long_txt_split_into_255_byte_strings() -> None:
    """A DKIM value over 255 bytes is printed as several quoted strings of <= 255 bytes."""
    text = format_zone([r for r in records() if "_domainkey" in r.name])
    strings = text.split("(", 1)[1].split('"')[1::2]
    assert len(strings) == 2
    assert all(len(s) <= 255 for s in strings)
    assert "".join(strings) == DKIM_TXT


def test_comment_above_each_record() -> None:
    """Each record is preceded by its whole comment as ';' lines, then its own line."""
    given = records()
    blocks = format_zone(given).strip().split("\n\n")
    assert len(blocks) == len(given)
    for record, block in zip(given, blocks, strict=True):
        lines = block.splitlines()
        comment = [line for line in lines if line.startswith(";")]
        assert comment and lines[: len(comment)] == comment
        assert " ".join(line[2:] for line in comment) == record.comment
        assert lines[len(comment)].startswith(f"{record.name}.\tIN\t{record.type}\t")
