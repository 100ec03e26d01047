"""Coldness filters: the parsers, every skip reason, and the access log's precedence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archiver.errors import ConfigError
from archiver.imagetypes import is_image_key
from archiver.storage.base import ObjectInfo
from archiver.sweep.filters import Filters, load_access_log
from archiver.units import parse_age, parse_size

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _obj(key: str = "shoes/red.jpg", size: int = 50_000, age: timedelta = timedelta(days=400)) -> ObjectInfo:
    return ObjectInfo(key=key, size=size, etag="e", last_modified=NOW - age)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("2w", timedelta(weeks=2)),
        ("30m", timedelta(minutes=30)),
        ("1y", timedelta(days=365)),
        ("0", timedelta(0)),
        ("0d", timedelta(0)),
        (" 7d ", timedelta(days=7)),
    ],
)
def test_parse_age(text: str, expected: timedelta) -> None:
    assert parse_age(text) == expected


@pytest.mark.parametrize(
    "text", ["", "90", "d", "-5d", "1.5d", "3mo", "90D", "5s", "1 y", "x90d", "9" * 30 + "y"]
)
def test_parse_age_refuses_junk_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ConfigError, match=r"e\.g\. 90d, 12h, 2w") as err:
        parse_age(text)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("512", 512),
        ("512B", 512),
        ("10KB", 10_000),
        ("10kB", 10_000),
        ("10kb", 10_000),
        ("10KiB", 10_240),
        ("10kib", 10_240),
        ("5MB", 5_000_000),
        ("5MiB", 5 * 2**20),
        ("1GB", 10**9),
        ("1GiB", 2**30),
        ("2TiB", 2 * 2**40),
        ("1.5MiB", 1_572_864),
        ("1.1GB", 1_100_000_000),
        ("0.5KiB", 512),
        ("10 KiB", 10_240),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text", ["", "-1", "-1KB", "10K", "ten", "1e3", "KB", "5 MBs", "nan", "inf", "1..5MB"]
)
def test_parse_size_refuses_junk(text: str) -> None:
    with pytest.raises(ConfigError, match=r"KiB, MiB"):
        parse_size(text)


def test_is_image_key() -> None:
    assert all(is_image_key(k) for k in ["a.jpg", "b/c.JPEG", "d.Png", "e.webp"])
    assert not any(is_image_key(k) for k in ["a.gif", "jpg", "a.jpg.txt", "notes/readme"])


def test_a_candidate_has_no_reason() -> None:
    filters = Filters(older_than=timedelta(days=90), min_size=1000, max_size=10**6, include=("shoes/*",))
    assert filters.reason_to_skip(_obj(), NOW) is None


def test_every_reason() -> None:
    assert Filters().reason_to_skip(_obj("shoes/notes.txt"), NOW) == "not-an-image"
    assert Filters(exclude=("*/red.*",)).reason_to_skip(_obj(), NOW) == "excluded"
    assert Filters(include=("hats/*",)).reason_to_skip(_obj(), NOW) == "not-included"
    assert Filters(min_size=50_001).reason_to_skip(_obj(), NOW) == "too-small"
    assert Filters(max_size=49_999).reason_to_skip(_obj(), NOW) == "too-large"
    assert Filters(older_than=timedelta(days=401)).reason_to_skip(_obj(), NOW) == "too-recent"


def test_bounds_are_inclusive() -> None:
    obj = _obj(size=50_000, age=timedelta(days=90))
    assert (
        Filters(min_size=50_000, max_size=50_000, older_than=timedelta(days=90)).reason_to_skip(obj, NOW)
        is None
    )


def test_exclude_wins_over_include_and_star_crosses_slashes() -> None:
    deep = _obj("shoes/2019/summer/red.png")
    assert Filters(include=("shoes/*.png",)).reason_to_skip(deep, NOW) is None
    assert Filters(include=("*.png",)).reason_to_skip(deep, NOW) is None
    assert Filters(include=("*.png",), exclude=("shoes/2019/*",)).reason_to_skip(deep, NOW) == "excluded"
    assert Filters(include=("Shoes/*",)).reason_to_skip(deep, NOW) == "not-included"  # case-sensitive


def test_a_recently_read_old_object_is_too_recent() -> None:
    obj = _obj(age=timedelta(days=400))
    log = {obj.key: NOW - timedelta(days=3)}
    assert Filters(older_than=timedelta(days=90), access_log=log).reason_to_skip(obj, NOW) == "too-recent"


def test_an_object_absent_from_the_log_is_judged_by_last_modified() -> None:
    log = {"other.jpg": NOW}
    filters = Filters(older_than=timedelta(days=90), access_log=log)
    assert filters.reason_to_skip(_obj(age=timedelta(days=400)), NOW) is None
    assert filters.reason_to_skip(_obj(age=timedelta(days=10)), NOW) == "too-recent"


def test_an_access_older_than_the_modification_does_not_make_it_colder() -> None:
    obj = _obj(age=timedelta(days=10))
    log = {obj.key: NOW - timedelta(days=500)}
    assert Filters(older_than=timedelta(days=90), access_log=log).reason_to_skip(obj, NOW) == "too-recent"


def test_inconsistent_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="larger than max-size"):
        Filters(min_size=10, max_size=5)
    with pytest.raises(ConfigError, match="negative"):
        Filters(min_size=-1)
    with pytest.raises(ConfigError, match="negative"):
        Filters(older_than=timedelta(days=-1))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "access.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_access_log(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "bucket,key,size,last_access\n"
        "b,shoes/a.jpg,10,2024-05-01\n"
        "b,shoes/b.jpg,10,2024-05-01T12:30:00\n"
        "b,shoes/c.jpg,10,2024-05-01T12:30:00+02:00\n"
        'b,"shoes/d, with comma.jpg",10,2024-05-01T00:00:00Z\n'
        "b,shoes/a.jpg,10,2024-07-01T08:00:00Z\n"  # later: kept
        "b,shoes/a.jpg,10,2024-06-01T08:00:00Z\n",  # earlier than the one kept: ignored
    )
    assert load_access_log(path) == {
        "shoes/a.jpg": datetime(2024, 7, 1, 8, 0, tzinfo=UTC),
        "shoes/b.jpg": datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        "shoes/c.jpg": datetime(2024, 5, 1, 10, 30, tzinfo=UTC),
        "shoes/d, with comma.jpg": datetime(2024, 5, 1, tzinfo=UTC),
    }
    assert load_access_log(path)["shoes/c.jpg"].utcoffset() == timedelta(0)


def test_load_access_log_accepts_a_bom_and_an_empty_body(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffkey,last_access\n".encode())
    assert load_access_log(path) == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"access\.csv:1: .*'key' and 'last_access'"),
        ("key,when\na.jpg,2024-01-01\n", r"access\.csv:1: .*'key' and 'last_access'"),
        ("key,last_access\na.jpg,2024-01-01\nb.jpg,yesterday\n", r"access\.csv:3: last_access 'yesterday'"),
        ("key,last_access\na.jpg,2024-13-01\n", r"access\.csv:2: .*ISO 8601"),
        ("key,last_access\na.jpg\n", r"access\.csv:2: a row needs a key"),
        ("key,last_access\n,2024-01-01\n", r"access\.csv:2: a row needs a key"),
    ],
)
def test_load_access_log_names_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_access_log(_write(tmp_path, text))


def test_load_access_log_missing_or_binary_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the access log"):
        load_access_log(tmp_path / "missing.csv")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"key,last_access\n\xff\xfe\x00\x01,2024\n")
    with pytest.raises(ConfigError, match="not a UTF-8 CSV"):
        load_access_log(binary)
