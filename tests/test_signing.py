"""Outbound DKIM signing: our Signer's signatures are checked by dkimpy, the reference."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path

import dkim
import dkim.canonicalization
import pytest
from aiosmtplib.protocol import normalize_message_line_endings
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given
from hypothesis import strategies as st

from bin_gateway.keys import dkim_txt_record, generate_key
from bin_gateway.signing import SIGNED_HEADERS, Signer

DOMAIN = "buurtnet.example"
SELECTOR = "bin1"
KEY_NAME = f"{SELECTOR}._domainkey.{DOMAIN}.".encode()
EMPTY_BODY_HASH = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="

# A 512-bit key (made with `openssl genrsa -traditional 512`): too weak to sign with.
WEAK_RSA_PEM = b"""-----BEGIN RSA PRIVATE KEY-----
MIIBOwIBAAJBAMN5uQdLzlvgBd2/71HnVnDGn2+AOcrXKB35rDC+o71umMndu6Dv
hl3UgtKWkH2//OKNDuc7cOskhcQ+MMGZMgMCAwEAAQJAdzGP660Dxe4SZacVrSGd
CeNzcLAFjXQo2C5YGtkESwtGN3Xssgv7UZn7e42tvL6B7tV3FjF/dStwkVhs/QQ+
cQIhAOnJZdwa6g/Q+3qbvuSwgkSjzBrRUB5KO9u2kEm5U8SnAiEA1gxyXOdTUFwa
GSEXv9MOZme7HJMDdo/6bHKOVMWqZ0UCIQDaurc2S2gaDCh8+iKLzCjVF3rqzFLt
Q/7k/dXZZC9fmQIgOLmjtSs40RsXb4FtodB1CH6E/9WWHV2aqBLT1XNs7WECIQDn
Aukm5d0q8ZL7xxAT7jkwdruMWBO1yS4R2lZswzBxFw==
-----END RSA PRIVATE KEY-----
"""

HEADERS: list[tuple[str, str]] = [
    ("From", ' "=?utf-8?q?Wijkagent_Noord_via_Buurt_Noord?=" <buurt-noord@buurtnet.example>'),
    ("To", " =?utf-8?b?SsO2cmc=?= <jorg@example.org>"),
    ("Subject", " =?utf-8?q?Inbraken_in_de_Bloemenbuurt_=E2=80=93?=\r\n =?utf-8?q?_let_op?="),
    ("Date", " Mon, 15 Jan 2024 10:00:00 +0100"),
    ("Message-ID", " <b1.m42@buurtnet.example>"),
    ("X-Mailer-Note", " not signed"),
    ("Reply-To", "   reply+tok123@buurtnet.example   "),
    ("List-Id", ' "Buurt Noord" <buurt-noord.buurtnet.example>'),
    (
        "List-Unsubscribe",
        " <mailto:buurt-noord+afmelden@buurtnet.example>,\r\n\t<https://x.example/u>",
    ),
    ("List-Unsubscribe-Post", " List-Unsubscribe=One-Click"),
    ("MIME-Version", " 1.0"),
    ("Content-Type", ' text/plain;\r\n\tcharset="utf-8"'),
    ("Content-Transfer-Encoding", " 8bit"),
]
BODY = b"Beste buurtbewoner,\r\n\r\nEr is ingebroken aan de Tulpstraat.  Let  op!\t\r\n"

# For hypothesis tests, which cannot take function-scoped fixtures (RSA: dkimpy verifies
# it without PyNaCl; 1024 bits keeps key generation quick).
_SHARED_PEM = generate_key("rsa", 1024)
_SHARED_SIGNER = Signer.from_pem(domain=DOMAIN, selector=SELECTOR, pem=_SHARED_PEM)
_SHARED_TXT = dkim_txt_record(_SHARED_PEM).encode()

DnsFunc = Callable[..., bytes | None]


@pytest.fixture(scope="module")
def rsa_pem() -> bytes:
    return generate_key("rsa", 2048)


@pytest.fixture(scope="module")
def ed_pem() -> bytes:
    return generate_key("ed25519")


@pytest.fixture(scope="module", params=["rsa", "ed25519"])
def pem(request: pytest.FixtureRequest, rsa_pem: bytes, ed_pem: bytes) -> bytes:
    if request.param == "ed25519":
        pytest.importorskip("nacl", reason="dkimpy needs PyNaCl to verify ed25519-sha256")
    return rsa_pem if request.param == "rsa" else ed_pem


@pytest.fixture(scope="module")
def signer(pem: bytes) -> Signer:
    return Signer.from_pem(domain=DOMAIN, selector=SELECTOR, pem=pem)


@pytest.fixture(scope="module")
def dnsfunc(pem: bytes) -> DnsFunc:
    record = dkim_txt_record(pem).encode()

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == KEY_NAME else None

    return lookup


def assemble(headers: list[tuple[str, str]], body: bytes) -> bytes:
    head = "".join(f"{name}:{value}\r\n" for name, value in headers)
    return head.encode() + b"\r\n" + body


def signed(signer: Signer, headers: list[tuple[str, str]], body: bytes = BODY) -> bytes:
    name, value = signer.sign(headers, signer.body_hash(body), timestamp=1_705_309_200)
    return assemble([(name, " " + value), *headers], body)


def sig_tags(message: bytes) -> dict[bytes, bytes]:
    parsed = dkim.DKIM(message)
    header = next(v for n, v in parsed.headers if n.lower() == b"dkim-signature")
    return {k: v for k, v in dkim.util.parse_tag_value(header).items()}


def test_signature_verifies_with_dkimpy(signer: Signer, dnsfunc: DnsFunc) -> None:
    """A copy signed with folded headers, encoded words and odd whitespace verifies."""
    assert dkim.verify(signed(signer, HEADERS), dnsfunc=dnsfunc)


def test_algorithm_matches_key(signer: Signer, pem: bytes) -> None:
    """The a= tag and the algorithm property follow the key type."""
    expected = "ed25519-sha256" if b"ed25519" in dkim_txt_record(pem).encode() else "rsa-sha256"
    assert signer.algorithm == expected
    assert sig_tags(signed(signer, HEADERS))[b"a"] == expected.encode()


def test_utf8_body_and_headers_verify(signer: Signer, dnsfunc: DnsFunc) -> None:
    """An 8-bit UTF-8 body and a raw UTF-8 Subject (SMTPUTF8) verify."""
    headers = [*HEADERS[:2], ("Subject", " Inbraak in de Brink – café ‘t Hoekje"), *HEADERS[3:]]
    body = "Geachte heer Jörg,\r\n\r\nCafé ‘t Hoekje — € 5\r\n".encode()
    assert dkim.verify(signed(signer, headers, body), dnsfunc=dnsfunc)


def test_trailing_blank_lines_do_not_matter(signer: Signer, dnsfunc: DnsFunc) -> None:
    """Relaxed body canonicalisation ignores empty lines and WSP at the end."""
    assert signer.body_hash(BODY + b"\r\n\r\n \r\n") == signer.body_hash(BODY)
    message = signed(signer, HEADERS, BODY + b"\r\n\r\n")
    assert dkim.verify(message + b"\r\n\r\n", dnsfunc=dnsfunc)
    assert dkim.verify(message.removesuffix(b"\r\n\r\n"), dnsfunc=dnsfunc)


def test_empty_body_hash(signer: Signer) -> None:
    """An empty body, or one of blank lines only, has the RFC 6376 empty-body hash."""
    assert signer.body_hash(b"") == EMPTY_BODY_HASH
    assert signer.body_hash(b"\r\n\r\n") == EMPTY_BODY_HASH


def test_bare_lf_body_hashes_as_transmitted(signer: Signer) -> None:
    """Bare LF/CR become CRLF on the wire, so they hash like CRLF; a missing final CRLF too."""
    assert signer.body_hash(b"a\nb\rc\r\nd") == signer.body_hash(b"a\r\nb\r\nc\r\nd\r\n")


@given(st.lists(st.text(alphabet="ab \t\u00e9", max_size=12).map(lambda s: s.encode()), max_size=8))
def test_body_hash_matches_dkimpy(lines: list[bytes]) -> None:
    """For any CRLF body, our bh= equals dkimpy's relaxed body hash."""
    body = b"".join(line + b"\r\n" for line in lines)
    assert _SHARED_SIGNER.body_hash(body) == _dkimpy_body_hash(body)


