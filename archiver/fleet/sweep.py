"""The sweep's prove step on a Ray cluster (`archiver sweep --ray`).

Owns: `SourceReader` (a picklable `read(key)` that opens the source where it runs), `ModelRef` (a
registered model as plain fields, verified against its hash and loaded where it runs), `ProveBatch`
(the Ray Data actor: the model and the gate loaded once per actor, the group's sibling index taken
once from the object store, a Proof made for each key of a batch) and `FleetSweep`: a `Sweep`
whose `prove` step runs on the cluster.

Must not: commit, upload, journal or delete anything on a worker. Workers read the source and
compute; every catalog commit, vault upload and hot delete is the driver's, through the code a
single-process sweep runs (`archiver.sweep.run.Sweep`: the same guards, the same kill boundaries).
A killed actor is restarted by Ray and its batch proved again (nothing of it was committed); a
killed driver leaves claims that the next sweep takes over, as a killed single-process sweep's.
"""

from __future__ import annotations

import os
import pickle
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from archiver.catalog import queries
from archiver.catalog.database import Catalog
from archiver.catalog.models import Model
from archiver.engine.registry import LoadedModel
from archiver.fleet.cluster import Cluster, Pool, actor_errors
from archiver.gate import Gate
from archiver.prove import Group, GroupProver, Proof, SearchLimits
from archiver.storage import HotStore, Vault, make_s3_client, open_hot_store
from archiver.sweep.run import Sweep, SweepConfig, SweepProgress

# Test-only: the path of a token file; the first actor to take it (unlink) SIGKILLs itself in the
# middle of a batch, after proving one key and before returning any (tests/test_fleet_ray.py).
KILL_ACTOR_ENV = "ARCHIVER_TEST_KILL_ACTOR"
DEFAULT_BATCH = 4  # keys per actor call: a killed actor costs at most this many proofs again


@dataclass
class SourceReader:
    """`read(key) -> bytes` on the hot source at `url`, opened lazily where it is called: it
    pickles as its URL and S3 settings, never as an open client."""

    url: str
    s3_endpoint_url: str | None = None
    s3_max_attempts: int = 5

    def __post_init__(self) -> None:
        self._store: HotStore | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_store": None}

    def store(self) -> HotStore:
        if self._store is None:
            self._store = open_hot_store(
                self.url,
                client_factory=lambda: make_s3_client(
                    endpoint_url=self.s3_endpoint_url, max_attempts=self.s3_max_attempts
                ),
            )
        return self._store

    def __call__(self, key: str) -> bytes:
        return self.store().get(key)


@dataclass(frozen=True)
class ModelRef:
    """A registered model as the catalog holds it; `load` verifies its files (at the same path on
    every node: a shared volume or the same image) against the hash before it loads them."""

    id: int
    name: str
    sha256: str
    path: str
    pipeline_class: str

    @classmethod
    def of(cls, row: Model) -> ModelRef:
        return cls(row.id, row.name, row.sha256, row.path, row.pipeline_class)

    def load(self, device: str) -> LoadedModel:
        from archiver.engine.registry import load_to_render

        row = Model(
            id=self.id, name=self.name, sha256=self.sha256, path=self.path, pipeline_class=self.pipeline_class
        )
        return load_to_render(row, device)


class ProveBatch:
    """The Ray Data actor: loads the model and the gate once, takes the shared group once, then
    proves each batch of keys. Returns each key's (Proof, original bytes) pickled: Ray Data moves
    them as one binary column, and only the driver unpickles (both sides run this same code)."""

    def __init__(
        self,
        group: Any,
        reader: SourceReader,
        model: ModelRef,
        device: Callable[[], str],
        gate: Callable[[], Gate],
        limits: SearchLimits,
        threads: int,
        kill_token: str | None = None,
    ) -> None:
        import ray
        import torch

        torch.set_num_threads(threads)  # its share of the node: actors beside it have theirs
        if isinstance(group, ray.ObjectRef):  # nested in the constructor's arguments: not resolved by Ray
            group = ray.get(group)
        self.prover = GroupProver.for_group(group, reader, model.load(device()), gate(), limits)
        self.kill_token = kill_token

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        keys = [str(key) for key in batch.column("key").to_pylist()]
        proved = []
        for index, key in enumerate(keys):
            proof, data = self.prover.prove(key)
            proved.append(pickle.dumps((proof, data), protocol=pickle.HIGHEST_PROTOCOL))
            if index + 1 < len(keys):
                self._maybe_die()
        return pa.table({"key": pa.array(keys, pa.string()), "proof": pa.array(proved, pa.binary())})

    def _maybe_die(self) -> None:
        """Test-only: the actor that takes the token dies here, in the middle of its batch."""
        if self.kill_token is None:
            return
        try:
            os.unlink(self.kill_token)
        except FileNotFoundError:
            return
        Path(self.kill_token + ".killed").write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)


def _no_model_here() -> LoadedModel:
    raise AssertionError("the fleet's driver loads no model: its actors do")


class FleetSweep(Sweep):
    """A sweep whose prove step (render + gate, per image) runs on a Ray actor pool; everything
    else (listing, claims, commits, vault, journal, deletes) is `Sweep`'s, on the driver."""

    def __init__(
        self,
        catalog: Catalog,
        store: HotStore,
        vault: Vault,
        config: SweepConfig,
        *,
        cluster: Cluster,
        pool: Pool,
        reader: SourceReader,
        device: Callable[[], str],  # picklable, as `gate`: called on each actor
        gate: Callable[[], Gate],  # picklable: it runs on each actor
        limits: SearchLimits,
        batch_size: int = DEFAULT_BATCH,
        progress: SweepProgress | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(
            catalog,
            store,
            vault,
            config,
            load_model=_no_model_here,
            gate=gate,
            limits=limits,
            progress=progress,
            clock=clock,
        )
        self.cluster, self.pool, self.reader, self.device = cluster, pool, reader, device
        self.batch_size = batch_size

    def prove(self, keys: list[str]) -> Iterator[tuple[Proof, bytes | None, int]]:
        ray = self.cluster.ray
        limits = self.proving_limits()
        with self.catalog.begin() as session:
            model = ModelRef.of(queries.get_model(session, self.config.model))
            captions = self._model_captions(session)
        # The sibling index: built once, here, by streaming the group; every actor takes the same
        # copy from the object store (not one build per actor, and not the group's pixels).
        group = Group.build(
            self._source_images,
            self.reader,
            captions,
            k=limits.siblings,
            caption_keys=self.config.caption_keys,
        )
        group_ref = ray.put(group)
        proofs = ray.data.from_items([{"key": key} for key in keys]).map_batches(
            ProveBatch,
            fn_constructor_kwargs={
                "group": group_ref,
                "reader": self.reader,
                "model": model,
                "device": self.device,
                "gate": self._gate,
                "limits": limits,
                "threads": self.pool.threads,
                "kill_token": os.environ.get(KILL_ACTOR_ENV),
            },
            batch_size=self.batch_size,
            batch_format="pyarrow",
            **self.pool.map_args(ray),
        )
        with actor_errors():
            for batch in proofs.iter_batches(batch_size=None, batch_format="pyarrow"):
                for blob in batch.column("proof").to_pylist():
                    proof, data = pickle.loads(blob)
                    yield proof, data, model.id
