"""The command line, in process: output, exit codes and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import cli as run

from archiver.errors import ExitCode


def test_exit_codes_are_pinned() -> None:
    # Documented in README.md and `archiver --help`; scripts depend on them: never renumber.
    assert {code.name: int(code) for code in ExitCode} == {
        "OK": 0,
        "FAILURE": 1,
        "USAGE": 2,
        "CONFIG": 3,
        "CATALOG": 4,
        "STORAGE": 5,
        "NOT_FOUND": 6,
        "PENDING": 7,
        "INTEGRITY": 8,
        "MODEL": 9,
        "INTERRUPTED": 130,
    }


def test_help_lists_commands_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "status" in out and "db" in out and "4 catalog" in out


def test_restore_help_shows_what_restore_key_takes(capsys: pytest.CaptureFixture[str]) -> None:
    """`restore KEY` is a hidden default command: its options are shown under `restore --help`."""
    code, out, _ = run(capsys, "restore", "--help")
    assert code == 0
    for option in ("--original", "--prefix", "--tier", "--wait", "--days"):
        assert option in out, option
    assert "status" in out


def test_status_json_on_a_fresh_home(archiver_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "status", "--json")
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert report["assets"] == 0 and report["bytes"] == 0
    # Asking does not create the catalog (issue 28, item 23): nothing was swept into this home yet.
    assert report["catalog_exists"] is False and not (archiver_env / "catalog.db").exists()
    code, out, _ = run(capsys, "status")
    assert code == 0 and "no catalog at" in out and not (archiver_env / "catalog.db").exists()
    assert set(report["states"]) == {
        "discovered",
        "candidate",
        "verified",
        "vaulted",
        "archived",
        "rejected",
        "restored",
    }


def test_status_table(archiver_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "status")
    assert code == 0
    assert "archived" in out and "total" in out


def test_db_upgrade_is_idempotent(archiver_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0 and "upgraded from schema (empty)" in out
    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0 and "already at schema" in out
    code, out, _ = run(capsys, "db", "check")
    assert code == 0 and "(current)" in out


def test_db_check_on_empty_catalog_says_upgrade(
    archiver_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archiver_env.mkdir()
    code, _, err = run(capsys, "db", "check")
    assert code == ExitCode.CATALOG and "archiver db upgrade" in err


def test_db_upgrade_on_postgres(
    archiver_env: Path, pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "--database-url", pg_database, "db", "upgrade")
    assert code == 0 and "upgraded" in out
    code, out, _ = run(capsys, "--database-url", pg_database, "status", "--json")
    assert code == 0 and json.loads(out)["assets"] == 0


@pytest.mark.parametrize(
    ("argv", "env", "code", "says"),
    [
        (
            ["--database-url", "postgresql://h:port/db", "status"],
            {},
            ExitCode.CONFIG,
            "malformed database URL",
        ),
        (
            ["--database-url", "postgresql://u:pw@127.0.0.1:9/db", "status"],
            {},
            ExitCode.CATALOG,
            "cannot open the catalog",
        ),
        (
            ["status"],
            {"ARCHIVER_VAULT_STORAGE_CLASS": "STANDARD"},
            ExitCode.CONFIG,
            "ARCHIVER_VAULT_STORAGE_CLASS",
        ),
        (["--vault-storage-class", "COLD", "status"], {}, ExitCode.USAGE, "COLD"),
        (["no-such-command"], {}, ExitCode.USAGE, "No such command"),
        (["--config-file", "/nonexistent/archiver.toml", "status"], {}, ExitCode.USAGE, "does not exist"),
        (
            ["status"],
            {"ARCHIVER_CONFIG_FILE": "/nonexistent/archiver.toml"},
            ExitCode.CONFIG,
            "does not exist",
        ),
    ],
)
def test_bad_input_gets_one_line_and_its_exit_code(
    archiver_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    code: int,
    says: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    got, _, err = run(capsys, *argv)
    assert got == code
    assert says in err
    if code != ExitCode.USAGE:  # click's usage errors carry their own usage line
        assert err.startswith("archiver: error: ") and err.count("\n") == 1
        assert "Traceback" not in err


def test_unwritable_home(archiver_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(capsys, "--home", str(blocker / "home"), "status")
    assert code == ExitCode.CONFIG and "set ARCHIVER_HOME" in err


def test_debug_shows_the_traceback(archiver_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--debug", "--database-url", "postgresql://u@127.0.0.1:9/db", "status")
    assert code == ExitCode.CATALOG
    assert "Traceback" in err and "archiver: error: cannot open the catalog" in err


def test_installed_console_script(archiver_env: Path, tmp_path: Path) -> None:
    """The done-when line: `ARCHIVER_HOME=$(mktemp -d) archiver status --json`."""
    script = Path(sys.executable).with_name("archiver")
    done = subprocess.run(
        [str(script), "status", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "ARCHIVER_HOME": str(tmp_path / "fresh")},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["assets"] == 0


def test_cli_start_does_not_import_the_ml_stack() -> None:
    """`archiver status` and `--help` must stay fast: torch/diffusers load only in commands that render."""
    probe = "import sys, archiver.cli; print(sorted({'torch', 'diffusers', 'lpips'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
