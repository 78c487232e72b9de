"""docs/deploying.md holds to the code: its commands parse, its config is read, its log
events, metrics and DNS output are the gateway's own, and its unit files verify."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

import bin_gateway
from bin_gateway.cli import build_parser, main
from bin_gateway.config import parse_config
from bin_gateway.models import ReplyState, SubmissionState
from tests.support.config_keys import EXAMPLE, REPO, reader_keys

GUIDE = REPO / "docs" / "deploying.md"


def guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def fences() -> list[tuple[str, str]]:
    """(language, text) of each fenced block, in order; an indented fence counts too."""
    found: list[tuple[str, str]] = []
    language: str | None = None
    body: list[str] = []
    for line in guide().splitlines():
        stripped = line.strip()
        if language is None and stripped.startswith("```"):
            language, body = stripped[3:], []
        elif language is not None and stripped == "```":
            found.append((language, "\n".join(body) + "\n"))
            language = None
        elif language is not None:
            body.append(line.strip() if line.startswith("  ```") else line)
    return found


def fenced(language: str) -> list[str]:
    return [text for lang, text in fences() if lang == language]


def code_lines() -> list[tuple[str, bool]]:
    """(line, whole): lines of indented and fenced blocks (whole command lines), and
    inline code spans (which may name a command without its arguments)."""
    text = guide()
    lines = [(line[4:], True) for line in text.splitlines() if line.startswith("    ")]
    lines += [(line, True) for _, block in fences() for line in block.splitlines()]
    lines += [(span, False) for span in re.findall(r"`([^`\n]+)`", text)]
    return lines


_COMMAND = re.compile(r"(?:^\s*|exec |root |&& )(?:/usr/local/bin/)?bin-gateway( [^\n]*|$)")


def guide_commands() -> list[tuple[list[str], bool]]:
    found = []
    for line, whole in code_lines():
        for match in _COMMAND.finditer(line):
            rest = re.split(r"\s(?:\||&&|;|>|#)|'", match.group(1))[0]
            rest = re.sub(r"\$\([^)]*\)", "X", rest)  # $(date +%u) is one word to the shell
            if rest.strip():  # not just the program's name
                found.append((shlex.split(rest), whole))
    return found


def test_every_bin_gateway_command_in_the_guide_parses(capsys: pytest.CaptureFixture[str]) -> None:
    """Each `bin-gateway ...` line of the guide is a valid command line (argparse); a
    command named in the text exists."""
    parser = build_parser()
    known = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    commands = guide_commands()
    assert len(commands) >= 12, commands
    for argv, whole in commands:
        if not whole:
            assert argv[0] in known or argv == ["--version"], argv
        else:
            try:
                parser.parse_args(argv)
            except SystemExit as exc:
                assert exc.code == 0 and argv == ["--version"], (argv, capsys.readouterr().err)


def _key_files(tmp: Path) -> dict[str, str]:
    key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip
    (tmp / "dkim.pem").write_bytes(key)
    for name in ("fullchain.pem", "privkey.pem", "smarthost-password"):
        (tmp / name).write_text("x", encoding="utf-8")
    return {
        "/etc/bin-gateway/dkim/bin1.pem": str(tmp / "dkim.pem"),
        "/etc/bin-gateway/tls/fullchain.pem": str(tmp / "fullchain.pem"),
        "/etc/bin-gateway/tls/privkey.pem": str(tmp / "privkey.pem"),
        "/etc/bin-gateway/smarthost-password": str(tmp / "smarthost-password"),
    }


LIST = '\n[[lists]]\nid = "buurt-noord"\nname = "BIN Noord"\ncoordinators = ["c@gemeente.nl"]\n'


def test_each_config_of_the_guide_is_a_valid_file(tmp_path: Path) -> None:
    """The set-up A and B snippets, with a list added, load without a problem; A with
    TLS and B on loopback give no warning."""
    blocks = fenced("toml")
    assert len(blocks) == 2
    paths = _key_files(tmp_path)
    for block in blocks:
        for old, new in paths.items():
            block = block.replace(old, new)
        config = parse_config(block + LIST, "guide")
        assert config.gateway.domain == "bin.gemeente.nl"
        assert config.warnings() == [], config.warnings()
    behind_postfix = parse_config(blocks[1].replace(*next(iter(paths.items()))) + LIST)
    assert behind_postfix.inbound.trusted_authserv_ids == ("mx1.gemeente.nl",)


def test_every_dotted_config_key_in_the_guide_is_read() -> None:
    """`section.key` names in the text are keys the reader knows."""
    keys = reader_keys()
    sections = {s for s in keys if s}
    named = {span for span in re.findall(r"`([a-z_]+\.[a-z_]+)(?: = [^`]*)?`", guide())
             if span.split(".")[0] in sections} - _table_events()  # fmt: skip
    assert len(named) >= 5, named
    for dotted in named:
        section, key = dotted.split(".")
        assert key in keys[section], dotted


def _events_in_code() -> set[str]:
    package = Path(bin_gateway.__file__).parent  # the code under test, wherever it is
    source = "\n".join(p.read_text("utf-8") for p in package.rglob("*.py"))
    literal = set(re.findall(r'"([a-z_]+\.[a-z_]+)"', source))
    dynamic = {f"held.{s.value}" for s in SubmissionState}
    dynamic |= {f"reply.{s.value}" for s in ReplyState}
    assert 'f"held.{state.value}"' in source and 'f"reply.{state.value}"' in source
    return literal | dynamic


def _table_events() -> set[str]:
    table = guide().split("### Events worth knowing", 1)[1].split("\n## ", 1)[0]
    return {name for row in table.splitlines() if row.startswith("| `")
            for name in re.findall(r"`([a-z_]+\.[a-z_]+)`", row.split(" | ")[0])}  # fmt: skip


def test_log_events_in_the_guide_are_the_gateways_own() -> None:
    """Every event of the "Events worth knowing" table is emitted somewhere in the code."""
    events = _table_events()
    assert len(events) >= 30, events
    assert sorted(events - _events_in_code()) == []


def test_metric_names_in_the_guide_exist() -> None:
    """The metric names shown are the ones metrics.py exports."""
    source = (REPO / "bin_gateway" / "metrics.py").read_text(encoding="utf-8")
    shown = set(re.findall(r"\b(bin_gateway_[a-z_]+)", guide()))
    assert len(shown) >= 6
    for name in shown:
        base = name.removesuffix("_total")
        assert f'"{base}"' in source or f'"{name}"' in source, name


def test_dns_records_shown_are_what_the_command_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Apart from the shortened key, the guide's dns-records output is the real output for
    config.example.toml."""
    paths = _key_files(tmp_path)
    text = EXAMPLE.read_text(encoding="utf-8")
    for old, new in paths.items():
        text = text.replace(old, new)
    (tmp_path / "config.toml").write_text(text, encoding="utf-8")
    assert main(["--config", str(tmp_path / "config.toml"), "dns-records"]) == 0
    real = capsys.readouterr().out.splitlines()
    (shown,) = [b for b in fenced("") if "; DNS records for" in b]
    lines = [line for line in shown.splitlines() if "DKIM1" not in line and "…" not in line]
    assert len(lines) >= 15
    for line in lines:
        assert line in real, line


