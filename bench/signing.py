"""Benchmark: DKIM-signing one bulletin's copies, our Signer against dkimpy.

Run by hand: ``.venv/bin/python bench/signing.py [--count 2000]``. Each copy differs in
To and Message-ID, as a member's copy does; the body (about 4 KB) is the same. Rows:

* ``Signer.sign``         body hash computed once, headers signed per copy (the outbox path)
* ``Signer.sign_message`` whole message per copy (parse + body hash + sign)
* ``dkim.sign``           dkimpy 1.1.8 on the whole message, relaxed/relaxed: the baseline

The first copy of every row is checked with ``dkim.verify`` before timing counts.
"""

from __future__ import annotations

import argparse
import base64
import time
from collections.abc import Callable

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from bin_gateway.keys import dkim_txt_record, generate_key, load_private_key
from bin_gateway.signing import SIGNED_HEADERS, Signer

DOMAIN = "buurtnet.example"
SELECTOR = "bench"
BODY = (
    "Beste buurtbewoner,\r\n\r\n"
    + "De politie meldt een reeks inbraken in de Bloemenbuurt. Let op uw buren.\r\n" * 50
    + "\r\n-- \r\nBuurt Informatie Netwerk Noord\r\n"
).encode()


def member_headers(i: int) -> list[tuple[str, str]]:
    return [
        ("From", ' "Wijkagent Noord via Buurt Noord" <buurt-noord@buurtnet.example>'),
        ("To", f" lid{i}@example.org"),
        ("Subject", " =?utf-8?q?Inbraken_in_de_Bloemenbuurt_=E2=80=93_let_op?="),
        ("Date", " Mon, 15 Jan 2024 10:00:00 +0100"),
        ("Message-ID", f" <b1.m{i}@buurtnet.example>"),
        ("Reply-To", f" reply+{i:08x}@buurtnet.example"),
        ("List-Id", ' "Buurt Noord" <buurt-noord.buurtnet.example>'),
        ("List-Unsubscribe", f" <mailto:buurt-noord+afmelden-{i}@buurtnet.example>"),
        ("List-Unsubscribe-Post", " List-Unsubscribe=One-Click"),
        ("MIME-Version", " 1.0"),
        ("Content-Type", ' text/plain; charset="utf-8"'),
        ("Content-Transfer-Encoding", " 8bit"),
    ]


def message(i: int) -> bytes:
    head = "".join(f"{name}:{value}\r\n" for name, value in member_headers(i))
    return head.encode() + b"\r\n" + BODY


def timed(count: int, make: Callable[[int], bytes]) -> float:
    """ms per message for ``count`` calls of ``make``."""
    start = time.perf_counter()
    for i in range(count):
        make(i)
    return (time.perf_counter() - start) * 1000 / count


def run(kind: str, count: int) -> None:
    pem = generate_key(kind)
    record = dkim_txt_record(pem).encode()
    signer = Signer.from_pem(domain=DOMAIN, selector=SELECTOR, pem=pem)
    dkimpy_key, algorithm = _dkimpy_key(pem)
    include = [name.encode() for name in SIGNED_HEADERS] + [b"From"]

    def ours_shared(i: int, body_hash: str = signer.body_hash(BODY)) -> bytes:
        name, value = signer.sign(member_headers(i), body_hash)
        return f"{name}: {value}\r\n".encode() + message(i)

    def ours_whole(i: int) -> bytes:
        return signer.sign_message(message(i))

    def baseline(i: int) -> bytes:
        msg = message(i)
        signature: bytes = dkim.sign(
            msg,
            SELECTOR.encode(),
            DOMAIN.encode(),
            dkimpy_key,
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=algorithm,
            include_headers=include,
        )
        return signature + msg

    rows = [("Signer.sign", ours_shared), ("Signer.sign_message", ours_whole)]
    rows.append(("dkim.sign (dkimpy)", baseline))
    results = {}
    for label, make in rows:
        first = make(0)
        if not dkim.verify(first, dnsfunc=lambda name, timeout=5: record):
            raise SystemExit(f"{kind} {label}: first copy does not verify")
        results[label] = timed(count, make)
    base = results["dkim.sign (dkimpy)"]
    print(f"\n{kind} ({signer.algorithm}), {count} copies, {len(BODY)}-byte body")
    for label, ms in results.items():
        print(f"  {label:22} {ms:8.3f} ms/message  {base / ms:6.1f}x dkimpy")


def _dkimpy_key(pem: bytes) -> tuple[bytes, bytes]:
    """dkimpy wants RSA as traditional PEM and Ed25519 as the base64 seed."""
    key = load_private_key(pem)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return base64.b64encode(seed), b"ed25519-sha256"
    traditional = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return traditional, b"rsa-sha256"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=2000, help="copies per row (default 2000)")
    parser.add_argument("--kind", choices=["rsa", "ed25519", "both"], default="both")
    args = parser.parse_args()
    for kind in ("rsa", "ed25519") if args.kind == "both" else (args.kind,):
        run(kind, args.count)


if __name__ == "__main__":
    main()
