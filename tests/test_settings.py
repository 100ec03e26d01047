"""Settings precedence (command line > ARCHIVER_* > TOML file > defaults) and bad settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.errors import ConfigError
from archiver.settings import load_settings


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_defaults_hang_off_home(archiver_env: Path) -> None:
    settings = load_settings()
    assert settings.home == archiver_env
    assert settings.catalog_url == f"sqlite:///{archiver_env / 'catalog.db'}"
    assert settings.vault_url == str(archiver_env / "vault")
    assert settings.cache_dir == archiver_env / "cache"
    assert settings.vault_storage_class == "GLACIER"


def test_xdg_data_home_is_the_default_home(
    archiver_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("ARCHIVER_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert load_settings().home == tmp_path / "data" / "archiver"


def test_precedence_cli_over_env_over_file_over_default(
    archiver_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path, 'vault = "s3://from-file/v"\nvault_storage_class = "DEEP_ARCHIVE"\ns3_max_attempts = 7\n'
    )
    monkeypatch.setenv("ARCHIVER_CONFIG_FILE", str(config))
    from_file = load_settings()
    assert (from_file.vault, from_file.vault_storage_class, from_file.s3_max_attempts) == (
        "s3://from-file/v",
        "DEEP_ARCHIVE",
        7,
    )
    monkeypatch.setenv("ARCHIVER_VAULT", "s3://from-env/v")
    assert load_settings().vault == "s3://from-env/v"
    assert load_settings(vault="s3://from-cli/v").vault == "s3://from-cli/v"
    assert load_settings(vault=None).vault == "s3://from-env/v"  # an option not given is no override


def test_default_config_file_is_read_from_xdg_config(archiver_env: Path, tmp_path: Path) -> None:
    path = tmp_path / "xdg-config" / "archiver" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text('vault_storage_class = "GLACIER_IR"\n', encoding="utf-8")
    assert load_settings().vault_storage_class == "GLACIER_IR"


def test_config_file_given_on_command_line(archiver_env: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, 'database_url = "postgresql://db.example/catalog"\n')
    assert load_settings(config_file=config).catalog_url == "postgresql://db.example/catalog"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("vault = [", "cannot read config file"),
        ('vault_storage_class = "STANDARD"', "invalid setting 'vault_storage_class'"),
        ("no_such_setting = 1", "unknown setting 'no_such_setting'"),
        ("s3_max_attempts = 0", "invalid setting 's3_max_attempts'"),
    ],
)
def test_bad_config_files_are_one_line_config_errors(
    archiver_env: Path, tmp_path: Path, body: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(config_file=write_config(tmp_path, body))
    assert "\n" not in str(caught.value)


def test_missing_explicit_config_file(archiver_env: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_file=tmp_path / "nope.toml")


def test_bad_environment_value(archiver_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHIVER_S3_MAX_ATTEMPTS", "lots")
    with pytest.raises(ConfigError, match="ARCHIVER_S3_MAX_ATTEMPTS"):
        load_settings()


def test_home_that_cannot_be_a_directory(archiver_env: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match=r"not a writable directory.*ARCHIVER_HOME"):
        load_settings(home=blocker / "home").ensure_home()


def test_ensure_home_creates_it(archiver_env: Path) -> None:
    assert not archiver_env.exists()
    load_settings().ensure_home()
    assert archiver_env.is_dir() and list(archiver_env.iterdir()) == []


def test_defaults_live_in_settings_only() -> None:
    """The gate's thresholds and the seed search take their defaults from the settings."""
    from archiver.gate import Thresholds
    from archiver.gate.siblings import SiblingIndex
    from archiver.prove import SearchLimits
    from archiver.settings import Settings

    fields = Settings.model_fields
    t, limits = Thresholds(), SearchLimits()
    assert (t.lpips_max, t.worst_tile_max, t.psnr_min, t.colour_max, t.sibling_margin_db) == tuple(
        fields[f"gate_{name}"].default
        for name in ("lpips_max", "worst_tile_max", "psnr_min", "colour_max", "sibling_margin_db")
    )
    assert (limits.max_seeds, limits.batch_size, limits.siblings) == (
        fields["seed_search_max"].default,
        fields["seed_search_batch"].default,
        fields["gate_siblings_k"].default,
    )
    assert SiblingIndex(lambda key: None).k == fields["gate_siblings_k"].default
