"""The bin-gateway command line: exit codes, output, and the effects on the store.

Commands run in-process through ``main([...])`` against a config file written into
tmp_path (maildir delivery, a real Ed25519 DKIM key), once as ``python -m bin_gateway``.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from bin_gateway.cli import main
from bin_gateway.keys import generate_key, read_private_key, write_private_key
from bin_gateway.log import configure_logging, get_logger
from tests.support.certificates import make_pair

REPO = Path(__file__).resolve().parent.parent

CONFIG = """
[gateway]
domain = "bin.example.nl"
hostname = "mail.bin.example.nl"
listen = ["127.0.0.1:2525"]
data_dir = "state"
admin = "beheer@example.nl"

[dkim]
selector = "bin1"
private_key = "dkim/bin1.pem"

[delivery]
mode = "maildir"

[[agencies]]
id = "politie"
name = "Politie Oost-Brabant"
senders = ["@politie.example", "wijkagent@gemeente.example"]
lists = ["buurt-noord"]

[[lists]]
id = "buurt-noord"
name = "BIN Noord"
coordinators = ["coordinator.noord@example.nl"]

[[lists]]
id = "buurt-zuid"
name = "BIN Zuid"
coordinators = ["coordinator.zuid@example.nl"]
"""

BAD_CONFIG = """
[gateway]
domain = "not a domain"
hostname = "mail.bin.example.nl"
admin = "beheer@example.nl"
colour = "blue"

[dkim]
selector = "bin1"
private_key = "dkim/bin1.pem"

[[lists]]
id = "buurt-noord"
name = "BIN Noord"
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    (tmp_path / "dkim").mkdir()
    write_private_key(tmp_path / "dkim" / "bin1.pem", generate_key("ed25519"))
    path = tmp_path / "config.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- check-config


