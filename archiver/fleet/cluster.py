"""Where fleet work runs: connecting to Ray, and how many actors with which resources.

Owns importing ray (one line naming the extra when it is missing: `require_ray`), connecting
(`connected`: an address, `RAY_ADDRESS`, or a local Ray on loopback started for this command),
refusing a SQLite catalog for a cluster of more than one machine (`check_catalog`), and sizing the
actor pool (`size_pool`). Must not: know about assets, the gate or the catalog beyond its URL.

Why SQLite is refused beyond one machine: the driver alone writes the catalog, so a SQLite file
would work, but it lives on the driver's disk, next to nothing else of the cluster; a fleet's
drivers come and go (a pod restarts elsewhere), and several of them must share claims. PostgreSQL
is the catalog a cluster can share.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from archiver.errors import ConfigError

EXTRA = "pip install 'archiver[ray]'"
LOCAL_NAMES = {"", "auto", "local", "localhost", "127.0.0.1", "::1", "[::1]"}
GPU_ACTOR_CPUS = 1.0  # a GPU actor's CPU share: it decodes, encodes and runs the gate's CPU parts


def require_ray() -> ModuleType:
    """The ray module, or a ConfigError naming the extra (exit 3): one line, nothing started."""
    try:
        import ray
        import ray.data  # the extra's `data` part: the actor pools
    except ImportError:
        raise ConfigError(f"--ray needs Ray, which is not installed here: {EXTRA}") from None
    return ray


def address_host(address: str) -> str:
    """The host of a Ray address: `ray://host:10001`, `host:6379`, `auto` (this machine)."""
    rest = address.removeprefix("ray://")
    if rest.startswith("["):  # [::1]:6379
        return rest[: rest.find("]") + 1]
    return rest.rsplit(":", 1)[0] if rest.count(":") == 1 else rest


def is_local_address(address: str) -> bool:
    """True when `address` names a Ray on this machine (or none: a local Ray is started)."""
    host = address_host(address.strip()).lower()
    if host in LOCAL_NAMES or host in (socket.gethostname().lower(), socket.getfqdn().lower()):
        return True
    try:
        return socket.gethostbyname(host).startswith("127.")
    except OSError:
        return False


def check_catalog(catalog_url: str | None, address: str, nodes: int | None = None) -> None:
    """Refuse a SQLite catalog with a Ray beyond this machine: by its address before connecting,
    by its number of live nodes after. (None: the command uses no catalog.)"""
    if catalog_url is None or not catalog_url.startswith("sqlite"):
        return
    if not is_local_address(address) or (nodes is not None and nodes > 1):
        where = f"{nodes} nodes" if nodes and nodes > 1 else repr(address)
        raise ConfigError(
            f"a SQLite catalog works only with a Ray on this machine, not a cluster ({where}): "
            "use a PostgreSQL catalog for a cluster (ARCHIVER_DATABASE_URL=postgresql://...)"
        )


@dataclass(frozen=True)
class Pool:
    """The actor pool of a fleet step: how many actors, and what each asks of Ray."""

    actors: int
    num_cpus: float
    num_gpus: float

    @property
    def threads(self) -> int:
        """torch threads per actor: its CPU share, at least one."""
        return max(1, int(self.num_cpus))

    def remote_args(self) -> dict[str, Any]:
        """What each actor asks of Ray: its CPU share, and one GPU where there are GPUs."""
        args: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            args["num_gpus"] = self.num_gpus
        return args

    def map_args(self, ray: ModuleType) -> dict[str, Any]:
        """Ray Data `map_batches` arguments: a fixed pool of `actors` actors (`compute`, which
        replaces the deprecated `concurrency`) with each actor's resources."""
        return {"compute": ray.data.ActorPoolStrategy(size=self.actors), **self.remote_args()}


def size_pool(resources: Mapping[str, float], actors: int | None = None) -> Pool:
    """One actor per GPU (each `num_gpus=1`) where the cluster has GPUs; else CPU actors that
    share the CPUs but one, which is left to Ray Data's own tasks and the driver (a pool of two
    1-CPU actors on 2 CPUs stalls behind the input task: hence fractions on small machines)."""
    cpus = float(resources.get("CPU", 1.0))
    gpus = int(resources.get("GPU", 0.0))
    if gpus >= 1:
        count = actors or gpus
        return Pool(count, min(GPU_ACTOR_CPUS, cpus / (count + 1)), 1.0)
    count = actors or max(1, int(cpus) - 1)
    spare = max(cpus - 1.0, cpus / 2.0)
    return Pool(count, max(0.01, round(spare / count, 2)), 0.0)


@dataclass(frozen=True)
class Cluster:
    ray: ModuleType
    address: str  # as asked for ("" = RAY_ADDRESS or a local Ray)
    resources: Mapping[str, float]
    nodes: int

    def pool(self, actors: int | None = None) -> Pool:
        return size_pool(self.resources, actors)


# Quiet: the command has its own progress display, and actors' output is theirs (errors still
# come back as exceptions).
INIT_OPTIONS: dict[str, Any] = {
    "include_dashboard": False,
    "logging_level": logging.WARNING,
    "log_to_driver": False,
}


def start_local(num_cpus: int | None = None) -> None:
    """Start a Ray on this machine, for this process, on 127.0.0.1 only.

    Ray otherwise takes the machine's routable address (and listens on every interface) so that
    other nodes could join; it keeps to loopback only where it believes clusters unsupported,
    which its RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER switch says (read once, at import: hence both)."""
    ray = require_ray()
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray._private.ray_constants.ENABLE_RAY_CLUSTER = False
    ray.init(num_cpus=num_cpus, **INIT_OPTIONS)


@contextmanager
def connected(address: str, catalog_url: str | None) -> Iterator[Cluster]:
    """A connection to Ray for one command, checked against the catalog, and closed after it.

    An already initialised Ray (a test's, or a notebook's) is used and left running. Otherwise
    `address` (or `RAY_ADDRESS`) is joined; with neither, a Ray on loopback is started for this
    command and stopped with it. Ray Data's own progress bars are turned off: the command shows
    one progress display for the whole run."""
    ray = require_ray()
    address = address or os.environ.get("RAY_ADDRESS", "")
    check_catalog(catalog_url, address)
    # Ray prints its raylet's messages ("a worker died ...") on the driver's stdout, from a thread;
    # a command's stdout is its report (`--json`), so while connected they go to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        ours = not ray.is_initialized()
        if ours and address:
            ray.init(address=address, **INIT_OPTIONS)
        elif ours:
            start_local()
        try:
            nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
            check_catalog(catalog_url, address, nodes)
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False
            context.enable_operator_progress_bars = False
            context.print_on_execution_start = False
            context.enable_auto_log_stats = False
            yield Cluster(ray, address, dict(ray.cluster_resources()), nodes)
        finally:
            if ours:
                ray.shutdown()


def unwrap(error: BaseException) -> BaseException:
    """The error a Ray task or actor raised, out of Ray's wrappers."""
    for _ in range(8):
        cause = getattr(error, "cause", None)
        if not isinstance(cause, BaseException):
            cause = error.__cause__
        if cause is None or cause is error:
            break
        error = cause
    return error


@contextmanager
def actor_errors() -> Iterator[None]:
    """Re-raise an error an actor raised as itself: an ArchiverError (a model changed on disk, a
    trunk missing on a node) keeps its one line and exit code instead of Ray's traceback."""
    try:
        yield
    except Exception as error:
        cause = unwrap(error)
        if cause is not error and isinstance(cause, Exception):
            raise cause from None
        raise
