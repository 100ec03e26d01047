"""The project's one exception hierarchy and its documented exit codes.

Every error a user can cause or meet derives from `ArchiverError` and carries the exit code that
`archiver` ends with. Only `archiver.cli.main` catches them: it prints the one-line message (which
says what to do next) and exits with the code; tracebacks are shown only with `--debug`.
Lower layers raise these; they never print or exit.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the `archiver` command. Documented in README.md; pinned by tests."""

    OK = 0
    FAILURE = 1  # an unexpected error (a bug): rerun with --debug and report it
    USAGE = 2  # bad command line (click's own code for usage errors)
    CONFIG = 3  # a bad setting: malformed URL, unreadable config file, unwritable home
    CATALOG = 4  # catalog unreachable, or its schema is not the one this version uses
    STORAGE = 5  # a hot source or the vault failed: missing bucket, credentials, endpoint
    NOT_FOUND = 6  # an asset, object or model the command names does not exist
    PENDING = 7  # an archive restore is still in progress: try again later
    INTEGRITY = 8  # bytes do not match their recorded checksum; nothing was changed
    MODEL = 9  # a model is missing, changed on disk, or cannot be loaded
    INTERRUPTED = 130  # stopped by SIGINT / Ctrl-C


class ArchiverError(Exception):
    """Base of every error meant for the user. `str(err)` is a single line saying what and what to do."""

    exit_code: ExitCode = ExitCode.FAILURE


class ConfigError(ArchiverError):
    exit_code = ExitCode.CONFIG


class CatalogError(ArchiverError):
    exit_code = ExitCode.CATALOG


class CatalogUnreachable(CatalogError):
    """The database could not be opened or connected to."""


class SchemaMismatch(CatalogError):
    """The catalog's schema revision is not the one this version of archiver uses."""


class NotFound(ArchiverError):
    exit_code = ExitCode.NOT_FOUND


class IntegrityError(ArchiverError):
    """Bytes did not match the checksum they were recorded with."""

    exit_code = ExitCode.INTEGRITY


class ModelError(ArchiverError):
    exit_code = ExitCode.MODEL


class MountError(ArchiverError):
    """A mount point that cannot be used (missing, not a directory, not empty, already mounted, a
    dead mount, or not mounted for umount) or a mount that fusermount refused. Exit code USAGE:
    the command line named it."""

    exit_code = ExitCode.USAGE


class ReviewError(ArchiverError):
    """A review decision that cannot be taken (the asset was already released, the gate left no
    record to approve, a sweep is releasing it right now) or a malformed decisions CSV. Nothing
    was changed. Exit code USAGE: the command named an input it cannot process."""

    exit_code = ExitCode.USAGE


class SourceInUse(ArchiverError):
    """A source that cannot be forgotten: some of its assets have a record or a vault copy (archived,
    restored, or on their way), or a sweep holds claims on it. Nothing was changed. Exit code USAGE."""

    exit_code = ExitCode.USAGE


# --- storage: backend-neutral errors; only archiver.storage maps provider errors onto these ---


class StorageError(ArchiverError):
    """A hot source or the vault failed. `temporary` says whether retrying later may succeed."""

    exit_code = ExitCode.STORAGE
    temporary: bool = False


class NoSuchBucket(StorageError):
    pass


class NoSuchObject(StorageError, NotFound):
    exit_code = ExitCode.NOT_FOUND


class AuthorizationError(StorageError):
    """Credentials are missing, invalid, or not allowed to do this."""


class EndpointUnreachable(StorageError):
    temporary = True


class TemporaryStorageError(StorageError):
    """Throttling, a 5xx or a timeout that botocore's retries did not get past."""

    temporary = True


class NotRestored(StorageError):
    """The object sits in an archive tier: request a restore and wait before reading it."""

    exit_code = ExitCode.PENDING


class ObjectChanged(StorageError):
    """An object changed (or vanished) since it was verified, so a guarded delete refused to remove it."""


class ChecksumMismatch(StorageError, IntegrityError):
    exit_code = ExitCode.INTEGRITY


class UnsafeKey(StorageError):
    """A key that could escape its source (`..`, a leading slash, control characters)."""

    exit_code = ExitCode.USAGE


# --- engine: originals the engine cannot regenerate, and A1111 infotext it cannot read ---


class UnsupportedImage(ArchiverError):
    """An original the engine will not regenerate: empty, not an image, truncated, corrupt, a
    decompression bomb, an unsupported format or mode, or an EXIF orientation other than 1.

    Exit code USAGE: the user named an input this command cannot process. The file itself is left
    alone (it stays hot); a sweep records `reason` and moves on instead of exiting.
    `reason` is a short stable code (`truncated`, `alpha`, `exif-orientation`, …) for reports and
    the catalog; `detail` is the human sentence; `str(err)` is the one line for the user.
    """

    exit_code = ExitCode.USAGE

    def __init__(self, key: str, reason: str, detail: str) -> None:
        self.key = key
        self.reason = reason
        self.detail = detail
        super().__init__(f"{key}: {reason}: {detail}; the image stays hot and is not archived")


class InfotextError(ArchiverError, ValueError):
    """An AUTOMATIC1111 "parameters" string that cannot be read, e.g. `Steps: abc`.

    A ValueError too, so callers parsing text can treat it like any other bad value.
    """

    exit_code = ExitCode.USAGE
