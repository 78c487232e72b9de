"""DKIM key generation, storage, and the public-key TXT record."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from bin_gateway.keys import dkim_txt_record, generate_key, key_bits, write_private_key
from bin_gateway.signing import Signer

# A 512-bit key (made with `openssl genrsa -traditional 512`).
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


@pytest.fixture(scope="module")
def rsa_pem() -> bytes:
    return generate_key("rsa", 2048)


def test_generated_rsa_key_is_pkcs8_2048(rsa_pem: bytes) -> None:
    """generate_key() makes an unencrypted PKCS#8 RSA-2048 PEM."""
    assert rsa_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(rsa_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key_bits(rsa_pem) == 2048


def test_generated_ed25519_key() -> None:
    """generate_key('ed25519') makes a PKCS#8 Ed25519 PEM; it has no bit size to report."""
    pem = generate_key("ed25519")
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert isinstance(serialization.load_pem_private_key(pem, None), ed25519.Ed25519PrivateKey)
    assert key_bits(pem) is None


def test_key_bits_reports_weak_key() -> None:
    """key_bits names a too-small key's size instead of refusing it."""
    assert key_bits(WEAK_RSA_PEM) == 512


@pytest.mark.parametrize(
    ("kind", "bits", "expected"),
    [("rsa", 512, "between 1024 and 4096"), ("rsa", 16384, "between"), ("dsa", 2048, "unknown")],
)
def test_generate_refuses_bad_parameters(kind: str, bits: int, expected: str) -> None:
    """Weak or huge RSA sizes and unknown kinds are refused with the allowed values."""
    with pytest.raises(ValueError, match=expected):
        generate_key(kind, bits)


def test_write_is_owner_only(tmp_path: Path, rsa_pem: bytes) -> None:
    """The key file is created with mode 0600, whatever the umask, holding the PEM."""
    path = tmp_path / "bin1.pem"
    old = os.umask(0)
    try:
        write_private_key(path, rsa_pem)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == rsa_pem


def test_write_refuses_to_overwrite(tmp_path: Path, rsa_pem: bytes) -> None:
    """An existing key (whose public half may be in DNS) is never replaced."""
    path = tmp_path / "bin1.pem"
    path.write_bytes(b"the old key")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        write_private_key(path, rsa_pem)
    assert path.read_bytes() == b"the old key"


def test_write_refuses_junk(tmp_path: Path) -> None:
    """Bytes that are not a usable key are not written at all."""
    path = tmp_path / "bin1.pem"
    with pytest.raises(ValueError, match="not a PEM private key"):
        write_private_key(path, b"garbage")
    assert not path.exists()


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_written_key_signs_and_verifies(tmp_path: Path, kind: str) -> None:
    """generate -> write -> Signer.load -> sign verifies with dkimpy against the TXT record."""
    if kind == "ed25519":
        pytest.importorskip("nacl", reason="dkimpy needs PyNaCl to verify ed25519-sha256")
    path = tmp_path / "bin1.pem"
    write_private_key(path, generate_key(kind, 1024))
    signer = Signer.load(domain="buurtnet.example", selector="bin1", key_path=path)
    record = dkim_txt_record(path).encode()
    message = signer.sign_message(b"From: a@buurtnet.example\r\nSubject: x\r\n\r\nHallo\r\n")
    assert dkim.verify(message, dnsfunc=lambda name, timeout=5: record)


def test_rsa_txt_record(rsa_pem: bytes, tmp_path: Path) -> None:
    """The RSA record is v=DKIM1; k=rsa; p=<DER SubjectPublicKeyInfo>, same from file or PEM."""
    record = dkim_txt_record(rsa_pem)
    prefix = "v=DKIM1; k=rsa; p="
    assert record.startswith(prefix)
    key = serialization.load_pem_private_key(rsa_pem, None)
    public = serialization.load_der_public_key(base64.b64decode(record[len(prefix) :]))
    assert public.public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    (tmp_path / "k.pem").write_bytes(rsa_pem)
    assert dkim_txt_record(tmp_path / "k.pem") == record


def test_ed25519_txt_record() -> None:
    """The Ed25519 record carries the raw 32-byte public key (RFC 8463), not a DER blob."""
    pem = generate_key("ed25519")
    record = dkim_txt_record(pem)
    prefix = "v=DKIM1; k=ed25519; p="
    assert record.startswith(prefix)
    raw = base64.b64decode(record[len(prefix) :])
    key = serialization.load_pem_private_key(pem, None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    expected = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert raw == expected


def test_dkimpy_ed25519_key_file_loads(tmp_path: Path) -> None:
    """A key made by dkimpy's dknewkey (base64 Ed25519 seed, no PEM) is accepted."""
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    path = tmp_path / "dknewkey.key"
    path.write_bytes(base64.b64encode(seed) + b"\n")
    signer = Signer.load(domain="buurtnet.example", selector="bin1", key_path=path)
    assert signer.algorithm == "ed25519-sha256"
    assert dkim_txt_record(path).endswith(
        base64.b64encode(
            key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
        ).decode()
    )
