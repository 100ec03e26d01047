"""S3 backends against moto's server on 127.0.0.1 (real HTTP, real botocore), plus the pure parts:
the x-amz-restore parser, the error translator and store URLs."""

from __future__ import annotations

import base64
import hashlib
import socket
import time
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from archiver.errors import (
    AuthorizationError,
    ChecksumMismatch,
    ConfigError,
    EndpointUnreachable,
    NoSuchBucket,
    NoSuchObject,
    NotRestored,
    ObjectChanged,
    StorageError,
    TemporaryStorageError,
)
from archiver.storage import (
    LocalHotStore,
    LocalVault,
    RestoreStatus,
    S3HotStore,
    S3Vault,
    make_s3_client,
    open_hot_store,
    open_vault,
    source_url,
)
from archiver.storage.base import sha256_hex
from archiver.storage.s3 import parse_restore_header, translate_error

if TYPE_CHECKING:  # its fixtures come through conftest.py's plugins
    from support.s3_server import MotoRestores


# --- pure parts ---


@pytest.mark.parametrize(
    ("header", "storage_class", "status", "expiry"),
    [
        (None, "GLACIER", RestoreStatus.ARCHIVED, None),
        (None, "DEEP_ARCHIVE", RestoreStatus.ARCHIVED, None),
        (None, None, RestoreStatus.NOT_ARCHIVED, None),
        (None, "STANDARD", RestoreStatus.NOT_ARCHIVED, None),
        (None, "GLACIER_IR", RestoreStatus.NOT_ARCHIVED, None),
        ('ongoing-request="true"', "GLACIER", RestoreStatus.IN_PROGRESS, None),
        (
            'ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"',
            "GLACIER",
            RestoreStatus.AVAILABLE,
            datetime(2012, 12, 21, tzinfo=UTC),
        ),
        ('ongoing-request="false"', "DEEP_ARCHIVE", RestoreStatus.AVAILABLE, None),
    ],
)
def test_parse_restore_header(
    header: str | None, storage_class: str | None, status: RestoreStatus, expiry: datetime | None
) -> None:
    state = parse_restore_header(header, storage_class)
    assert state.status is status
    assert state.expiry == expiry
    if expiry is not None:
        assert state.expiry is not None and state.expiry.tzinfo is not None


def test_parse_restore_header_refuses_garbage() -> None:
    with pytest.raises(StorageError, match="unrecognised"):
        parse_restore_header("something else", "GLACIER")


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (client_error("NoSuchBucket", 404), NoSuchBucket),
        (client_error("NoSuchKey", 404), NoSuchObject),
        (client_error("404", 404), NoSuchObject),
        (client_error("InvalidObjectState", 403), NotRestored),
        (client_error("AccessDenied", 403), AuthorizationError),
        (client_error("InvalidAccessKeyId", 403), AuthorizationError),
        (client_error("SignatureDoesNotMatch", 403), AuthorizationError),
        (client_error("SlowDown", 503), TemporaryStorageError),
        (client_error("InternalError", 500), TemporaryStorageError),
        (client_error("SomethingNew", 502), TemporaryStorageError),
        (client_error("PreconditionFailed", 412), ObjectChanged),
        (client_error("BadDigest", 400), ChecksumMismatch),
        (client_error("NotImplemented", 501), StorageError),
        (NoCredentialsError(), AuthorizationError),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), EndpointUnreachable),
        (ConnectTimeoutError(endpoint_url="http://127.0.0.1:9"), EndpointUnreachable),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:9"), TemporaryStorageError),
    ],
)
def test_translate_error(exc: Exception, expected: type[StorageError]) -> None:
    err = translate_error(exc, bucket="bkt", key="a/b.jpg")
    assert type(err) is expected
    assert "\n" not in str(err)
    assert "bkt" in str(err) or isinstance(err, AuthorizationError)


def test_translate_error_bucket_level_404_is_a_missing_bucket() -> None:
    assert isinstance(translate_error(client_error("404", 404), bucket="bkt"), NoSuchBucket)


def test_no_credentials_message_says_what_to_set() -> None:
    assert str(translate_error(NoCredentialsError(), bucket="b")) == (
        "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
    )


