"""Command-line conventions and feedback (issue 28, items 20, 22, 24): progress on stderr for the
long commands (plain lines when stderr is not a terminal, none with --quiet), -v/-q/--log-level, a
bad option value on the command line exits 2 while the same value from the environment or the
config file exits 3, "did you mean" for mistyped settings, `config show`, shell completion,
`verify` streaming its rows, `train --checkpoint-every`, and the sweep's per-check refusal counts."""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import catalog_assets, cli, register

from archiver.catalog.models import AssetState
from archiver.errors import ExitCode

REPO = Path(__file__).resolve().parent.parent


def progress_lines(err: str, what: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(f"archiver: {what} ")]


# --- exit codes: the command line is a usage error, the environment and the file a config error ---


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--config-file", "/nonexistent/archiver.toml", "status"], "--config-file"),
        (["sweep", ".", "--model", "m", "--older-than", "3 fortnights"], "--older-than"),
        (["sweep", ".", "--model", "m", "--min-size", "big"], "--min-size"),
        (["--log-level", "loud", "status"], "--log-level"),
    ],
)
def test_a_bad_option_value_on_the_command_line_exits_2(
    archiver_env: Path, capsys: pytest.CaptureFixture[str], argv: list[str], option: str
) -> None:
    code, out, err = cli(capsys, *argv)
    assert code == ExitCode.USAGE and out == ""
    assert f"Error: Invalid value for '{option}'" in err and "Traceback" not in err
    assert not (archiver_env / "catalog.db").exists()  # nothing was opened or written


