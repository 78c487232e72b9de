"""config.example.toml documents every key the reader knows; check-config names each risk.

The keys are taken from the reader itself (every key it asks a table for, whether set or
not), not from a list kept beside it: a key added to the reader without a line in the
example fails here.
"""

from __future__ import annotations

import re
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bin_gateway.cli import main
from tests.support.config_keys import EXAMPLE, reader_keys


def _example_keys() -> dict[str, set[str]]:
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    found: dict[str, set[str]] = defaultdict(set)
    for section, value in raw.items():
        for entry in value if isinstance(value, list) else [value]:
            found[section] |= set(entry)
    return found


def test_example_sets_every_key_the_reader_knows() -> None:
    """Each key of each section the reader reads is set in config.example.toml, and only those."""
    reader = reader_keys()
    sections = set(reader) - {""}
    assert reader[""] == sections  # the top level holds sections only
    assert sections == {"gateway", "tls", "dkim", "inbound", "moderation", "delivery", "http",
                        "agencies", "lists"}  # fmt: skip
    example = _example_keys()
    for section in sections:
        missing = sorted(reader[section] - example[section])
        assert missing == [], f"[{section}] keys not in config.example.toml: {missing}"
        assert example[section] <= reader[section], section


def test_every_key_in_the_example_has_a_comment_above_it() -> None:
    """The first time a key is set in the example, a comment line comes right before it."""
    seen: set[tuple[str, str]] = set()
    section = ""
    previous = ""
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        header = re.fullmatch(r"\[\[?([a-z]+)\]\]?.*", line)
        key = re.match(r"([a-z_]+) = ", line)
        if header:
            section = header.group(1)
        elif key and (section, key.group(1)) not in seen:
            seen.add((section, key.group(1)))
            assert previous.startswith("#"), f"[{section}] {key.group(1)} has no comment"
        previous = line.strip()
    expected = {(section, key) for section, keys in reader_keys().items() if section
                for key in keys}  # fmt: skip
    assert seen == expected


RISKY = """
[gateway]
domain = "bin.example.nl"
hostname = "mail.bin.example.nl"
listen = ["0.0.0.0:25"]
admin = "beheer@example.nl"

[dkim]
selector = "bin1"
private_key = "dkim.pem"

[inbound]
require = "none"

[[lists]]
id = "buurt-noord"
name = "BIN Noord"
coordinators = ["coordinator.noord@example.nl"]
redact_contact_details = false
"""


def test_check_config_warns_about_each_risky_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """require = "none", no [tls] on a public port, a 1024-bit RSA key and unredacted replies
    each give a warning on stderr; the file is still valid (exit 0)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505  # under test
    (tmp_path / "dkim.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))  # fmt: skip
    (tmp_path / "config.toml").write_text(RISKY, encoding="utf-8")
    assert main(["check-config", "--config", str(tmp_path / "config.toml")]) == 0
    err = capsys.readouterr().err
    for warning in (
        'warning: inbound.require = "none"',
        "warning: no [tls] while listening on 0.0.0.0:25",
        "warning: dkim.private_key is a 1024-bit RSA key",
        'warning: lists "buurt-noord": redact_contact_details = false',
    ):
        assert warning in err, (warning, err)