def test_check_config_ok_prints_summary(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    """A valid file exits 0 with "config OK: <path>" and the domain, lists and agencies."""
    code, out, _ = run(capsys, "check-config", "--config", config_file)
    assert code == 0
    assert out.startswith(f"config OK: {config_file}\n")
    assert "bin.example.nl" in out
    assert "buurt-noord@bin.example.nl" in out and "buurt-zuid@bin.example.nl" in out
    assert "politie" in out


def test_check_config_lists_every_problem_with_key_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A wrong file exits 2 and names every problem by its dotted key, on stderr only."""
    path = tmp_path / "config.toml"
    path.write_text(BAD_CONFIG, encoding="utf-8")
    code, out, err = run(capsys, "check-config", "--config", path)
    assert code == 2
    assert out == ""
    assert str(path) in err
    for key in (
        "gateway.domain:",
        "gateway.colour:",
        "dkim.private_key:",
        "lists[0].coordinators:",
    ):
        assert key in err
    assert "Traceback" not in err


def test_check_config_prints_warnings_on_stderr(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    """Risky but valid settings still pass (exit 0); each warning goes to stderr."""
    config_file.write_text(CONFIG + '\n[inbound]\nrequire = "none"\n', encoding="utf-8")
    code, out, err = run(capsys, "check-config", "--config", config_file)
    assert code == 0
    assert out.startswith("config OK:")
    assert 'warning: inbound.require = "none"' in err


def test_check_config_tries_the_tls_pair_as_the_gateway_would(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    """A certificate with the key of another one is readable, so the reader passes it, but
    the gateway could not start with it: check-config says so (exit 2), and passes a good
    pair."""
    tls = config_file.parent / "tls"
    tls.mkdir()
    first, other = make_pair("mail.bin.example.nl"), make_pair("mail.bin.example.nl")
    (tls / "fullchain.pem").write_bytes(first.certificate)
    (tls / "privkey.pem").write_bytes(other.private_key)
    config_file.write_text(
        CONFIG + f'\n[tls]\ncertificate = "{tls / "fullchain.pem"}"\n'
        f'private_key = "{tls / "privkey.pem"}"\n', encoding="utf-8")
    code, out, err = run(capsys, "check-config", "--config", config_file)
    assert code == 2 and out == ""
    assert f'tls: "{tls / "privkey.pem"}" is not the key of the certificate in' in err
    (tls / "privkey.pem").write_bytes(first.private_key)
    code, out, _ = run(capsys, "check-config", "--config", config_file)
    assert code == 0 and "with STARTTLS" in out


def test_missing_config_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A config path that does not exist is a configuration error (exit 2), not a crash."""
    code, _, err = run(capsys, "check-config", "--config", tmp_path / "nope.toml")
    assert code == 2
    assert "cannot be read" in err


def test_config_option_before_subcommand_and_from_environment(
    capsys: pytest.CaptureFixture[str], config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--config works before the subcommand, and BIN_GATEWAY_CONFIG is the default."""
    assert run(capsys, "--config", config_file, "check-config")[0] == 0
    monkeypatch.setenv("BIN_GATEWAY_CONFIG", str(config_file))
    code, out, _ = run(capsys, "check-config")
    assert code == 0
    assert f"config OK: {config_file}" in out


def test_python_m_runs_check_config(config_file: Path) -> None:
    """`python -m bin_gateway check-config` behaves like the bin-gateway command."""
    env = {key: value for key, value in os.environ.items() if key != "BIN_GATEWAY_CONFIG"}
    result = subprocess.run(
        [sys.executable, "-m", "bin_gateway", "check-config", "--config", str(config_file)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"config OK: {config_file}" in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        [], ["serve"], ["check-config"], ["members"], ["members", "import"], ["held"],
        ["held", "approve"], ["queue", "list"], ["queue", "retry"], ["dkim", "keygen"],
        ["dns-records"], ["stats"], ["forget"], ["members", "export-person"],
        ["members", "enable"],
    ],
)  # fmt: skip
def test_every_command_has_help(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    """Each command and subcommand answers --help with a usage text and exit 0."""
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0
    assert out.startswith("usage: bin-gateway")


def test_missing_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """No command, or a group without its action, exits 2 with a usage message."""
    assert run(capsys)[0] == 2
    code, _, err = run(capsys, "members")
    assert code == 2
    assert "usage:" in err


# --------------------------------------------------------------------------- members


def test_members_add_list_remove(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    """Addresses are normalised, not added twice in another case, and removed case-blind."""
    conf = ("--config", config_file)
    code, out, _ = run(capsys, "members", "add", "buurt-noord", "Jan@Example.NL",
                       "piet@example.nl", *conf)  # fmt: skip
    assert (code, out) == (0, "added 2 to buurt-noord\n")
    code, out, _ = run(capsys, "members", "add", "buurt-noord", "jan@example.nl", *conf)
    assert code == 0
    assert "added 0" in out and "1 already a member" in out
    code, out, _ = run(capsys, "members", "list", "buurt-noord", *conf)
    assert code == 0
    assert out.splitlines()[:2] == ["Jan@example.nl", "piet@example.nl"]
    assert "2 members of buurt-noord" in out
    code, out, _ = run(capsys, "members", "remove", "buurt-noord", "PIET@example.nl", *conf)
    assert (code, out) == (0, "removed 1 from buurt-noord\n")
    code, _, err = run(capsys, "members", "remove", "buurt-noord", "nobody@example.nl", *conf)
    assert code == 1
    assert "nobody@example.nl is not a member of buurt-noord" in err
    assert run(capsys, "members", "list", "buurt-zuid", *conf)[1] == "buurt-zuid has no members\n"


def test_members_add_refuses_bad_address_and_adds_nothing(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    """One invalid address among several is a usage error (2) and no address is added."""
    conf = ("--config", config_file)
    code, _, err = run(capsys, "members", "add", "buurt-noord", "ok@example.nl", "no-at-sign",
                       *conf)  # fmt: skip
    assert code == 2
    assert '"no-at-sign" is not a valid e-mail address' in err
    assert "nothing was changed" in err
    assert run(capsys, "members", "list", "buurt-noord", *conf)[1] == "buurt-noord has no members\n"


def test_unknown_list_exits_2(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    """A list id that is not in the config is a usage error naming the known lists."""
    for command in (["list"], ["add", "x@example.nl"], ["export"]):
        code, out, err = run(capsys, "members", command[0], "buurt-west", *command[1:],
                             "--config", config_file)  # fmt: skip
        assert code == 2
        assert out == ""
        assert 'unknown list "buurt-west"' in err and "buurt-noord, buurt-zuid" in err


def test_members_import_reports_bad_rows_and_adds_good_ones(
    capsys: pytest.CaptureFixture[str], config_file: Path, tmp_path: Path
) -> None:
    """Each bad row is reported with its line number, the good rows are added, exit is 1."""
    csv_file = tmp_path / "leden.csv"
    csv_file.write_text(
        "email,name\n"
        "kees@example.nl,Kees de Vries\n"
        "not-an-address,Iemand\n"
        "KEES@example.nl,Dubbel\n"
        "anna@example.nl,Anna\n",
        encoding="utf-8",
    )
    conf = ("--config", config_file)
    code, out, err = run(capsys, "members", "import", "buurt-noord", csv_file, *conf)
    assert code == 1
    assert "2 added" in out and "2 bad rows" in out
    assert f"{csv_file}: line 3:" in err and "not-an-address" in err
    assert f"{csv_file}: line 4:" in err and "already on line 2" in err
    listed = run(capsys, "members", "list", "buurt-noord", *conf)[1]
    assert "anna@example.nl" in listed and "kees@example.nl" in listed
    assert "Kees de Vries" in listed


def test_members_import_of_a_clean_file_exits_0(
    capsys: pytest.CaptureFixture[str], config_file: Path, tmp_path: Path
) -> None:
    """A file without bad rows exits 0; importing it again adds nobody twice."""
    csv_file = tmp_path / "leden.csv"
    csv_file.write_text("email;naam\nanna@example.nl;Anna\n", encoding="utf-8")
    conf = ("--config", config_file)
    assert run(capsys, "members", "import", "buurt-noord", csv_file, *conf)[0] == 0
    code, out, _ = run(capsys, "members", "import", "buurt-noord", csv_file, *conf)
    assert code == 0
    assert "0 added, 1 already members" in out


def test_members_import_unusable_file_exits_2(
    capsys: pytest.CaptureFixture[str], config_file: Path, tmp_path: Path
) -> None:
    """A missing file or one without an email header is a usage error; nothing is added."""
    conf = ("--config", config_file)
    code, _, err = run(capsys, "members", "import", "buurt-noord", tmp_path / "none.csv", *conf)
    assert code == 2
    assert "cannot read" in err
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("telefoon,straat\n0612345678,Dorpsstraat\n", encoding="utf-8")
    code, _, err = run(capsys, "members", "import", "buurt-noord", wrong, *conf)
    assert code == 2
    assert "line 1:" in err


def test_members_export_round_trips_through_import(
    capsys: pytest.CaptureFixture[str], config_file: Path, tmp_path: Path
) -> None:
    """Export writes email,name CSV (formulas defused) that imports back unchanged."""
    source = tmp_path / "in.csv"
    source.write_text(
        'email,name\nanna@example.nl,"Anna, van der Berg"\nbob@example.nl,=SUM(1+1)\n',
        encoding="utf-8",
    )
    conf = ("--config", config_file)
    assert run(capsys, "members", "import", "buurt-noord", source, *conf)[0] == 0
    code, exported, _ = run(capsys, "members", "export", "buurt-noord", *conf)
    assert code == 0
    assert exported.splitlines() == [
        "email,name",
        'anna@example.nl,"Anna, van der Berg"',
        "bob@example.nl,'=SUM(1+1)",
    ]
    copy = tmp_path / "export.csv"
    copy.write_text(exported, encoding="utf-8", newline="")
    assert run(capsys, "members", "import", "buurt-zuid", copy, *conf)[0] == 0
    assert run(capsys, "members", "export", "buurt-zuid", *conf)[1] == exported


# --------------------------------------------------------------------------- held, queue


def test_held_list_on_empty_store(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    """With nothing held, `held list` says so and exits 0 (also with --all)."""
    assert run(capsys, "held", "list", "--config", config_file)[:2] == (0, "nothing is held\n")
    assert run(capsys, "held", "list", "--all", "--config", config_file)[:2] == (0, "no items\n")


def test_held_show_unknown_item_exits_1(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    """Showing an id that does not exist is a readable runtime failure (exit 1)."""
    code, _, err = run(capsys, "held", "show", "42", "--config", config_file)
    assert code == 1
    assert "no held item 42" in err


def test_queue_list_on_empty_store(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    """An empty queue lists no deliveries and exits 0."""
    code, out, _ = run(capsys, "queue", "list", "--config", config_file)
    assert code == 0
    assert out.startswith("no deliveries")
    code, out, _ = run(capsys, "queue", "list", "--state", "sent", "--config", config_file)
    assert (code, out) == (0, "no deliveries sent\n")


def test_queue_retry_needs_ids_or_all(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    """`queue retry` without ids or --all is a usage error; --all on an empty queue is 0."""
    assert run(capsys, "queue", "retry", "--config", config_file)[0] == 2
    code, out, _ = run(capsys, "queue", "retry", "--all", "--config", config_file)
    assert (code, out) == (0, "re-queued 0 deliveries\n")


# --------------------------------------------------------------------------- dkim, dns


def test_dkim_keygen_works_without_a_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """With --out, --selector and --domain no config is read; the key file is 0600."""
    out_file = tmp_path / "keys" / "s2024.pem"
    code, out, _ = run(
        capsys, "dkim", "keygen", "--type", "ed25519", "--out", out_file, "--selector", "s2024",
        "--domain", "bin.example.nl", "--config", tmp_path / "absent.toml",
    )  # fmt: skip
    assert code == 0
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600
    read_private_key(out_file)  # a usable key
    assert 's2024._domainkey.bin.example.nl.\tIN\tTXT\t"v=DKIM1; k=ed25519; p=' in out


def test_dkim_keygen_fills_the_key_an_incomplete_config_names(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    """A fresh install (key file missing) gets its RSA key at [dkim] private_key."""
    key = config_file.parent / "dkim" / "bin1.pem"
    key.unlink()
    assert run(capsys, "check-config", "--config", config_file)[0] == 2
    code, out, _ = run(capsys, "dkim", "keygen", "--config", config_file)
    assert code == 0
    assert 'bin1._domainkey.bin.example.nl.\tIN\tTXT\t( "v=DKIM1; k=rsa; p=' in out
    assert run(capsys, "check-config", "--config", config_file)[0] == 0


def test_dkim_keygen_refuses_to_overwrite_unless_forced(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    """An existing key file is left alone (exit 1); --force replaces it with a new key."""
    key = config_file.parent / "dkim" / "bin1.pem"
    before = key.read_bytes()
    code, _, err = run(capsys, "dkim", "keygen", "--type", "ed25519", "--config", config_file)
    assert code == 1
    assert "already exists" in err
    assert key.read_bytes() == before
    code, _, _ = run(capsys, "dkim", "keygen", "--type", "ed25519", "--force",
                     "--config", config_file)  # fmt: skip
    assert code == 0
    assert key.read_bytes() != before
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert [p.name for p in key.parent.iterdir()] == ["bin1.pem"]  # no temporary file left


def test_dns_records_prints_mx_spf_dkim_dmarc(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    """dns-records prints the zone lines for the config's domain, host, selector and admin."""
    code, out, _ = run(capsys, "dns-records", "--server-ip", "192.0.2.7", "--config", config_file)
    assert code == 0
    lines = [line for line in out.splitlines() if line and not line.startswith(";")]
    assert "bin.example.nl.\tIN\tMX\t10 mail.bin.example.nl." in lines
    assert "mail.bin.example.nl.\tIN\tA\t192.0.2.7" in lines
    assert 'bin.example.nl.\tIN\tTXT\t"v=spf1 mx -all"' in lines
    assert any(line.startswith("bin1._domainkey.bin.example.nl.\tIN\tTXT") for line in lines)
    assert any(line.startswith("_dmarc.bin.example.nl.\tIN\tTXT") and
               "rua=mailto:beheer@example.nl" in line for line in lines)  # fmt: skip


def test_dns_records_bad_server_ip_exits_2(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    """An --server-ip that is not an IP address is a usage error, printed without traceback."""
    code, out, err = run(capsys, "dns-records", "--server-ip", "mail", "--config", config_file)
    assert (code, out) == (2, "")
    assert "not an IPv4 or IPv6 address" in err


# --------------------------------------------------------------------------- logging


def test_logging_writes_json_lines_with_utc_time_and_level_filter(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Off a terminal: one JSON object per event, ISO UTC timestamp, lower levels dropped."""
    configure_logging(level="info")  # capsys' stdout is not a terminal: JSON
    structlog.contextvars.bind_contextvars(inbound_id=7)
    try:
        log = get_logger("bin_gateway.test")
        log.debug("message.parsed")
        log.info("message.accepted", route="post")
    finally:
        structlog.contextvars.clear_contextvars()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["event"] == "message.accepted"
    assert event["level"] == "info"
    assert event["logger"] == "bin_gateway.test"
    assert event["route"] == "post" and event["inbound_id"] == 7
    assert event["timestamp"].endswith("Z")


def test_logging_console_renderer_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    """json=False renders readable lines; exceptions are shown without local variables."""
    configure_logging(json=False, level="debug")

    def fail(address: str = "jan@example.nl") -> None:
        raise RuntimeError("boom")

    try:
        fail()
    except RuntimeError:
        get_logger().exception("worker.failed", worker="outbox")
    out = capsys.readouterr().out
    assert "worker.failed" in out and "worker=outbox" in out and "RuntimeError: boom" in out
    assert "jan@example.nl" not in out
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging(level="loud")


def _hold_one(config_file: Path, subject: str) -> int:
    """Store an agency message and hold it for buurt-noord, as the processor would."""
    from bin_gateway.config import load_config
    from bin_gateway.models import RouteKind
    from bin_gateway.services import open_services
    from bin_gateway.store import NewInbound, now

    raw = (
        "From: Wijkagent <wijkagent@politie.example>\r\nTo: agency@bin.example.nl\r\n"
        f"Subject: {subject}\r\nDate: Mon, 6 May 2024 10:00:00 +0200\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nLet op: inbraken in de Dorpsstraat.\r\n"
    ).encode()

    async def hold() -> int:
        services = await open_services(load_config(config_file))
        try:
            inbound_id = await services.store.add_inbound(
                NewInbound(RouteKind.POST, "agency", "wijkagent@politie.example",
                           ["agency@bin.example.nl"], "192.0.2.1", "mx.politie.example", raw)
            )  # fmt: skip
            async with services.store.transaction() as db:
                held = await services.store.create_submission(
                    db, inbound_id=inbound_id, list_id="buurt-noord", agency_id="politie",
                    sender="wijkagent@politie.example", subject=subject, token_hash="h1",
                    expires_at=now() + 86400, remind_at=now() + 3600,
                )  # fmt: skip
            assert held is not None
            return held
        finally:
            await services.close()

    return asyncio.run(hold())


def test_held_list_and_show_a_held_item(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    """A held item is listed with id, list, agency and subject; show prints its text."""
    item = _hold_one(config_file, "Inbraken \x1b[31mNoord")
    code, out, _ = run(capsys, "held", "list", "--config", config_file)
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["ID", "LIST", "AGENCY", "SENDER", "SUBJECT", "CREATED", "EXPIRES",
                              "STATE"]  # fmt: skip
    assert row.split()[:4] == [str(item), "buurt-noord", "politie", "wijkagent@politie.example"]
    assert row.endswith("held") and "Inbraken" in row
    assert "\x1b" not in out  # a sender's escape sequences never reach the terminal
    code, out, _ = run(capsys, "held", "show", str(item), "--config", config_file)
    assert code == 0
    assert "From: Wijkagent <wijkagent@politie.example>" in out
    assert "Let op: inbraken in de Dorpsstraat." in out
    assert "\x1b" not in out
