"""botocore's own retries, exercised for real: throttling and 5xx answers injected in front of
moto's server, and a loopback server that never answers (timeouts). archiver writes no retry loop;
these prove that its client configuration makes botocore retry, then report one neutral error."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from archiver.errors import TemporaryStorageError
from archiver.storage.s3 import S3HotStore, make_s3_client


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def inject_failures(client: Any, status: int, code: str, count: int) -> list[int]:
    """Answer the first `count` requests with `status`/`code` instead of sending them; returns the log."""
    attempts: list[int] = []

    def before_send(request: Any, **_: Any) -> AWSResponse | None:
        attempts.append(len(attempts) + 1)
        if len(attempts) > count:
            return None  # let it through to moto
        body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
        return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, _Raw(body))

    client.meta.events.register("before-send.s3.*", before_send)
    return attempts


@pytest.mark.parametrize(
    ("status", "code"), [(503, "SlowDown"), (500, "InternalError"), (503, "ServiceUnavailable")]
)
def test_transient_errors_are_retried_until_they_pass(
    moto_server: str, bucket: str, status: int, code: str
) -> None:
    client = make_s3_client(endpoint_url=moto_server, max_attempts=4)
    store = S3HotStore(bucket, "", client)
    attempts = inject_failures(client, status, code, count=3)
    store.put("a.png", b"bytes")
    assert len(attempts) >= 4  # three refused, the fourth went through (the HEAD after it too)


@pytest.mark.parametrize(("status", "code"), [(503, "SlowDown"), (500, "InternalError")])
def test_transient_errors_past_the_retry_budget_are_reported(
    moto_server: str, bucket: str, status: int, code: str
) -> None:
    client = make_s3_client(endpoint_url=moto_server, max_attempts=3)
    store = S3HotStore(bucket, "", client)
    attempts = inject_failures(client, status, code, count=100)
    with pytest.raises(TemporaryStorageError) as caught:
        store.get("a.png")
    assert len(attempts) == 3  # exactly botocore's budget: no loop of ours on top
    assert caught.value.temporary and "\n" not in str(caught.value)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections on 127.0.0.1 and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_read_timeouts_are_retried_then_reported(moto_server: str, silent_server: str) -> None:
    client = make_s3_client(endpoint_url=silent_server, max_attempts=2, connect_timeout=1, read_timeout=0.5)
    attempts = inject_failures(client, 200, "", count=0)  # count attempts only
    with pytest.raises(TemporaryStorageError, match=r"timed out|timeout"):
        S3HotStore("some-bucket", "", client).get("a.png")
    assert len(attempts) == 2