@pytest.mark.parametrize(
    "url",
    [
        "",
        "s3://",
        "s3:/x",
        "s3:bucket",
        "http://x",
        "ftp://host/p",
        "data:2024/x",
        "s3://Bad_Bucket/x",
        "s3://ab/x",
        "s3://192.168.1.1/x",
        "s3://a..b/x",
        "s3://bucket/x?versionId=1",
        "s3://bucket/a/../b",
        "file://host/x",
        "file:relative",
    ],
)
def test_malformed_urls_are_config_errors(url: str) -> None:
    for opener in (open_hot_store, lambda u: open_vault(u, "GLACIER")):
        with pytest.raises(ConfigError) as info:
            opener(url)
        assert "\n" not in str(info.value)


def test_vault_storage_class_is_checked(tmp_path: Path) -> None:
    for storage_class in ("STANDARD", "glacier", "ONEZONE_IA"):
        with pytest.raises(ConfigError, match="not an archive class"):
            open_vault(str(tmp_path), storage_class)


def test_open_local_stores(tmp_path: Path) -> None:
    assert isinstance(open_hot_store(str(tmp_path)), LocalHotStore)
    assert isinstance(open_hot_store(tmp_path.as_uri()), LocalHotStore)
    vault = open_vault(str(tmp_path / "vault"), "DEEP_ARCHIVE")
    assert isinstance(vault, LocalVault) and vault.storage_class == "DEEP_ARCHIVE"


@pytest.mark.s3
def test_open_s3_stores_honours_aws_endpoint_url(bucket: str) -> None:
    # No client_factory: make_s3_client() finds moto through AWS_ENDPOINT_URL (set by moto_server).
    store = open_hot_store(f"s3://{bucket}/pre/fix/")
    assert isinstance(store, S3HotStore) and store.url == f"s3://{bucket}"
    store.put("pre/fix/a.jpg", b"a")
    assert [o.key for o in store.list()] == ["pre/fix/a.jpg"]
    vault = open_vault(f"s3://{bucket}", "GLACIER_IR")
    assert isinstance(vault, S3Vault) and vault.url == f"s3://{bucket}"


@pytest.mark.s3
def test_a_prefix_selects_and_does_not_reroot(bucket: str, s3_client: Any) -> None:
    """Invariant 6: keys are full object keys; the URL's prefix only selects (as aws s3 ls does)."""
    for key in ("shoes/a.png", "shoes/deep/b.png", "shoesx/c.png", "top.png"):
        s3_client.put_object(Bucket=bucket, Key=key, Body=key.encode())
    store = open_hot_store(f"s3://{bucket}/shoes")
    assert (store.url, store.selection) == (f"s3://{bucket}", "shoes/")
    assert [o.key for o in store.list()] == ["shoes/a.png", "shoes/deep/b.png"]
    assert [o.key for o in store.list("shoes/deep/")] == ["shoes/deep/b.png"]
    assert [o.key for o in store.list("top")] == []  # outside the selection
    assert store.get("shoes/a.png") == b"shoes/a.png" and store.get("top.png") == b"top.png"
    assert source_url(f"s3://{bucket}/shoes/") == source_url(f"s3://{bucket}") == f"s3://{bucket}"


# --- against moto's server ---


@pytest.mark.s3
def test_vault_round_trip_with_restore_held_in_progress(
    s3_client: Any,
    bucket: str,
    moto_restores: MotoRestores,
) -> None:
    vault = S3Vault(bucket, "vault", "GLACIER", s3_client)
    data = b"\x89PNG original bytes" * 100
    key = "shoes/red.png"
    copy = vault.put(key, data)
    assert copy.uri == f"s3://{bucket}/vault/{key}"
    assert (copy.storage_class, copy.sha256, copy.size) == ("GLACIER", sha256_hex(data), len(data))
    info = vault.head(key)
    assert (info.storage_class, info.sha256, info.size) == ("GLACIER", copy.sha256, len(data))
    assert vault.restore_state(key).status is RestoreStatus.ARCHIVED
    with pytest.raises(NotRestored, match="request a restore"):
        vault.get(key)

    moto_restores.step_after(1)
    assert vault.request_restore(key, "Expedited", 1).status is RestoreStatus.IN_PROGRESS
    moto_restores.hold()
    for _ in range(3):
        assert vault.restore_state(key).status is RestoreStatus.IN_PROGRESS
    with pytest.raises(NotRestored, match="in progress"):
        vault.get(key)
    assert vault.request_restore(key, "Expedited", 1).status is RestoreStatus.IN_PROGRESS
    # What a second worker would send while it is in progress: moto answers 200, AWS 409.
    s3_client.restore_object(Bucket=bucket, Key=f"vault/{key}", RestoreRequest={"Days": 1})

    moto_restores.finish()
    state = vault.restore_state(key)
    assert state.status is RestoreStatus.AVAILABLE
    assert state.expiry is not None and state.expiry > datetime.now(UTC)
    restored = vault.get(key)
    assert restored == data and sha256_hex(restored) == copy.sha256
    again = vault.request_restore(key, "Standard", 3)  # 200: extends the restored copy
    assert again.status is RestoreStatus.AVAILABLE

    vault.delete(key)
    vault.delete(key)  # idempotent
    with pytest.raises(NoSuchObject):
        vault.head(key)