@given(st.text(alphabet="a \t\r\n\u00e9", max_size=40).map(lambda s: s.encode()))
def test_body_hash_matches_what_aiosmtplib_sends(body: bytes) -> None:
    """Any body, even with bare CR/LF, hashes as dkimpy hashes aiosmtplib's wire form."""
    wire = normalize_message_line_endings(body)
    assert _SHARED_SIGNER.body_hash(body) == _dkimpy_body_hash(wire)


_FWS_TEXT = st.lists(
    st.sampled_from(["a", "b", " ", "\t", "\r\n ", "\r\n\t", "=?utf-8?q?=C3=A9?="])
)


@given(subject=_FWS_TEXT.map("".join), to=_FWS_TEXT.map("".join))
def test_any_header_whitespace_verifies(subject: str, to: str) -> None:
    """Whatever WSP and folding the values hold, dkimpy canonicalises them as we do."""
    headers = [("From", " a@buurtnet.example"), ("To", to), ("Subject", subject)]
    message = signed(_SHARED_SIGNER, headers)
    assert dkim.verify(message, dnsfunc=lambda name, timeout=5: _SHARED_TXT)


def _dkimpy_body_hash(body: bytes) -> str:
    canon = dkim.canonicalization.Relaxed.canonicalize_body(body)
    return base64.b64encode(hashlib.sha256(canon).digest()).decode()