def test_unit_files_of_the_guide_verify(tmp_path: Path) -> None:
    """The drop-in and the backup timer pass `systemd-analyze verify` without complaints."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    drop_in, service, timer = fenced("ini")
    unit = (REPO / "systemd" / "bin-gateway.service").read_text(encoding="utf-8")
    true = shutil.which("true") or "/bin/true"
    (tmp_path / "bin-gateway.service").write_text(
        unit.replace("/usr/local/bin/bin-gateway", true), encoding="utf-8")  # fmt: skip
    (tmp_path / "bin-gateway.service.d").mkdir()
    (tmp_path / "bin-gateway.service.d" / "keys.conf").write_text(drop_in, encoding="utf-8")
    (tmp_path / "bin-gateway-backup.service").write_text(service, encoding="utf-8")
    (tmp_path / "bin-gateway-backup.timer").write_text(timer, encoding="utf-8")
    assert "SupplementaryGroups=bin-gateway-keys" in drop_in
    assert "bin-gateway backup --force" in service
    for name in ("bin-gateway.service", "bin-gateway-backup.timer", "bin-gateway-backup.service"):
        result = subprocess.run(
            [analyze, "verify", str(tmp_path / name)], capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, (name, result.stderr)
        complaints = [line for line in result.stderr.splitlines()
                      if str(tmp_path) in line and "bin-gateway" in line]  # fmt: skip
        assert complaints == [], complaints


def test_certbot_hook_is_valid_shell() -> None:
    """The deploy hook parses (sh -n) and copies both files where [tls] points."""
    (hook,) = fenced("sh")
    assert subprocess.run(["sh", "-n"], input=hook, text=True, check=False).returncode == 0
    raw = tomllib.loads(fenced("toml")[0])
    for path in raw["tls"].values():
        assert path in hook, path