@pytest.mark.s3
def test_instant_retrieval_and_deep_archive_tiers(s3_client: Any, bucket: str) -> None:
    instant = S3Vault(bucket, "", "GLACIER_IR", s3_client)
    instant.put("k", b"ir")
    assert instant.get("k") == b"ir"
    assert instant.request_restore("k", "Bulk", 1).status is RestoreStatus.NOT_ARCHIVED
    deep = S3Vault(bucket, "deep", "DEEP_ARCHIVE", s3_client)
    deep.put("k", b"deep")
    with pytest.raises(ConfigError, match="Expedited"):
        deep.request_restore("k", "Expedited", 1)
    assert deep.request_restore("k", "Bulk", 1).status is RestoreStatus.AVAILABLE  # moto: immediate


@pytest.mark.s3
def test_missing_bucket(s3_client: Any) -> None:
    hot = S3HotStore("no-such-bucket-here", "p", s3_client)
    vault = S3Vault("no-such-bucket-here", "p", "GLACIER", s3_client)
    for call in (
        lambda: hot.head("k"),
        lambda: hot.get("k"),
        lambda: list(hot.list()),
        lambda: hot.put("k", b"x"),
        lambda: vault.put("k", b"x"),
        lambda: vault.restore_state("k"),
    ):
        with pytest.raises(NoSuchBucket, match="no-such-bucket-here"):
            call()


@pytest.mark.s3
def test_invalid_bucket_name_is_one_line(s3_client: Any) -> None:
    with pytest.raises(StorageError) as info:
        S3HotStore("Bad_Bucket!", "", s3_client).head("k")
    assert "\n" not in str(info.value) and "Bad_Bucket!" in str(info.value)


@pytest.mark.s3
def test_missing_object(s3_client: Any, bucket: str) -> None:
    hot = S3HotStore(bucket, "", s3_client)
    with pytest.raises(NoSuchObject, match=f"s3://{bucket}/nope"):
        hot.head("nope")
    with pytest.raises(NoSuchObject):
        hot.get("nope")