def test_prepended_from_breaks_signature(signer: Signer, dnsfunc: DnsFunc) -> None:
    """From is over-signed: a From added above the signed one makes verification fail."""
    message = signed(signer, HEADERS)
    assert sig_tags(message)[b"h"].lower().split(b":").count(b"from") == 2
    spoofed = message.replace(
        b"\r\nFrom:", b"\r\nFrom: <wijkagent.noord@politie.example>\r\nFrom:", 1
    )
    assert not dkim.verify(spoofed, dnsfunc=dnsfunc)
    assert not dkim.verify(b"From: evil@evil.example\r\n" + message, dnsfunc=dnsfunc)


def test_altered_body_fails(signer: Signer, dnsfunc: DnsFunc) -> None:
    """Changing one word of the body breaks the signature."""
    message = signed(signer, HEADERS).replace(b"Tulpstraat", b"Roosstraat")
    assert not dkim.verify(message, dnsfunc=dnsfunc)


def test_altered_signed_header_fails(signer: Signer, dnsfunc: DnsFunc) -> None:
    """Changing a signed header (Reply-To) breaks the signature."""
    message = signed(signer, HEADERS).replace(b"reply+tok123@", b"evil@", 1)
    assert not dkim.verify(message, dnsfunc=dnsfunc)


def test_whitespace_changes_in_headers_survive(signer: Signer, dnsfunc: DnsFunc) -> None:
    """Relaxed header canonicalisation: a relay refolding a header keeps the signature."""
    message = signed(signer, HEADERS).replace(b"Mon, 15 Jan", b"Mon,\r\n   15   Jan", 1)
    assert dkim.verify(message, dnsfunc=dnsfunc)


def test_h_lists_only_present_signed_headers(signer: Signer) -> None:
    """h= holds the present SIGNED_HEADERS (none else), a second To twice, From once extra."""
    headers = [h for h in HEADERS if h[0] not in {"Reply-To", "List-Id"}]
    headers.append(("To", " second@example.org"))
    names = "".join(sig_tags(signed(signer, headers))[b"h"].decode().split()).split(":")
    expected = [n for n in SIGNED_HEADERS if n not in {"Reply-To", "List-Id"}]
    expected.insert(expected.index("To"), "To")
    assert names == [*expected, "From"]


def test_two_instances_verify(signer: Signer, dnsfunc: DnsFunc) -> None:
    """A header present twice is signed bottom-up, as verifiers select it."""
    headers = [*HEADERS, ("To", " second@example.org")]
    message = signed(signer, headers)
    assert dkim.verify(message, dnsfunc=dnsfunc)
    swapped = message.replace(b"second@example.org", b"other@example.org")
    assert not dkim.verify(swapped, dnsfunc=dnsfunc)


def test_tags(signer: Signer) -> None:
    """d=, s=, c= and t= carry the domain, selector, relaxed/relaxed and the timestamp."""
    tags = sig_tags(signed(signer, HEADERS))
    assert (tags[b"d"], tags[b"s"], tags[b"c"]) == (
        b"buurtnet.example",
        b"bin1",
        b"relaxed/relaxed",
    )
    assert tags[b"t"] == b"1705309200"
    assert tags[b"bh"] == signer.body_hash(BODY).encode()


def test_signature_lines_are_short(signer: Signer) -> None:
    """Every line of the DKIM-Signature header is under 78 characters."""
    name, value = signer.sign(HEADERS, signer.body_hash(BODY), timestamp=1)
    lines = f"{name}: {value}".split("\r\n")
    assert len(lines) > 1
    assert all(len(line) < 78 for line in lines), lines
    assert all(line.startswith(" ") for line in lines[1:])


