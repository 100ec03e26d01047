"""moto's S3 in server mode on 127.0.0.1: a real HTTP endpoint for tests, no mocked boto3.

Fixtures, registered as a plugin by tests/conftest.py (`support.s3_server`):
    moto_server    session: starts the server, yields its URL; sets fake credentials, a region and
                   AWS_ENDPOINT_URL for the session (and hides ~/.aws), restores them at the end.
    s3_client      session: a client from archiver's own make_s3_client, pointed at the server.
    bucket         function: a fresh, uniquely named bucket.
    moto_restores  function: a `MotoRestores` to hold restores "in progress"; always unset after.

The server runs in this process (a thread), so its state is shared by every test of the session;
tests use their own buckets instead of resetting it (`reset_moto` exists for those that must).
However many places register the fixtures, the server is started once per process.
"""

from __future__ import annotations

import json
import logging
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from archiver.storage.s3 import make_s3_client

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # never ask an instance-metadata service for credentials
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",  # a developer's ~/.aws stays out
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
}
UNSET_ENV = (
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL_S3",
)

_server: dict[str, Any] = {"users": 0}  # one server per process, however many fixture definitions


def _acquire() -> str:
    if _server["users"] == 0:
        patch = pytest.MonkeyPatch()
        for name in UNSET_ENV:
            patch.delenv(name, raising=False)
        for name, value in FAKE_ENV.items():
            patch.setenv(name, value)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log per request
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # 0: a free port
        server.start()
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        patch.setenv("AWS_ENDPOINT_URL", url)
        _server.update(server=server, patch=patch, url=url)
    _server["users"] += 1
    return str(_server["url"])


def _release() -> None:
    _server["users"] -= 1
    if _server["users"] == 0:
        _server.pop("server").stop()
        _server.pop("patch").undo()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    url = _acquire()
    try:
        yield url
    finally:
        _release()


@pytest.fixture(scope="session")
def s3_client(moto_server: str) -> Any:
    return make_s3_client(endpoint_url=moto_server, max_attempts=2)


@pytest.fixture
def bucket(s3_client: Any) -> str:
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    return name


def moto_api(url: str, path: str, payload: dict[str, Any] | None = None) -> None:
    """POST to moto's control API (`/moto-api/...`) on the server at `url`."""
    body = json.dumps(payload or {}).encode()
    request = urllib.request.Request(f"{url}/moto-api/{path}", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def reset_moto(url: str) -> None:
    moto_api(url, "reset")


class MotoRestores:
    """Drives moto's restore state machine (state-manager model `s3::keyrestore`).

    How moto 5 behaves (moto/s3/models.py, FakeKey): each key counts the requests that read it
    (HEAD, GET, RestoreObject, ...). Once a restore was requested, every response recomputes the
    status: with progression "manual" and `times` N it moves one step (None -> IN_PROGRESS ->
    RESTORED) when the count has reached N, and the count restarts. moto answers
    `ongoing-request="false"` (restored!) while the status is still None, so holding a restore
    needs one step first. The recipe, used by the tests:

        moto_restores.step_after(1)     # the next read after the request steps to IN_PROGRESS
        vault.request_restore(...)      # its closing HEAD reports IN_PROGRESS
        moto_restores.hold()            # stays IN_PROGRESS whatever is read
        moto_restores.finish()          # default ("immediate"): the next read reports restored
    """

    MODEL = "s3::keyrestore"

    def __init__(self, url: str) -> None:
        self.url = url

    def step_after(self, times: int) -> None:
        payload = {"model_name": self.MODEL, "transition": {"progression": "manual", "times": times}}
        moto_api(self.url, "state-manager/set-transition", payload)

    def hold(self) -> None:
        self.step_after(10**9)

    def finish(self) -> None:
        moto_api(self.url, "state-manager/unset-transition", {"model_name": self.MODEL})


@pytest.fixture
def moto_restores(moto_server: str) -> Iterator[MotoRestores]:
    restores = MotoRestores(moto_server)
    try:
        yield restores
    finally:
        restores.finish()
