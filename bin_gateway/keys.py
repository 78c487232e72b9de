"""DKIM keys: generate, store, load, and describe them for DNS.

The private key lives in one PEM file (PKCS#8 or the traditional ``RSA PRIVATE KEY``
form). Every problem an admin can cause -- a missing file, a passphrase, an EC key, a
512-bit key -- becomes a ``ValueError`` whose text names the file and says what to do,
because ``serve`` and ``check-config`` print it as the reason the gateway will not start.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

__all__ = [
    "MAX_RSA_BITS",
    "MIN_RSA_BITS",
    "DkimPrivateKey",
    "dkim_txt_record",
    "generate_key",
    "key_bits",
    "load_private_key",
    "read_private_key",
    "write_private_key",
]

DkimPrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

# RFC 8301 §3.2: verifiers MUST NOT accept RSA keys under 1024 bits.
MIN_RSA_BITS = 1024
# Larger keys break the TXT record limits of many DNS providers and slow every copy.
MAX_RSA_BITS = 4096

_KEYGEN_HINT = "make a new one with `bin-gateway dkim keygen`"


def generate_key(kind: str = "rsa", bits: int = 2048) -> bytes:
    """Return a new unencrypted private key as PKCS#8 PEM (``bits`` applies to RSA only)."""
    key: DkimPrivateKey
    if kind == "rsa":
        if not MIN_RSA_BITS <= bits <= MAX_RSA_BITS:
            raise ValueError(
                f"RSA key size must be between {MIN_RSA_BITS} and {MAX_RSA_BITS} bits, "
                f"not {bits}; 2048 is the usual choice"
            )
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    elif kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unknown DKIM key kind {kind!r}: use 'rsa' or 'ed25519'")
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def write_private_key(path: Path, pem: bytes) -> None:
    """Write ``pem`` to a new file readable by its owner only; never replace a key.

    Overwriting would silently invalidate the key published in DNS, so an existing
    file raises ``FileExistsError``. The PEM is checked first so no junk is written.
    """
    load_private_key(pem, source="the key to write")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise FileExistsError(
            errno.EEXIST,
            "refusing to overwrite an existing DKIM key (its public half may be in DNS); "
            "choose another file name or selector",
            str(path),
        ) from None
    try:
        # The umask may have narrowed the mode further; make it exactly owner read/write.
        os.fchmod(fd, 0o600)
        view = memoryview(pem)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


def read_private_key(path: Path) -> DkimPrivateKey:
    """Read and parse the private key file at ``path``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(
            f"DKIM private key {path} does not exist: {_KEYGEN_HINT} or correct [dkim] private_key"
        ) from None
    except IsADirectoryError:
        raise ValueError(f"DKIM private key {path} is a directory, not a key file") from None
    except PermissionError:
        raise ValueError(
            f"cannot read DKIM private key {path}: permission denied "
            "(the file must be readable by the user the gateway runs as)"
        ) from None
    return load_private_key(data, source=str(path))


def load_private_key(data: bytes, *, source: str = "the DKIM key") -> DkimPrivateKey:
    """Parse a PEM private key (RSA >= 1024 bits or Ed25519), explaining any refusal."""
    key = _parse_key(data, source)
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < MIN_RSA_BITS:
        raise ValueError(
            f"{source} is a {key.key_size}-bit RSA key; receivers reject DKIM keys under "
            f"{MIN_RSA_BITS} bits (RFC 8301): {_KEYGEN_HINT} (2048 bits) and publish it"
        )
    return key


def _parse_key(data: bytes, source: str) -> DkimPrivateKey:
    if b"-----BEGIN" not in data:
        raw = _dkimpy_ed25519_seed(data)
        if raw is not None:
            return ed25519.Ed25519PrivateKey.from_private_bytes(raw)
        raise ValueError(
            f"{source} is not a PEM private key (expected a '-----BEGIN PRIVATE KEY-----' "
            f"or '-----BEGIN RSA PRIVATE KEY-----' block); {_KEYGEN_HINT}"
        )
    if b"PUBLIC KEY-----" in data and b"PRIVATE KEY-----" not in data:
        raise ValueError(f"{source} holds a public key; the gateway needs the private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ValueError(
            f"{source} is protected by a passphrase; the gateway needs it unencrypted "
            "(e.g. `openssl pkey -in OLD -out NEW`, then chmod 600 NEW)"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(
            f"{source} is not a readable PEM private key ({exc}); {_KEYGEN_HINT}"
        ) from None
    if isinstance(key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        return key
    raise ValueError(f"{source} is {_kind_of(key)}; DKIM signing needs an RSA or Ed25519 key")


def _kind_of(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "an elliptic-curve (ECDSA) key, which DKIM does not define"
    if isinstance(key, ed448.Ed448PrivateKey):
        return "an Ed448 key, which DKIM does not define"
    if isinstance(key, dsa.DSAPrivateKey):
        return "a DSA key, which DKIM does not define"
    return f"a key of an unusable type ({type(key).__name__})"


def _dkimpy_ed25519_seed(data: bytes) -> bytes | None:
    """Accept dkimpy's ``dknewkey --ktype ed25519`` file: the 32-byte seed in base64."""
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def _as_key(key: Path | bytes) -> DkimPrivateKey:
    if isinstance(key, bytes):
        return load_private_key(key)
    return read_private_key(key)


def dkim_txt_record(key: Path | bytes) -> str:
    """The TXT value to publish at ``<selector>._domainkey.<domain>`` for a private key.

    ``key`` is a key file's path or the PEM itself. RSA publishes the DER
    SubjectPublicKeyInfo; Ed25519 the raw 32-byte public key (RFC 8463 §4.2).
    """
    private = _as_key(key)
    if isinstance(private, ed25519.Ed25519PrivateKey):
        public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        kind = "ed25519"
    else:
        public = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        kind = "rsa"
    return f"v=DKIM1; k={kind}; p={base64.b64encode(public).decode('ascii')}"


def key_bits(pem: bytes) -> int | None:
    """The RSA modulus size in bits, or None for Ed25519 (whose strength is fixed).

    Unlike loading, a too-small key is reported, not refused, so checks can name its size.
    """
    key = _parse_key(pem, "the DKIM key")
    return key.key_size if isinstance(key, rsa.RSAPrivateKey) else None