def test_signing_is_deterministic(signer: Signer) -> None:
    """With a fixed timestamp, re-signing after a crash yields the same header."""
    body_hash = signer.body_hash(BODY)
    assert signer.sign(HEADERS, body_hash, timestamp=7) == signer.sign(
        HEADERS, body_hash, timestamp=7
    )


def test_sign_message_round_trip(signer: Signer, dnsfunc: DnsFunc) -> None:
    """sign_message prepends one DKIM-Signature and leaves the message byte-identical."""
    original = assemble(HEADERS, BODY)
    out = signer.sign_message(original)
    assert out.startswith(b"DKIM-Signature: v=1;")
    assert out.endswith(original)
    assert out.count(b"DKIM-Signature") == 1
    assert dkim.verify(out, dnsfunc=dnsfunc)


def test_sign_message_normalises_line_endings(signer: Signer, dnsfunc: DnsFunc) -> None:
    """A message with bare LF comes out CRLF (as sent) and verifies."""
    out = signer.sign_message(assemble(HEADERS, BODY).replace(b"\r\n", b"\n"))
    assert b"\n" not in out.replace(b"\r\n", b"")
    assert dkim.verify(out, dnsfunc=dnsfunc)


def test_sign_message_rejects_malformed_header(signer: Signer) -> None:
    """A header line without a colon is refused rather than signed."""
    with pytest.raises(ValueError, match="malformed header"):
        signer.sign_message(b"From: a@b.example\r\nnot a header\r\n\r\nbody\r\n")


def test_missing_from_is_refused(signer: Signer) -> None:
    """A message without From cannot be signed (RFC 6376 §5.4)."""
    with pytest.raises(ValueError, match="without a From"):
        signer.sign([("Subject", " x")], EMPTY_BODY_HASH)


def test_header_injection_is_refused(signer: Signer) -> None:
    """A value with a line break not followed by WSP (a smuggled header) is refused."""
    headers = [*HEADERS, ("Subject", " hi\r\nBcc: all@example.org")]
    with pytest.raises(ValueError, match="line break"):
        signer.sign(headers, EMPTY_BODY_HASH)


@pytest.mark.parametrize("bad", ["bin1; d=evil.example", "bin 1", "", "-x"])
def test_bad_selector_is_refused(rsa_pem: bytes, bad: str) -> None:
    """A selector that would inject tags or is no DNS name is refused at load."""
    with pytest.raises(ValueError, match="selector"):
        Signer.from_pem(domain=DOMAIN, selector=bad, pem=rsa_pem)


def test_load_traditional_and_pkcs8_rsa(tmp_path: Path, rsa_pem: bytes) -> None:
    """Both PEM forms of one RSA key load and make the same signature."""
    key = serialization.load_pem_private_key(rsa_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    traditional = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert traditional.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    (tmp_path / "a.pem").write_bytes(rsa_pem)
    (tmp_path / "b.pem").write_bytes(traditional)
    a = Signer.load(domain=DOMAIN, selector=SELECTOR, key_path=tmp_path / "a.pem")
    b = Signer.load(domain=DOMAIN, selector=SELECTOR, key_path=tmp_path / "b.pem")
    assert a.sign(HEADERS, EMPTY_BODY_HASH, timestamp=1) == b.sign(
        HEADERS, EMPTY_BODY_HASH, timestamp=1
    )


def _ec_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _encrypted_pem() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"geheim"),
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        (b"DIR", "is a directory"),
        (b"hello, not a key\n", "not a PEM private key"),
        (WEAK_RSA_PEM, "512-bit RSA key"),
        (b"ENCRYPTED", "passphrase"),
        (b"EC", "elliptic-curve"),
        (b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n", "public key"),
    ],
)
def test_load_errors_are_readable(tmp_path: Path, content: bytes | None, expected: str) -> None:
    """Each wrong key file gives a ValueError that names the file and the problem."""
    path = tmp_path / "dkim.pem"
    if content == b"ENCRYPTED":
        content = _encrypted_pem()
    elif content == b"EC":
        content = _ec_pem()
    elif content == b"DIR":
        path.mkdir()
        content = None
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=expected) as caught:
        Signer.load(domain=DOMAIN, selector=SELECTOR, key_path=path)
    assert str(path) in str(caught.value)
