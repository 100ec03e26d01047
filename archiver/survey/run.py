"""The survey: stream a source once, group its images, judge each group, rank the groups.

Flow: the store's paginated listing (in key order; skipped entries counted by reason) -> image keys
in batches -> bytes fetched on a small thread pool -> decoded, reduced and described (`Describer`,
over `describe`; here, or on Ray actors with `archiver survey --ray`: `DescribeBatches` is the
seam, and batches come back in listing order either way) -> each image into its candidate
(`keys.split_key` + dimensions + mode; `group.Candidate`) -> a candidate whose folder the listing
has passed is closed at once (keys come sorted, so no member of it can follow), judged, priced
(`savings`: the net saving, every cost counted) and kept as a small `GroupResult`; candidates
under `min_images` count as ungrouped.
Bad input (an unreadable object, an image the engine refuses, an unsafe key) is counted by reason
and never stops the run.

Memory does not grow with the number of images: the open candidates hold at most
`group.REFERENCE_SAMPLE` descriptors each, a closed group is a summary, and every judged member is
spooled to a SQLite file in a temporary directory (key, size, core or outlier, distances, traffic),
which prices each group when it closes and answers `members(group)` for `--write-group` and the
HTML report. The spool goes when the `Survey` is closed. What does grow: one summary per group
(listed or not), and the access log's per-key table.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from archiver.errors import ArchiverError, UnsupportedImage
from archiver.imagetypes import is_image_key
from archiver.storage import HotStore
from archiver.survey.describe import Decoded, DenseDescriptor, Descriptor, decode, phash
from archiver.survey.group import Candidate, CandidateKey, Judged
from archiver.survey.keys import split_key
from archiver.survey.savings import PriceTerms, Recall, Saving, recall, saving
from archiver.survey.traffic import Traffic


class SurveyProgress(Protocol):
    def advance(self, key: str, *, n: int) -> None: ...  # n more images described, the last `key`


@dataclass(frozen=True)
class SurveyConfig:
    terms: PriceTerms
    dense: bool = True
    min_images: int = 4
    batch: int = 64
    fetch_threads: int = 8
    trunk_path: Path | None = None
    allowed_trunks: Sequence[str] = ()


@dataclass(frozen=True)
class Described:
    """What grouping needs of one image: its descriptor and what the file says, not its pixels."""

    descriptor: Descriptor
    width: int
    height: int
    mode: str
    format: str
    metadata: str


Outcome = Described | tuple[str, str]  # a described image, or (key, why it was not)


class Describer:
    """Reads, decodes, hashes and describes one batch of keys (`describe(keys)`), in their order.
    Reads run on a small thread pool; the dense descriptor runs on the batch. Here for a local
    survey, and on each actor of a survey on Ray (`archiver.fleet.survey`)."""

    def __init__(self, read: Callable[[str], bytes], config: SurveyConfig) -> None:
        self.read = read
        self.dense = DenseDescriptor(config.trunk_path, config.allowed_trunks) if config.dense else None
        self.pool = ThreadPoolExecutor(config.fetch_threads, thread_name_prefix="survey-get")

    def close(self) -> None:
        self.pool.shutdown()

    def describe(self, keys: Sequence[str]) -> list[Outcome]:
        fetched = list(self.pool.map(self._fetch, keys))
        good = [(decoded, hashed) for decoded, hashed in fetched if isinstance(decoded, Decoded)]
        dense = self.dense([d.thumb for d, _ in good]) if self.dense is not None and good else None
        described = iter(
            Described(
                Descriptor(d.key, d.size, int(hashed), dense[row] if dense is not None else None),
                d.width,
                d.height,
                d.mode,
                d.format,
                d.metadata,
            )
            for row, (d, hashed) in enumerate(good)
        )
        # In the keys' order: a bad one keeps its place as (key, why not).
        return [
            next(described) if isinstance(item[0], Decoded) else (item[0], str(item[1])) for item in fetched
        ]

    def _fetch(self, key: str) -> tuple[Decoded, int] | tuple[str, str]:
        """On a reading thread: the decoded image and its pHash, or (key, why not)."""
        try:
            decoded = decode(self.read(key), key)
            return decoded, phash(decoded.thumb)
        except UnsupportedImage as bad:
            return key, bad.reason
        except ArchiverError as error:  # gone since listed, permission, ...: counted, not fatal
            return key, f"unreadable ({type(error).__name__})"


# Describes batches of keys in their order: here (`local_batches`) or on a Ray actor pool.
DescribeBatches = Callable[[Iterable[list[str]]], Iterator[tuple[list[str], list[Outcome]]]]


def local_batches(store: HotStore, config: SurveyConfig) -> DescribeBatches:
    """Batches described in this process, the trunk on one thread (`DenseDescriptor.one_thread`)."""

    def describe(batches: Iterable[list[str]]) -> Iterator[tuple[list[str], list[Outcome]]]:
        describer = Describer(store.get, config)
        try:
            with contextlib.ExitStack() as stack:
                if describer.dense is not None:
                    stack.enter_context(describer.dense.one_thread())
                for keys in batches:
                    yield keys, describer.describe(keys)
        finally:
            describer.close()

    return describe


@dataclass(frozen=True)
class GroupResult:
    id: str  # stable across runs: a hash of the folder template, name shape, dimensions and mode
    template: str
    variables: list[dict[str, Any]]
    width: int
    height: int
    mode: str
    formats: dict[str, int]
    metadata: dict[str, int]
    images: int
    bytes: int
    core: int
    core_bytes: int
    outliers: int
    named_outliers: list[dict[str, Any]]
    similarity: float
    recall: Recall
    saving: Saving
    reference: str
    sample_keys: list[str]
    candidate: int

    @property
    def score(self) -> float:
        """The expected net saving a month: net saving x recall (negative: the group loses money)."""
        return self.saving.net.net * self.recall.score

    @property
    def loses_money(self) -> bool:
        return self.saving.net.loses_money

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "template": self.template,
            "variables": self.variables,
            "dimensions": f"{self.width}x{self.height}",
            "mode": self.mode,
            "formats": self.formats,
            "metadata": self.metadata,
            "images": self.images,
            "bytes": self.bytes,
            "core": self.core,
            "core_bytes": self.core_bytes,
            "outliers": self.outliers,
            "named_outliers": self.named_outliers,
            "reference": self.reference,
            "similarity": round(self.similarity, 4),
            "recall": round(self.recall.score, 4),
            "recall_factors": {
                "core_fraction": round(self.recall.core_fraction, 4),
                "similarity": round(self.recall.similarity, 4),
                "variants": round(self.recall.variants, 4),
            },
            "saving_monthly": self.saving.monthly,
            "net_monthly": self.saving.net.net,
            "loses_money": self.loses_money,
            "net": self.saving.net.to_dict(),
            "saving": {
                "storage_monthly": self.saving.storage_monthly,
                "hot_monthly": self.saving.hot_monthly,
                "archive_monthly": self.saving.archive_monthly,
                "minimum_commitment": self.saving.minimum_commitment,
                "archive_objects": self.saving.archive_objects,
                "requests_monthly": self.saving.requests_monthly,
                "bytes_monthly": self.saving.bytes_monthly,
                "traffic_monthly": self.saving.traffic_monthly,
            },
            "score": self.score,
        }


@dataclass
class Survey:
    """What a survey found. Close it (or use it as a context manager) to remove its spool."""

    source: str
    groups: list[GroupResult]  # ranked: best score first
    listed: int = 0
    images: int = 0  # image keys read and described
    ungrouped: int = 0  # described images in candidates under min_images
    skipped: Counter[str] = field(default_factory=Counter)  # listing: unsafe keys, symlinks, ...
    not_images: int = 0  # keys without an image suffix
    bad: Counter[str] = field(default_factory=Counter)  # reason -> count (decode, read)
    bad_examples: list[tuple[str, str]] = field(default_factory=list)
    dense: bool = True
    terms: PriceTerms | None = None
    traffic: Traffic | None = None
    seconds: float = 0.0
    _spool: sqlite3.Connection | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    def group(self, ref: str) -> GroupResult:
        """A listed group by its id or its rank (1-based)."""
        for rank, group in enumerate(self.groups, start=1):
            if ref in (group.id, str(rank)):
                return group
        from archiver.errors import NotFound

        raise NotFound(f"no group {ref!r} in the hitlist: use an id or rank from the table")

    def members(self, group: GroupResult, *, core: bool | None = None) -> Iterator[tuple[str, bool]]:
        """(key, is core) of a group's members in key order; only core or outliers if asked."""
        assert self._spool is not None, "the survey was closed"
        sql = "SELECT key, core FROM members WHERE candidate = ?"
        args: tuple[Any, ...] = (group.candidate,)
        if core is not None:
            sql += " AND core = ?"
            args += (int(core),)
        for key, is_core in self._spool.execute(sql + " ORDER BY key", args):
            yield key, bool(is_core)

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Survey:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def group_id(key: CandidateKey) -> str:
    shape = key.shape
    text = "\0".join(
        [shape.folder, "".join(shape.separators), "".join(shape.kinds), f"{key.width}x{key.height}", key.mode]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def run_survey(
    store: HotStore,
    config: SurveyConfig,
    *,
    traffic: Traffic | None = None,
    progress: SurveyProgress | None = None,
    clock: Callable[[], float] | None = None,
    describe: DescribeBatches | None = None,
) -> Survey:
    """Survey `store`. `describe` says where images are described (default: here, `local_batches`;
    `archiver.fleet.survey.ray_batches` on a Ray cluster); grouping and ranking run here either way."""
    import time

    clock = clock or time.monotonic
    started = clock()
    tmp = tempfile.TemporaryDirectory(prefix="archiver-survey-")
    spool = sqlite3.connect(Path(tmp.name) / "spool.db", isolation_level=None)
    spool.executescript(
        "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
        "CREATE TABLE members (candidate INTEGER, key TEXT, size INTEGER, core INTEGER,"
        " hash_bits INTEGER, dense REAL, requests REAL, sent REAL);"
        "CREATE INDEX members_by_candidate ON members (candidate, core);"
    )
    survey = Survey(source=store.url, groups=[], dense=config.dense, terms=config.terms, traffic=traffic)
    survey._spool, survey._tmp = spool, tmp
    try:
        _Run(store, config, survey, spool, traffic, progress).run(describe or local_batches(store, config))
    except BaseException:
        survey.close()
        raise
    survey.seconds = clock() - started
    return survey


class _Run:
    def __init__(
        self,
        store: HotStore,
        config: SurveyConfig,
        survey: Survey,
        spool: sqlite3.Connection,
        traffic: Traffic | None,
        progress: SurveyProgress | None,
    ) -> None:
        self.store, self.config, self.survey, self.spool = store, config, survey, spool
        self.traffic, self.progress = traffic, progress
        self.open: dict[CandidateKey, Candidate] = {}
        self.pending: list[tuple[Any, ...]] = []
        self.next_id = 0
        self.closed_ids: set[CandidateKey] = set()

    def run(self, describe: DescribeBatches) -> None:
        # Batches come back in listing order (whoever described them): closing the candidates the
        # sorted listing has passed depends on it.
        for keys, outcomes in describe(_batches(self._image_keys(), self.config.batch)):
            self._group(outcomes)
            self._close_passed(keys[-1])
        for candidate_key in list(self.open):
            self._close(candidate_key)
        # Groups whose net saving is positive first, by score (net saving x recall); then those that
        # would lose money, by recall (alike, but not worth archiving at these prices, before
        # groups with no core at all).
        self.survey.groups.sort(
            key=lambda g: (g.loses_money, -max(g.score, 0.0), -g.recall.score, g.template)
        )

    def _image_keys(self) -> Iterator[str]:
        def skipped(key: str, reason: str) -> None:
            self.survey.skipped[reason] += 1
            self._example(key, reason)

        for obj in self.store.list(on_skip=skipped):
            self.survey.listed += 1
            if is_image_key(obj.key):
                yield obj.key
            else:
                self.survey.not_images += 1

    def _example(self, key: str, reason: str) -> None:
        if len(self.survey.bad_examples) < 20:
            self.survey.bad_examples.append((key, reason))

    def _group(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            if not isinstance(outcome, Described):
                key, reason = outcome
                self.survey.bad[reason] += 1
                self._example(key, reason)
                continue
            descriptor = outcome.descriptor
            shape, words = split_key(descriptor.key)
            candidate_key = CandidateKey(shape, outcome.width, outcome.height, outcome.mode)
            candidate = self.open.get(candidate_key)
            if candidate is None:
                candidate = Candidate(self.next_id, candidate_key, self._spooled)
                self.next_id += 1
                self.open[candidate_key] = candidate
            candidate.add(descriptor, words, outcome.format, outcome.metadata)
            self.survey.images += 1
        if self.progress is not None and outcomes:
            last = outcomes[-1]
            key = last.descriptor.key if isinstance(last, Described) else last[0]
            self.progress.advance(key, n=len(outcomes))

    def _spooled(self, judged: Judged) -> None:
        requests, sent = self.traffic.of(judged.key) if self.traffic is not None else (0.0, 0.0)
        self.pending.append(
            (
                judged.candidate,
                judged.key,
                judged.size,
                int(judged.core),
                judged.hash_bits,
                judged.dense,
                requests,
                sent,
            )
        )
        if len(self.pending) >= 1024:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.spool.executemany("INSERT INTO members VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self.pending)
            self.pending = []

    def _close_passed(self, key: str) -> None:
        """Close every candidate whose keys all start with a prefix the sorted listing has passed."""
        for candidate_key in list(self.open):
            prefix = candidate_key.shape.literal_prefix()
            if prefix and not key.startswith(prefix) and key > prefix:
                self._close(candidate_key)

    def _close(self, candidate_key: CandidateKey) -> None:
        candidate = self.open.pop(candidate_key)
        candidate.close()
        self._flush()
        if candidate.images < self.config.min_images:
            self.survey.ungrouped += candidate.images
            return
        self.survey.groups.append(self._result(candidate))

    def _result(self, c: Candidate) -> GroupResult:
        rows = self.spool.execute(
            "SELECT size, requests, sent FROM members WHERE candidate = ? AND core = 1", (c.id,)
        ).fetchall()
        sizes = [size for size, _, _ in rows]
        requests = sum(r for _, r, _ in rows)
        sent = sum(s for _, _, s in rows)
        similarity = c.similarity()
        assert c.reference is not None
        return GroupResult(
            id=group_id(c.key),
            template=c.template(),
            variables=[
                {"name": name, "values": values, "more": more} for _, name, values, more in c.variables()
            ],
            width=c.key.width,
            height=c.key.height,
            mode=c.key.mode,
            formats=dict(c.formats.most_common()),
            metadata=dict(c.metadata.most_common()),
            images=c.images,
            bytes=c.bytes,
            core=c.core,
            core_bytes=c.core_bytes,
            outliers=c.outliers,
            named_outliers=[
                {"key": key, "hash_bits": bits, "dense": None if dense is None else round(dense, 4)}
                for key, bits, dense in c.named_outliers
            ],
            similarity=similarity,
            recall=recall(c.images, c.core, similarity),
            saving=saving(sizes, requests, sent, self.config.terms),
            reference=c.reference.key,
            sample_keys=c.sample_keys,
            candidate=c.id,
        )


FIRST_BATCH = 8  # the first batches ramp up to the configured size: progress shows from the start


def _batches(items: Iterable[str], size: int) -> Iterator[list[str]]:
    """`items` in batches of FIRST_BATCH, then twice that, up to `size`: a survey reports its first
    images within seconds instead of after a whole batch (48 images were one silent batch of 64)."""
    batch: list[str] = []
    wanted = min(FIRST_BATCH, size)
    for item in items:
        batch.append(item)
        if len(batch) >= wanted:
            yield batch
            batch = []
            wanted = min(wanted * 2, size)
    if batch:
        yield batch