def test_the_same_bad_values_from_the_environment_or_the_file_exit_3(
    archiver_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ARCHIVER_CONFIG_FILE", str(tmp_path / "absent.toml"))
    code, _, err = cli(capsys, "status")
    assert code == ExitCode.CONFIG and err.startswith("archiver: error: ") and "ARCHIVER_CONFIG_FILE" in err
    config = tmp_path / "config.toml"
    config.write_text("s3_max_attempts = 0\n")
    monkeypatch.setenv("ARCHIVER_CONFIG_FILE", str(config))
    code, _, err = cli(capsys, "status")
    assert code == ExitCode.CONFIG and "invalid setting 's3_max_attempts'" in err and err.count("\n") == 1


def test_an_unknown_config_key_names_the_closest_setting(
    archiver_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('vaultt = "/srv/vault"\n')
    code, _, err = cli(capsys, "--config-file", str(config), "status")
    assert code == ExitCode.CONFIG and err.count("\n") == 1
    assert f"unknown setting 'vaultt' in config file {config} (did you mean vault?)" in err
    config.write_text("zzz_nothing_like_it = 1\n")
    code, _, err = cli(capsys, "--config-file", str(config), "status")
    assert code == ExitCode.CONFIG and "did you mean" not in err and "zzz_nothing_like_it" in err


def test_a_mistyped_environment_variable_is_named_not_ignored_in_silence(
    archiver_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ARCHIVER_GATE_PSNR_MN", "31")
    monkeypatch.setenv("ARCHIVER_CPU_SLOTS", "2")  # archiver's own, not a setting: no warning
    code, _, err = cli(capsys, "status", "--json")
    assert code == 0
    assert err.splitlines() == [
        "archiver: warning: ARCHIVER_GATE_PSNR_MN is not a setting and is ignored "
        "(did you mean ARCHIVER_GATE_PSNR_MIN?)"
    ]
    assert cli(capsys, "-q", "status", "--json")[2] == ""


# --- config show ---


def test_config_show_names_each_source_and_hides_the_password(
    archiver_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("gate_psnr_min = 31.5\n")
    monkeypatch.setenv("ARCHIVER_CONFIG_FILE", str(config))
    monkeypatch.setenv("ARCHIVER_DEVICE", "cpu")
    url = "postgresql://ada:s3cret@db.example/catalog"
    code, out, err = cli(capsys, "--database-url", url, "config", "show", "--json")
    assert code == 0, err
    doc = json.loads(out)
    settings = doc["settings"]
    assert doc["config_file"] == str(config) and doc["config_file_exists"]
    assert settings["database_url"] == {
        "value": "postgresql://ada:***@db.example/catalog",
        "source": "command line (--database-url)",
    }
    assert settings["device"] == {"value": "cpu", "source": "environment (ARCHIVER_DEVICE)"}
    assert settings["gate_psnr_min"] == {"value": 31.5, "source": f"config file {config}"}
    assert settings["gate_lpips_max"] == {"value": 0.05, "source": "default"}
    assert settings["home"] == {"value": str(archiver_env), "source": "environment (ARCHIVER_HOME)"}
    assert settings["vault"] == {"value": str(archiver_env / "vault"), "source": "default"}
    assert "s3cret" not in out

    code, out, _ = cli(capsys, "--database-url", url, "config", "show")
    assert code == 0 and "s3cret" not in out
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert lines["gate_psnr_min"].split()[1] == "31.5" and lines["gate_psnr_min"].endswith(
        f"[config file {config}]"
    )
    assert lines["device"].endswith("[environment (ARCHIVER_DEVICE)]")
    assert not (archiver_env / "catalog.db").exists()  # showing settings opens nothing


# --- shell completion (Click's), as the README documents it ---


def test_shell_completion_as_documented(archiver_env: Path) -> None:
    command = [sys.executable, "-c", "from archiver.cli import run; run()"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = subprocess.run(
        command, env={**env, "_ARCHIVER_COMPLETE": "bash_source"}, capture_output=True, text=True, timeout=60
    )
    assert script.returncode == 0 and "_archiver_completion" in script.stdout
    words = subprocess.run(
        command,
        env={**env, "_ARCHIVER_COMPLETE": "bash_complete", "COMP_WORDS": "archiver con", "COMP_CWORD": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert words.returncode == 0 and "plain,config" in words.stdout.splitlines()
    assert "_ARCHIVER_COMPLETE=bash_source archiver" in (REPO / "README.md").read_text()


# --- logging ---


def test_log_level_options_and_the_handler_is_gone_after_the_command(
    archiver_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archiver_logger = logging.getLogger("archiver")
    before = (archiver_logger.level, list(archiver_logger.handlers))
    for argv in (["-v"], ["-vv"], ["--log-level", "ERROR"], ["-q"]):
        code, _, err = cli(capsys, *argv, "status", "--json")
        assert code == 0, err
    assert (archiver_logger.level, archiver_logger.handlers) == before


# --- progress, streamed rows and per-check counts, on one real sweep ---


def test_verify_streams_its_rows_and_shows_progress(
    env: Path, source: Path, memorized: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    register(capsys, memorized)
    keys = sorted(str(p.relative_to(source)) for p in source.rglob("*") if p.is_file())
    code, out, err = cli(capsys, "verify", str(source), "--model", "tiny")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["key", "seed"] and lines[0].split()[-1] == "verdict"
    rows = lines[1:-1]
    assert [row.split()[0] for row in rows] == keys  # one row per image, in the order proved
    assert all(row.split()[-1] == "pass" or " reject: " in row for row in rows)
    passed = sum(row.split()[-1] == "pass" for row in rows)
    assert passed >= 4 and lines[-1] == f"{passed} of {len(keys)} images pass the gate with model 'tiny'"
    shown = progress_lines(err, "verifying")
    assert shown and shown[-1].startswith(f"archiver: verifying {len(keys)}/{len(keys)} (")
    assert f"{len(keys) - passed} refused" in shown[-1]

    code, out, err = cli(capsys, "-q", "verify", str(source), "--model", "tiny", "--json")
    assert code == 0 and json.loads(out)["passed"] == passed and not progress_lines(err, "verifying")


def test_sweep_counts_every_refusing_check_then_fsck_and_restore_show_progress(
    env: Path, source: Path, memorized: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    register(capsys, memorized)
    code, out, err = cli(capsys, "sweep", str(source), "--model", "tiny", "--json")
    assert code == 0, err
    report = json.loads(out)
    assets = catalog_assets(env)
    rejected = [a for a in assets.values() if a.state == AssetState.REJECTED]
    assert rejected and report["rejected"] == dict(collections.Counter(a.reason for a in rejected))
    every = collections.Counter(
        check.strip() for a in rejected for check in (a.reason_detail or a.reason or "").split(",")
    )
    # A gate refusal's detail lists every check that failed; an input refusal's is a sentence.
    gate = {a.key for a in rejected if (a.reason or "").startswith("gate-")}
    expected = collections.Counter(
        {k: v for k, v in every.items() if k.startswith("gate-")}
        | {a.reason: 1 for a in rejected if a.key not in gate}  # type: ignore[misc]
    )
    assert report["rejected_checks"] == dict(sorted(expected.items()))
    assert sum(report["rejected_checks"].values()) >= sum(report["rejected"].values())
    assert progress_lines(err, "verifying")[-1].startswith("archiver: verifying ")

    archived = sorted(k for k, a in assets.items() if a.state == AssetState.ARCHIVED)
    code, out, err = cli(capsys, "fsck")
    assert code == 0, err
    objects = int(out.splitlines()[-1].split()[0])
    assert progress_lines(err, "checking vault objects")[-1].startswith(
        f"archiver: checking vault objects {objects}/{objects} ("
    )
    assert not progress_lines(cli(capsys, "--quiet", "fsck")[2], "checking vault objects")

    code, out, err = cli(capsys, "restore", "--prefix", "shoes/", "--json")
    assert code == 0, err
    assert sorted(job["key"] for job in json.loads(out)["jobs"]) == archived
    assert progress_lines(err, "restoring")[-1].startswith(
        f"archiver: restoring {len(archived)}/{len(archived)} ("
    )


# --- train: progress when stderr is not a terminal, and --checkpoint-every ---


def test_train_reports_progress_and_checkpoints_as_asked(
    archiver_env: Path, source: Path, tmp_path: Path
) -> None:
    """A real `archiver train` process, its stderr a file: it reports its steps as it goes (a line at
    each tenth), and with --checkpoint-every 3 an interrupted run leaves checkpoints every 3 steps
    (the default is every 500)."""
    out, log = tmp_path / "model", tmp_path / "train.log"
    argv = [
        "train",
        str(source),
        "--caption-template",
        "a {words} sneaker",
        "--out",
        str(out),
        "--batch-size",
        "1",
    ]
    with log.open("w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "archiver", *argv, "--steps", "400", "--checkpoint-every", "3"],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and not (
                len(list((out / "checkpoints").glob("step-*"))) >= 2
                and progress_lines(log.read_text(), "training")
            ):
                assert child.poll() is None, log.read_text()
                time.sleep(0.5)
            child.send_signal(signal.SIGINT)
            child.wait(timeout=120)
        finally:
            child.kill()
    err = log.read_text()
    assert child.returncode == ExitCode.INTERRUPTED, err
    shown = progress_lines(err, "training")
    # The first line comes at the first tenth (40 steps), or 30 s in on a loaded machine.
    first = re.match(r"archiver: training (\d+)/400 \(.*\) loss \d", shown[0])
    assert first is not None and 1 <= int(first.group(1)) <= 40, shown
    steps = [int(p.name.removeprefix("step-")) for p in (out / "checkpoints").glob("step-*")]
    assert len(steps) >= 2 and all(step % 3 == 0 for step in steps), steps
