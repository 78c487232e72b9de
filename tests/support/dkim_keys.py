"""Test-only DKIM keys: make them, publish them in a test zone, sign messages with them.

Keys are made at run time (cached per process) so no private key lives in the repository.
RSA below 1024 bits is refused by `cryptography`'s generator, so the weak 512-bit key is
built from primes found here; dkimpy signs with it all the same, which is the point.
"""

from __future__ import annotations

import base64
import functools
import secrets
import time
from dataclasses import dataclass
from typing import Literal

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from tests.support.dns_server import Zone

KeyType = Literal["rsa", "ed25519"]


@dataclass(frozen=True, slots=True)
class DkimKey:
    kind: KeyType
    bits: int
    private: bytes  # what dkim.sign wants: PKCS#1 PEM (RSA) or base64 seed (Ed25519)
    public_b64: str  # the p= value

    @property
    def algorithm(self) -> bytes:
        return b"ed25519-sha256" if self.kind == "ed25519" else b"rsa-sha256"

    def record(self) -> str:
        """The TXT value to publish at <selector>._domainkey.<domain>."""
        return f"v=DKIM1; k={self.kind}; p={self.public_b64}"


def _rsa_from_private(key: rsa.RSAPrivateKey) -> DkimKey:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return DkimKey("rsa", key.key_size, pem, base64.b64encode(der).decode())


def _probable_prime(bits: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (3 << (bits - 2)) | 1  # top bits: n has full size
        if _miller_rabin(candidate):
            return candidate


def _miller_rabin(n: int, rounds: int = 32) -> bool:
    if n % 3 == 0 or n % 5 == 0 or n % 7 == 0:
        return False
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _weak_rsa(bits: int) -> rsa.RSAPrivateKey:
    e = 65537
    while True:
        p, q = _probable_prime(bits // 2), _probable_prime(bits // 2)
        phi = (p - 1) * (q - 1)
        if p != q and phi % e != 0:
            break
    d = pow(e, -1, phi)
    numbers = rsa.RSAPrivateNumbers(
        p,
        q,
        d,
        rsa.rsa_crt_dmp1(d, p),
        rsa.rsa_crt_dmq1(d, q),
        rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(e, p * q),
    )
    return numbers.private_key()


@functools.cache
def rsa_key(bits: int = 1024) -> DkimKey:
    """An RSA key of `bits` (cached: one per size per test run)."""
    if bits < 1024:
        return _rsa_from_private(_weak_rsa(bits))
    return _rsa_from_private(rsa.generate_private_key(public_exponent=65537, key_size=bits))


@functools.cache
def ed25519_key() -> DkimKey:
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return DkimKey("ed25519", 256, base64.b64encode(seed), base64.b64encode(public).decode())


def publish(zone: Zone, domain: str, selector: str, key: DkimKey) -> str:
    """Publish `key` at <selector>._domainkey.<domain>; returns the record name."""
    name = f"{selector}._domainkey.{domain}"
    zone.add_txt(name, key.record())
    return name


def sign(
    message: bytes,
    key: DkimKey,
    *,
    domain: str,
    selector: str = "s1",
    include_headers: list[str] | None = None,
    length: bool = False,
    algorithm: bytes | None = None,
    expires: int | None = None,
) -> bytes:
    """`message` with a DKIM-Signature prepended, made by dkimpy.

    `length` adds `l=`; `algorithm` overrides the key's (e.g. b"rsa-sha1"); `expires` adds
    `x=`. dkim.sign has no option for `x=` and refuses an `h=` without From, so those
    signatures are built field by field (RSA keys only).
    """
    headers = [h.encode() for h in include_headers or ["from", "to", "subject", "date"]]
    algo = algorithm or key.algorithm
    if expires is not None or b"from" not in headers:
        return _sign_by_hand(message, key, domain, selector, headers, algo, expires) + message
    signature: bytes = dkim.sign(
        message,
        selector.encode(),
        domain.encode(),
        key.private,
        include_headers=headers,
        length=length,
        signature_algorithm=algo,
    )
    return signature + message


def _sign_by_hand(
    message: bytes,
    key: DkimKey,
    domain: str,
    selector: str,
    headers: list[bytes],
    algorithm: bytes,
    expires: int | None,
) -> bytes:
    signer = dkim.DKIM(message, signature_algorithm=algorithm)
    policy = dkim.CanonicalizationPolicy.from_c_value(b"relaxed/simple")
    signer.hasher = dkim.HASH_ALGORITHMS[algorithm]
    body_hash = signer.hasher(policy.canonicalize_body(signer.body)).digest()
    now = int(time.time())
    fields = [
        (b"v", b"1"),
        (b"a", algorithm),
        (b"c", b"relaxed/simple"),
        (b"d", domain.encode()),
        (b"s", selector.encode()),
        (b"t", str(now if expires is None else min(now, expires - 1)).encode()),
        *([(b"x", str(expires).encode())] if expires is not None else []),
        (b"h", b" : ".join(headers)),
        (b"bh", base64.b64encode(body_hash)),
        (b"b", b"0" * 60),
    ]
    private = dkim.crypto.parse_pem_private_key(key.private)
    value: bytes = signer.gen_header(fields, headers, policy, b"DKIM-Signature", private)
    return b"DKIM-Signature: " + value


def plain_message(
    author: str = "Wijkagent Noord <wijkagent.noord@politie.example>",
    *,
    subject: str = "Inbraken in Noord",
    body: str = "Er is deze week twee keer ingebroken aan de Dorpsstraat.\r\n",
    extra_headers: str = "",
) -> bytes:
    """A small agency message with CRLF line ends, ready to sign."""
    return (
        f"From: {author}\r\n"
        "To: agency@buurtnet.example\r\n"
        f"Subject: {subject}\r\n"
        "Date: Mon, 04 Mar 2024 10:00:00 +0100\r\n"
        "Message-ID: <melding-1@politie.example>\r\n"
        f"{extra_headers}"
        "\r\n"
        f"{body}"
    ).encode()
