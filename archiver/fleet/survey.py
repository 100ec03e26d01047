"""The survey's describing on a Ray cluster (`archiver survey --ray`).

Owns `DescribeActor` (a `survey.run.Describer` per actor: the LPIPS trunk loaded once, the source
opened where it runs) and `ray_batches`, which streams the listing's batches of keys to the actors
and hands their outcomes back in listing order. Grouping, pricing and ranking stay the driver's
(`archiver.survey.run`): they need the keys in order and hold one summary per group.

Must not: keep pixels on the driver, or more than a bounded window of batches in flight. Why Ray
Core actors here and Ray Data for the sweep: the survey is one ordered stream of unknown length
(the paginated listing), which a window of `IN_FLIGHT` batches per actor keeps in order with flat
memory, where Ray Data would take the whole key list up front.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from archiver.fleet.cluster import Cluster, Pool, actor_errors
from archiver.fleet.sweep import SourceReader
from archiver.survey.run import DescribeBatches, Describer, Outcome, SurveyConfig

IN_FLIGHT = 2  # batches queued per actor: one running, one waiting, so an actor never idles


class DescribeActor:
    def __init__(self, reader: SourceReader, config: SurveyConfig, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)  # the trunk on its share of the node (see DenseDescriptor.one_thread)
        self.describer = Describer(reader, config)

    def describe(self, keys: list[str]) -> list[Outcome]:
        return self.describer.describe(keys)


def ray_batches(cluster: Cluster, pool: Pool, reader: SourceReader, config: SurveyConfig) -> DescribeBatches:
    """Describe batches on `pool.actors` actors (CPU only: the trunk's 64 x 64 batches gain nothing
    from a GPU), round robin, results in the batches' order. A killed actor is restarted by Ray
    and its batch described again."""

    def describe(batches: Iterable[list[str]]) -> Iterator[tuple[list[str], list[Outcome]]]:
        ray = cluster.ray
        options: dict[str, Any] = {"num_cpus": pool.num_cpus, "max_restarts": -1, "max_task_retries": -1}
        actor_class = ray.remote(**options)(DescribeActor)
        actors = [actor_class.remote(reader, config, pool.threads) for _ in range(pool.actors)]
        window: deque[tuple[list[str], Any]] = deque()
        try:
            with actor_errors():
                for index, keys in enumerate(batches):
                    window.append((keys, actors[index % len(actors)].describe.remote(keys)))
                    if len(window) >= IN_FLIGHT * len(actors):
                        done, ref = window.popleft()
                        yield done, ray.get(ref)
                while window:
                    done, ref = window.popleft()
                    yield done, ray.get(ref)
        finally:
            for actor in actors:
                ray.kill(actor)

    return describe