@pytest.mark.s3
def test_missing_credentials(
    moto_server: str, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    store = S3HotStore(bucket, "", make_s3_client(endpoint_url=moto_server, max_attempts=1))
    started = time.monotonic()
    with pytest.raises(AuthorizationError, match="no AWS credentials found"):
        store.head("k")
    assert time.monotonic() - started < 5


@pytest.mark.s3
def test_unreachable_endpoint_fails_fast(bucket: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    client = make_s3_client(f"http://127.0.0.1:{port}", max_attempts=1, connect_timeout=1, read_timeout=1)
    started = time.monotonic()
    with pytest.raises(EndpointUnreachable, match=f"127.0.0.1:{port}"):
        S3HotStore(bucket, "", client).head("k")
    assert time.monotonic() - started < 5


@pytest.mark.s3
def test_checksum_read_back_catches_a_changed_object(moto_server: str, s3_client: Any, bucket: str) -> None:
    """Another writer replaces the object between our PUT and our HEAD: the read-back must notice."""
    client = make_s3_client(endpoint_url=moto_server, max_attempts=1)

    def overwrite(**_: Any) -> None:
        s3_client.put_object(
            Bucket=bucket, Key="v/k", Body=b"tampered", StorageClass="GLACIER", ChecksumAlgorithm="SHA256"
        )

    client.meta.events.register("after-call.s3.PutObject", overwrite)
    with pytest.raises(ChecksumMismatch, match="differs"):
        S3Vault(bucket, "v", "GLACIER", client).put("k", b"original")


@pytest.mark.s3
def test_checksum_read_back_refuses_an_object_without_checksum(
    moto_server: str,
    s3_client: Any,
    bucket: str,
) -> None:
    client = make_s3_client(endpoint_url=moto_server, max_attempts=1)

    def overwrite_without_checksum(**_: Any) -> None:
        # Without x-amz-sdk-checksum-algorithm, moto stores no checksum at all.
        s3_client.put_object(Bucket=bucket, Key="v/k", Body=b"original", StorageClass="GLACIER")

    client.meta.events.register("after-call.s3.PutObject", overwrite_without_checksum)
    with pytest.raises(ChecksumMismatch, match="no SHA-256"):
        S3Vault(bucket, "v", "GLACIER", client).put("k", b"original")


@pytest.mark.s3
def test_get_verifies_the_stored_checksum(s3_client: Any, bucket: str) -> None:
    # moto keeps whatever checksum a PUT declares without checking it (AWS would answer BadDigest),
    # which lets this test store bytes under a wrong SHA-256, as a corrupted object would look.
    wrong = base64.b64encode(hashlib.sha256(b"other bytes").digest()).decode()
    s3_client.put_object(
        Bucket=bucket, Key="k", Body=b"bytes", ChecksumAlgorithm="SHA256", ChecksumSHA256=wrong
    )
    with pytest.raises(ChecksumMismatch, match="do not match"):
        S3HotStore(bucket, "", s3_client).get("k")


@pytest.mark.s3
def test_paginated_listing_fetches_several_pages(moto_server: str, s3_client: Any, bucket: str) -> None:
    for i in range(25):
        s3_client.put_object(Bucket=bucket, Key=f"src/{i:03d}.jpg", Body=b"x")
    s3_client.put_object(Bucket=bucket, Key="other/x.jpg", Body=b"x")
    client = make_s3_client(endpoint_url=moto_server)
    requests: list[str] = []
    client.meta.events.register("before-call.s3", lambda model, **_: requests.append(model.name))
    store = S3HotStore(bucket, "src", client, page_size=10)
    keys = [o.key for o in store.list()]
    assert keys == [f"{i:03d}.jpg" for i in range(25)]
    assert requests == ["ListObjectsV2"] * 3  # three pages, and no request per object


@pytest.mark.s3
def test_listing_skips_unsafe_keys_and_folder_markers(s3_client: Any, bucket: str) -> None:
    nfd = unicodedata.normalize("NFD", "p/café.jpg")
    for key in ("p/ok.jpg", "p/a/../b.jpg", "p/dir/", "p/x//y", nfd):
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"")
    skipped: list[tuple[str, str]] = []
    store = S3HotStore(bucket, "p", s3_client)
    assert [o.key for o in store.list(on_skip=lambda k, r: skipped.append((k, r)))] == ["ok.jpg"]
    # Every unsafe key is reported; a console's folder marker is not an object at all.
    assert sorted(skipped) == sorted(
        [("a/../b.jpg", "unsafe-key"), ("x//y", "unsafe-key"), (nfd.removeprefix("p/"), "unsafe-key")]
    )


@pytest.mark.s3
def test_delete_if_unchanged_refuses_after_overwrite(moto_server: str, s3_client: Any, bucket: str) -> None:
    store = S3HotStore(bucket, "hot", s3_client)
    verified = store.put("img.jpg", b"original")
    store.put("img.jpg", b"edited")
    with pytest.raises(ObjectChanged, match="not deleted"):
        store.delete_if_unchanged("img.jpg", verified)
    assert store.get("img.jpg") == b"edited"


@pytest.mark.s3
def test_delete_if_unchanged_is_conditional_on_the_server(
    moto_server: str, s3_client: Any, bucket: str
) -> None:
    """A writer slips in between our HEAD and our DELETE: If-Match makes the server refuse."""
    client = make_s3_client(endpoint_url=moto_server, max_attempts=1)
    store = S3HotStore(bucket, "hot", client)
    verified = store.put("img.jpg", b"original")

    def overwrite(**_: Any) -> None:
        s3_client.put_object(Bucket=bucket, Key="hot/img.jpg", Body=b"edited just now")

    client.meta.events.register("before-call.s3.DeleteObject", overwrite)
    with pytest.raises(ObjectChanged):
        store.delete_if_unchanged("img.jpg", verified)
    assert store.get("img.jpg") == b"edited just now"
