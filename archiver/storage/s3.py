"""S3 backends (AWS, or any S3 API via AWS_ENDPOINT_URL): a hot store over a bucket prefix, and a
vault that writes archive storage classes and drives restores.

This module owns every boto3 call and, in `translate_error`, the one mapping from provider errors
onto the neutral storage errors; every call runs inside `_translating`. Retries are botocore's own
(standard mode): nothing here loops.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shlex
from collections.abc import Iterator, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    CredentialRetrievalError,
    FlexibleChecksumError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from archiver.errors import (
    AuthorizationError,
    ChecksumMismatch,
    ConfigError,
    EndpointUnreachable,
    NoSuchBucket,
    NoSuchObject,
    NotRestored,
    StorageError,
    TemporaryStorageError,
    UnsafeKey,
)
from archiver.storage.base import (
    ARCHIVE_CLASSES,
    Leftover,
    ObjectInfo,
    OnSkip,
    RestoreState,
    RestoreStatus,
    RestoreTier,
    VaultCopy,
    b64_to_hex,
    check_restore_args,
    class_to_write,
    confirm_checksum,
    hex_to_b64,
    not_restored,
    object_changed,
    safe_key,
    sha256_hex,
)

log = logging.getLogger(__name__)

S3Client = Any  # boto3 ships no type stubs; the client is typed loosely on purpose (as in storage/)

_AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AllAccessDisabled",
        "AccountProblem",
        "403",
        "Forbidden",
    }
)
_TEMPORARY_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "503",
        "500",
    }
)
_DIGEST_CODES = frozenset({"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"})
_NO_CREDENTIALS = "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"


def make_s3_client(
    endpoint_url: str | None = None,
    max_attempts: int = 5,
    connect_timeout: float = 5,
    read_timeout: float = 60,
) -> S3Client:
    """An S3 client from boto3's standard credential chain (env, AWS_PROFILE, config files, SSO,
    instance roles). Without `endpoint_url`, botocore honours AWS_ENDPOINT_URL(_S3) itself.
    Retries (throttling, 5xx, connection errors) are botocore's standard mode, `max_attempts` in all.
    """
    config = Config(
        # total_max_attempts counts the first try too (as AWS_MAX_ATTEMPTS does); botocore's
        # "max_attempts" would count retries only, one more request than the name says.
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    # A fresh Session per client: credentials are resolved per session and cached there.
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def translate_error(exc: Exception, *, bucket: str, key: str | None = None) -> StorageError:
    """The neutral storage error for a botocore exception (after botocore's retries gave up).

    The one place where provider error codes are interpreted; every message is one line naming the
    bucket or object and saying what to do next.
    """
    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = " ".join(str(exc.response.get("Error", {}).get("Message", "")).split())
        not_found = code in ("NoSuchKey", "404", "NotFound")
        # A 404 on a bucket-level request (HeadBucket, ListObjectsV2) means the bucket is missing.
        if code == "NoSuchBucket" or (not_found and key is None):
            return NoSuchBucket(f"bucket {bucket!r} does not exist: check the URL or create the bucket")
        if not_found:
            return NoSuchObject(f"{where} does not exist")
        if code == "InvalidObjectState":
            return not_restored(where, in_progress=False)
        if code in _AUTH_CODES:
            return AuthorizationError(
                f"access to {where} denied ({code}): check the credentials and their permissions"
            )
        if code in ("PreconditionFailed", "412"):  # only guarded deletes send preconditions
            return object_changed(where)
        if code in _DIGEST_CODES:
            return ChecksumMismatch(
                f"{where}: the store rejected the upload's checksum ({code}); upload it again"
            )
        if code in _TEMPORARY_CODES or (status >= 500 and status != 501):
            return TemporaryStorageError(
                f"{where}: S3 is throttling or failing ({code or status}) after retries; try again later"
            )
        return StorageError(f"{where}: S3 refused the request ({code or status}: {message})")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return AuthorizationError(
            _NO_CREDENTIALS if isinstance(exc, NoCredentialsError) else f"{_NO_CREDENTIALS} ({exc})"
        )
    if isinstance(exc, ReadTimeoutError | ConnectionClosedError):
        return TemporaryStorageError(f"{where}: the S3 endpoint stopped answering ({exc}); try again later")
    if isinstance(exc, BotoConnectionError):
        endpoint = getattr(exc, "kwargs", {}).get("endpoint_url", "the S3 endpoint")
        return EndpointUnreachable(
            f"cannot reach {endpoint} for {where}: check AWS_ENDPOINT_URL and the network, then retry"
        )
    if isinstance(exc, FlexibleChecksumError):
        return ChecksumMismatch(f"{where}: downloaded bytes do not match the stored checksum; read it again")
    return StorageError(f"{where}: {' '.join(str(exc).split())}")  # e.g. ParamValidationError


@contextlib.contextmanager
def _translating(bucket: str, key: str | None = None) -> Iterator[None]:
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise translate_error(exc, bucket=bucket, key=key) from exc


_ONGOING = re.compile(r'ongoing-request\s*=\s*"(true|false)"')
_EXPIRY = re.compile(r'expiry-date\s*=\s*"([^"]+)"')


def parse_restore_header(header: str | None, storage_class: str | None) -> RestoreState:
    """Restore state from a HEAD's `x-amz-restore` header and `x-amz-storage-class` (absent = STANDARD)."""
    if (storage_class or "STANDARD") not in ARCHIVE_CLASSES:
        return RestoreState(RestoreStatus.NOT_ARCHIVED)
    if not header:
        return RestoreState(RestoreStatus.ARCHIVED)
    ongoing = _ONGOING.search(header)
    if ongoing is None:
        raise StorageError(
            f"unrecognised x-amz-restore header {header!r}: report this with the endpoint used"
        )
    if ongoing.group(1) == "true":
        return RestoreState(RestoreStatus.IN_PROGRESS)
    expiry_match = _EXPIRY.search(header)
    expiry = None
    if expiry_match:
        try:
            expiry = parsedate_to_datetime(expiry_match.group(1)).astimezone(UTC)
        except (TypeError, ValueError):
            raise StorageError(f"unrecognised expiry-date in x-amz-restore header {header!r}") from None
    return RestoreState(RestoreStatus.AVAILABLE, expiry)


def _full_sha256(response: dict[str, Any]) -> str | None:
    """The object's SHA-256 (hex) from a HEAD/GET with ChecksumMode, if it covers the whole object.

    Multipart uploads report a checksum of part checksums ("…-N", ChecksumType COMPOSITE), which is
    not the hash of the bytes, so it is not returned.
    """
    value = response.get("ChecksumSHA256")
    if not value or "-" in value or response.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
        return None
    return b64_to_hex(value)


def _normalise_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    if not prefix:
        return ""
    try:
        safe_key(prefix)
    except UnsafeKey as exc:
        raise ConfigError(f"bad S3 prefix {prefix!r}: {exc}") from None
    return prefix + "/"


class _S3Objects:
    """A bucket, a key prefix and a client: the parts both S3 backends share."""

    def __init__(self, bucket: str, prefix: str, client: S3Client) -> None:
        self.bucket = bucket
        self.prefix = _normalise_prefix(prefix)
        self.client = client

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def full_key(self, key: str) -> str:
        return self.prefix + safe_key(key)

    def where(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def translating(self, key: str | None = None) -> contextlib.AbstractContextManager[None]:
        return _translating(self.bucket, None if key is None else self.prefix + key)

    def head_raw(self, key: str, version_id: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.full_key(key), "ChecksumMode": "ENABLED"}
        if version_id:
            params["VersionId"] = version_id
        try:
            with self.translating(key):
                response: dict[str, Any] = self.client.head_object(**params)
                return response
        except NoSuchObject:
            # HEAD has no body, so a missing bucket is a bare 404 too: ask once, to say which.
            missing_bucket = self._missing_bucket()
            if missing_bucket is not None:
                raise missing_bucket from None
            raise

    def _missing_bucket(self) -> NoSuchBucket | None:
        try:
            with self.translating():
                self.client.head_bucket(Bucket=self.bucket)
        except NoSuchBucket as exc:
            return exc
        except StorageError:
            pass  # cannot tell (e.g. no permission to HEAD the bucket): the object's error stands
        return None

    def info(self, key: str, response: dict[str, Any]) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            etag=response.get("ETag"),
            last_modified=response["LastModified"].astimezone(UTC),
            storage_class=response.get("StorageClass", "STANDARD"),
            sha256=_full_sha256(response),
            metadata=dict(response.get("Metadata") or {}) or None,
        )

    def put_raw(
        self, key: str, data: bytes, storage_class: str, metadata: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        # ChecksumAlgorithm must accompany ChecksumSHA256: botocore then sends
        # x-amz-sdk-checksum-algorithm, without which some servers (moto) drop the checksum.
        with self.translating(key):
            response: dict[str, Any] = self.client.put_object(
                Bucket=self.bucket,
                Key=self.full_key(key),
                Body=data,
                StorageClass=storage_class,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=hex_to_b64(sha256_hex(data)),
                Metadata=dict(metadata or {}),
            )
            return response

    def list(self, prefix: str, page_size: int) -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix, PaginationConfig={"PageSize": page_size}
        )
        with self.translating():
            for page in pages:
                for item in page.get("Contents", ()):
                    yield ObjectInfo(
                        key=item["Key"][len(self.prefix) :],
                        size=int(item["Size"]),
                        etag=item.get("ETag"),
                        last_modified=item["LastModified"].astimezone(UTC),
                        storage_class=item.get("StorageClass", "STANDARD"),
                    )

    def get_raw(self, key: str) -> bytes:
        # With ChecksumMode, botocore verifies the body against the stored checksum itself.
        with self.translating(key):
            response = self.client.get_object(
                Bucket=self.bucket, Key=self.full_key(key), ChecksumMode="ENABLED"
            )
            data: bytes = response["Body"].read()
            return data


class S3HotStore:
    """A hot store over an S3 bucket; keys are the objects' full keys.

    `select` is the prefix a source URL named (`s3://bucket/shoes` selects `shoes/`): `list` lists
    only under it, and keys stay full (`shoes/red.png`), as the aws CLI, rclone and s3fs name them.
    `prefix` roots the store's keys under a prefix instead; sources opened from a URL never do that
    (`open_hot_store`), tests use it to share one bucket.
    """

    def __init__(
        self, bucket: str, prefix: str, client: S3Client, *, select: str = "", page_size: int = 1000
    ) -> None:
        self._s3 = _S3Objects(bucket, prefix, client)
        self._select = _normalise_prefix(select)
        self.page_size = page_size

    @property
    def url(self) -> str:
        return self._s3.url

    @property
    def selection(self) -> str:
        return self._select

    def list(self, prefix: str = "", on_skip: OnSkip | None = None) -> Iterator[ObjectInfo]:
        s3, select = self._s3, self._select
        if not prefix.startswith(select):
            if not select.startswith(prefix):
                return  # `prefix` lies outside the selection
            prefix = select
        for info in s3.list(prefix, self.page_size):
            if info.key.endswith("/") and info.size == 0:
                continue  # a "folder" marker made by consoles, not an object
            try:
                safe_key(info.key)
            except UnsafeKey as exc:
                log.warning("skipping %s: %s", s3.where(info.key), exc)
                if on_skip is not None:
                    on_skip(info.key, "unsafe-key")
                continue
            yield info

    def head(self, key: str) -> ObjectInfo:
        return self._s3.info(key, self._s3.head_raw(key))

    def get(self, key: str) -> bytes:
        return self._s3.get_raw(key)

    def put(self, key: str, data: bytes) -> ObjectInfo:
        self._s3.put_raw(key, data, "STANDARD")
        return self.head(key)

    def delete_if_unchanged(self, key: str, expected: ObjectInfo) -> None:
        if expected.etag is None:
            raise ValueError("delete_if_unchanged needs the ObjectInfo returned by head/list/put")
        s3 = self._s3
        current = self.head(key)
        if current.etag != expected.etag:
            raise object_changed(s3.where(key))
        # If-Match makes the delete itself conditional where the server supports it (AWS since
        # 2025-09); the HEAD above guards servers that ignore the header.
        with s3.translating(key):
            s3.client.delete_object(Bucket=s3.bucket, Key=s3.full_key(key), IfMatch=expected.etag)


class S3Vault:
    """A vault at `s3://bucket/prefix` writing `storage_class` (GLACIER, DEEP_ARCHIVE, GLACIER_IR)."""

    def __init__(self, bucket: str, prefix: str, storage_class: str, client: S3Client) -> None:
        class_to_write(None, storage_class)  # a class no backend knows is refused here, not at a put
        self._s3 = _S3Objects(bucket, prefix, client)
        self._storage_class = storage_class

    @property
    def url(self) -> str:
        return self._s3.url

    @property
    def storage_class(self) -> str:
        return self._storage_class

    def put(
        self,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        storage_class: str | None = None,
    ) -> VaultCopy:
        s3 = self._s3
        digest = sha256_hex(data)
        wanted = class_to_write(storage_class, self._storage_class)
        version_id = s3.put_raw(key, data, wanted, metadata).get("VersionId")
        # Read the checksum back from the store: the PUT's own response only echoes what we sent.
        stored = s3.head_raw(key, version_id)
        confirm_checksum(digest, _full_sha256(stored), uri=s3.where(key))
        stored_class = stored.get("StorageClass", "STANDARD")
        if stored_class != wanted:
            raise StorageError(
                f"{s3.where(key)} was stored as {stored_class}, not {wanted}: "
                "the endpoint does not support that storage class; choose another vault"
            )
        return VaultCopy(
            uri=s3.where(key),
            key=key,
            storage_class=stored_class,
            version_id=version_id,
            sha256=digest,
            size=int(stored["ContentLength"]),
        )

    def head(self, key: str) -> ObjectInfo:
        return self._s3.info(key, self._s3.head_raw(key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self._s3.list(prefix, 1000)

    def restore_state(self, key: str) -> RestoreState:
        response = self._s3.head_raw(key)
        return parse_restore_header(response.get("Restore"), response.get("StorageClass"))

    def request_restore(self, key: str, tier: RestoreTier, days: int) -> RestoreState:
        check_restore_args(tier, days)
        s3 = self._s3
        response = s3.head_raw(key)
        storage_class = response.get("StorageClass")
        state = parse_restore_header(response.get("Restore"), storage_class)
        if state.status in (RestoreStatus.NOT_ARCHIVED, RestoreStatus.IN_PROGRESS):
            return state
        if storage_class == "DEEP_ARCHIVE" and tier == "Expedited":
            raise ConfigError(
                f"{s3.where(key)} is in DEEP_ARCHIVE, which has no Expedited tier: use Standard or Bulk"
            )
        # ARCHIVED: 202 starts a restore. AVAILABLE: 200 moves the restored copy's expiry.
        with s3.translating(key):
            try:
                s3.client.restore_object(
                    Bucket=s3.bucket,
                    Key=s3.full_key(key),
                    RestoreRequest={"Days": days, "GlacierJobParameters": {"Tier": tier}},
                )
            except ClientError as exc:
                # 409: someone else's request got there first, which is what we asked for.
                if error_code(exc) != "RestoreAlreadyInProgress":
                    raise
        return self.restore_state(key)

    def get(self, key: str) -> bytes:
        try:
            return self._s3.get_raw(key)
        except NotRestored:
            # S3 refuses the same way before and during a restore; say which one it is.
            if self.restore_state(key).status is RestoreStatus.IN_PROGRESS:
                raise not_restored(self._s3.where(key), in_progress=True) from None
            raise

    def delete(self, key: str) -> None:
        s3 = self._s3
        with s3.translating(key):
            s3.client.delete_object(Bucket=s3.bucket, Key=s3.full_key(key))

    def leftovers(self) -> Iterator[Leftover]:
        """Multipart uploads under the vault's prefix that were started and never completed: S3
        keeps (and bills) their parts until they are aborted. archiver's own writes are single
        PUTs, so these come from other tools."""
        s3 = self._s3
        pages = s3.client.get_paginator("list_multipart_uploads").paginate(Bucket=s3.bucket, Prefix=s3.prefix)
        with s3.translating():
            for page in pages:
                for upload in page.get("Uploads", ()):
                    key, upload_id = upload["Key"], upload["UploadId"]
                    yield Leftover(
                        f"s3://{s3.bucket}/{key} (incomplete multipart upload)",
                        0,
                        upload["Initiated"].astimezone(UTC),
                        f"aws s3api abort-multipart-upload --bucket {s3.bucket} --key {shlex.quote(key)} "
                        f"--upload-id {upload_id}",
                    )
