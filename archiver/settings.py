"""Typed settings: command line > environment (`ARCHIVER_*`) > TOML config file > defaults.

This module owns where every setting comes from and the embedded defaults: one home directory
(`ARCHIVER_HOME`, else `$XDG_DATA_HOME/archiver`) holding catalog.db, vault/ and cache/. It
validates shapes (types, choices) but opens nothing: the catalog and storage modules own
connecting, and report their own errors.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from archiver.errors import ConfigError, ExitCode

VaultStorageClass = Literal["GLACIER", "DEEP_ARCHIVE", "GLACIER_IR"]


def _xdg_dir(variable: str, fallback: str) -> Path:
    base = os.environ.get(variable) or str(Path.home() / fallback)
    return Path(base) / "archiver"


def default_home() -> Path:
    return _xdg_dir("XDG_DATA_HOME", ".local/share")


def default_config_file() -> Path:
    return _xdg_dir("XDG_CONFIG_HOME", ".config") / "config.toml"


class Settings(BaseSettings):
    """Every setting, typed. Field `x` is `--x` where the CLI has it, `ARCHIVER_X`, or `x` in TOML."""

    model_config = SettingsConfigDict(env_prefix="ARCHIVER_", extra="forbid", validate_default=True)

    config_file: Path | None = Field(
        default=None, description="TOML config file (default: $XDG_CONFIG_HOME/archiver/config.toml)"
    )
    home: Path = Field(default_factory=default_home, description="holds catalog.db, vault/, cache/")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the catalog (default: sqlite:///HOME/catalog.db)"
    )
    vault: str | None = Field(
        default=None, description="archive tier: a local path or s3://bucket/prefix (default: HOME/vault)"
    )
    vault_storage_class: VaultStorageClass = "GLACIER"
    vault_journal_storage_class: Literal["STANDARD", "GLACIER_IR"] = Field(
        default="STANDARD",
        description="class of the vault's record journal, profiles and models: readable without a restore",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint (MinIO, Ceph, a test server); default: AWS_ENDPOINT_URL"
    )
    s3_max_attempts: int = Field(default=5, ge=1, le=20, description="botocore standard-mode retries")

    # --- engine and gate ---
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="where renders run: auto = CUDA when present, else CPU"
    )
    lpips_backbone: Literal["pretrained", "random-test-only"] = Field(
        default="pretrained",
        description="LPIPS trunk; random-test-only: plumbing tests only, its verdicts mean nothing",
    )
    lpips_weights: Path | None = Field(
        default=None,
        description="the pretrained trunk file (default: the environment's share/archiver/, "
        "where `archiver gate install-weights` puts it)",
    )
    lpips_allow_trunk: str = Field(
        default="",
        pattern=r"^([0-9a-f]{64}(,[0-9a-f]{64})*)?$",
        description="comma-separated SHA-256s of trunks other than the known one that may be used",
    )
    gate_lpips_max: float = Field(default=0.05, gt=0, description="mean LPIPS over the image")
    gate_worst_tile_max: float = Field(default=0.10, gt=0, description="mean LPIPS of the worst tile")
    gate_psnr_min: float = Field(default=30.0, ge=0, description="PSNR floor, dB")
    gate_colour_max: float = Field(
        default=3.0, gt=0, description="ΔE00 the worst 1% of the low-passed image may reach"
    )
    gate_siblings_k: int = Field(
        default=8,
        ge=1,
        le=1000,
        description="nearest siblings (by colour thumbnail) judged in full per render",
    )
    gate_sibling_margin_db: float = Field(
        default=3.0, ge=0, description="own PSNR minus the nearest sibling's"
    )
    seed_search_max: int = Field(default=8, ge=1, le=10_000, description="seeds tried per image at most")
    seed_search_batch: int = Field(default=4, ge=1, le=256, description="seeds rendered per pipeline call")
    determinism_sample_every: int = Field(
        default=16,
        ge=1,
        le=1_000_000,
        description="render the first accepted record of a run and every Nth after it twice "
        "(1: every record); a pair that differs makes every later one checked",
    )

    # --- sweep: packing small originals, and the prices behind the dry-run estimate ---
    pack_threshold: int = Field(default=1 << 20, ge=0, description="originals under this size are packed")
    pack_target: int = Field(default=64 << 20, ge=1, description="bytes at which a pack is cut")
    claim_lease_minutes: float = Field(default=30, gt=0, description="how long a sweep's claim lasts")
    sweep_bank_every: int = Field(
        default=128,
        ge=1,
        description="a sweep vaults, journals and releases what it proved after this many proofs",
    )
    sweep_bank_seconds: float = Field(
        default=30,
        gt=0,
        description="... or after this many seconds since it last did, whichever comes first",
    )
    review_required: bool = Field(
        default=False,
        description="a person approves each image before its hot copy goes (`sweep --require-review`, "
        "`archiver review`, `archiver release`); edge exports then carry approved records only",
    )
    # USD per GB-month (AWS us-east-1 list prices); STANDARD is the hot tier originals leave.
    price_standard: float = Field(default=0.023, ge=0)
    price_glacier_ir: float = Field(default=0.004, ge=0)
    price_glacier: float = Field(default=0.0036, ge=0)
    price_deep_archive: float = Field(default=0.00099, ge=0)
    # What rehydration costs (archiver.sweep.cost, "The net saving"); README's settings table
    # names each default's source.
    price_egress: float = Field(default=0.09, ge=0, description="USD per GB the origin sends")
    price_cpu_core_hour: float = Field(default=0.04, ge=0, description="USD per CPU core-hour")
    price_gpu_hour: float = Field(default=0.70, ge=0, description="USD per GPU-hour")
    cost_misses_per_image: float = Field(
        default=1.0,
        ge=0,
        description="CDN misses (renders) per archived image a month, where no access log counts them",
    )
    cost_vault_read_share: float = Field(
        default=0.01, ge=0, le=1, description="share of misses served from the vault original"
    )
    cost_render_seconds: float = Field(
        default=0.0389,
        gt=0,
        description="render wall time where no model's render was measured on this device",
    )
    cost_render_cores: int = Field(default=2, ge=1, description="... and the CPU cores it holds")
    cost_model_bytes: int = Field(
        default=6_175_196, ge=0, description="model size the survey assumes without --model"
    )

    # --- mount ---
    cache_size: int = Field(
        default=10 << 30, ge=0, description="bytes the mount's on-disk cache of verified reads may hold"
    )
    cache_min_free: int = Field(
        default=1 << 30, ge=0, description="free bytes the cache leaves on its file system, whatever its size"
    )
    memory_cache_size: int = Field(
        default=256 << 20, ge=0, description="bytes of verified reads the mount also keeps in memory"
    )
    render_workers: int = Field(default=2, ge=1, le=64, description="renders the mount runs at once")
    train_threads: int = Field(
        default=2, ge=1, le=256, description="torch threads per `archiver train` step (each holds a CPU slot)"
    )
    mount_read_timeout: float = Field(
        default=120, gt=0, description="seconds an open waits for a render before it fails with ETIMEDOUT"
    )
    mount_refresh_seconds: float = Field(
        default=30, ge=0, description="how often the mount checks the catalog for newly archived assets"
    )
    mount_render_retry_seconds: float = Field(
        default=300, ge=0, description="after a failed render, go straight to the vault for this long"
    )

    # --- serve: the HTTP origin (its cache, memory, render workers and refresh are the mount's above) ---
    serve_host: str = Field(
        default="127.0.0.1", min_length=1, description="address `archiver serve` binds: loopback by default"
    )
    serve_port: int = Field(
        default=8080, ge=0, le=65535, description="port `archiver serve` binds; 0 picks a free one"
    )
    serve_render_queue: int = Field(
        default=32,
        ge=0,
        le=100_000,
        description="renders that may wait for a worker; beyond them a cold key gets 503 at once",
    )
    serve_render_timeout: float = Field(
        default=30, gt=0, description="seconds a request waits for its render before 503 + Retry-After"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The config file's own location follows the same precedence as every other setting,
        # so it is resolved before the TOML source is built.
        cli_config = (
            init_settings.init_kwargs.get("config_file")
            if isinstance(init_settings, InitSettingsSource)
            else None
        )
        path, explicit = config_file_path(cli_config)
        if explicit and not path.is_file():
            missing = f"config file {path} does not exist: create it or point --config-file elsewhere"
            if cli_config:
                raise CommandLineError(missing, field="config_file")
            raise ConfigError(missing.replace("--config-file", "ARCHIVER_CONFIG_FILE"))
        toml_source: PydanticBaseSettingsSource
        try:
            # Read once here so a malformed file is reported as a config error, not a traceback.
            if path.is_file():
                tomllib.loads(path.read_text(encoding="utf-8"))
            toml_source = TomlConfigSettingsSource(settings_cls, toml_file=path)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}; fix or remove it") from None
        return (init_settings, env_settings, toml_source)

    # --- derived locations: defaults hang off the home directory ---

    @property
    def catalog_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'catalog.db'}"

    @property
    def vault_url(self) -> str:
        return self.vault or str(self.home / "vault")

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    def resolved_device(self) -> str:
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device is cuda but torch sees no CUDA GPU: set ARCHIVER_DEVICE=cpu or auto")
        return self.device

    def ensure_home(self) -> Path:
        """Create the home directory if needed and prove it is writable, or raise ConfigError."""
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            # os.access lies for root; a real write is the only honest check.
            with tempfile.NamedTemporaryFile(dir=self.home, prefix=".write-test-"):
                pass
        except OSError as exc:
            raise ConfigError(
                f"archiver home {self.home} is not a writable directory ({exc.strerror}): "
                "set ARCHIVER_HOME to a directory you can write"
            ) from None
        return self.home


class CommandLineError(ConfigError):
    """A setting given on the command line has a bad value: a usage error (exit 2), which the CLI
    shows in click's style for the option `field` names. The same value from the environment or
    the config file is a ConfigError (exit 3)."""

    exit_code = ExitCode.USAGE

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def config_file_path(cli_config: Path | str | None = None) -> tuple[Path, bool]:
    """The config file settings are read from, and whether it was named (--config-file, then
    ARCHIVER_CONFIG_FILE) rather than the default location (which may be absent)."""
    explicit = cli_config or os.environ.get("ARCHIVER_CONFIG_FILE")
    return (Path(explicit) if explicit else default_config_file()), bool(explicit)


def did_you_mean(name: str, prefix: str = "") -> str:
    """' (did you mean PREFIX+X?)' for the setting name closest to `name`, or ''."""
    close = difflib.get_close_matches(name.lower(), Settings.model_fields, n=1, cutoff=0.7)
    return f" (did you mean {prefix}{close[0].upper() if prefix else close[0]}?)" if close else ""


ENV_PREFIX = "ARCHIVER_"
# ARCHIVER_* variables that are not settings: the CPU slot count (archiver.cpuslots), and the test,
# demo and set-up scripts' own.
NOT_SETTINGS = ("ARCHIVER_CPU_SLOTS", "ARCHIVER_TEST_", "ARCHIVER_DEMO_", "ARCHIVER_SETUP_")


def unknown_environment(environ: dict[str, str] | None = None) -> list[str]:
    """One warning per ARCHIVER_* variable that is no setting but is close to one (a typo that would
    otherwise be ignored in silence, as the environment may hold other programs' variables)."""
    warnings = []
    for variable in sorted(os.environ if environ is None else environ):
        name = variable.upper()
        if not name.startswith(ENV_PREFIX) or name.startswith(NOT_SETTINGS):
            continue
        field = name[len(ENV_PREFIX) :].lower()
        hint = did_you_mean(field, ENV_PREFIX) if field not in Settings.model_fields else ""
        if hint:
            warnings.append(f"{variable} is not a setting and is ignored{hint}")
    return warnings


def load_settings(**cli: Any) -> Settings:
    """Build Settings from the command line's values (None means 'not given') over env, file, defaults.

    A bad value that came from the command line raises CommandLineError (exit 2); one from the
    environment or the config file ConfigError (exit 3). An unknown key in the config file names
    the setting it is closest to."""
    given = {name: value for name, value in cli.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "settings"
        if first["type"] == "extra_forbidden":
            path, _ = config_file_path(given.get("config_file"))
            raise ConfigError(
                f"unknown setting {field!r} in config file {path}{did_you_mean(field)}: "
                "fix or remove it (`archiver config show` lists the settings)"
            ) from None
        if field in given:
            raise CommandLineError(f"{first['msg']} (got {given[field]!r})", field=field) from None
        raise ConfigError(
            f"invalid setting {field!r}: {first['msg']}; fix --{field.replace('_', '-')}, "
            f"ARCHIVER_{field.upper()} or the config file"
        ) from None


def setting_sources(cli: dict[str, Any]) -> dict[str, str]:
    """Where each setting's effective value comes from: "command line (--x)", "environment
    (ARCHIVER_X)", "config file PATH", or "default" (the same precedence as `load_settings`)."""
    given = {name for name, value in cli.items() if value is not None}
    environ = {name.upper() for name in os.environ}
    path, _ = config_file_path(cli.get("config_file"))
    in_file: set[str] = set()
    if path.is_file():
        # load_settings has reported a file it cannot read already.
        with contextlib.suppress(OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            in_file = set(tomllib.loads(path.read_text(encoding="utf-8")))
    sources = {}
    for name in Settings.model_fields:
        if name in given:
            sources[name] = f"command line (--{name.replace('_', '-')})"
        elif f"{ENV_PREFIX}{name.upper()}" in environ:
            sources[name] = f"environment ({ENV_PREFIX}{name.upper()})"
        elif name in in_file:
            sources[name] = f"config file {path}"
        else:
            sources[name] = "default"
    return sources


def default_of(name: str) -> Any:
    """A setting's default: the one place defaults live (the gate's thresholds, the seed search and
    the mount read theirs from here rather than repeating them)."""
    return Settings.model_fields[name].get_default(call_default_factory=True)
