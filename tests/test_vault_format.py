"""The vault's format: its key layout, and packs of small originals (round trip, determinism,
standard tools, and damage detection)."""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from archiver.errors import IntegrityError
from archiver.storage.vault_format import (
    MANIFEST_NAME,
    PackMember,
    build_pack,
    decode_member,
    original_key,
    pack_groups,
    pack_key,
    pack_size,
    read_manifest,
    read_member,
)


def _items() -> list[tuple[str, bytes]]:
    rng = random.Random(7)
    return [
        ("shoes/red.jpg", rng.randbytes(3000)),
        ("shoes/empty.png", b""),
        ("shoes/blue.webp", b"blue " * 2000),  # compressible, so its frame is much smaller
        ("shoes/big.jpg", rng.randbytes(1 << 20)),
        ("shoes/é-unicode.jpeg", rng.randbytes(17)),
    ]


@pytest.fixture(scope="module")
def built() -> tuple[bytes, list[PackMember]]:
    return build_pack(_items())


def test_round_trip_every_member(built: tuple[bytes, list[PackMember]]) -> None:
    pack, members = built
    assert [m.key for m in members] == [key for key, _ in _items()]
    for (_, data), member in zip(_items(), members, strict=True):
        assert member.size == len(data)
        assert member.sha256 == hashlib.sha256(data).hexdigest()
        assert read_member(pack, member) == data
        # A byte-range read of just the frame is enough.
        assert decode_member(pack[member.offset : member.offset + member.length], member) == data


def test_same_input_gives_identical_bytes(built: tuple[bytes, list[PackMember]]) -> None:
    again, members = build_pack(_items())
    assert again == built[0]
    assert members == built[1]


def test_manifest_lists_the_members(built: tuple[bytes, list[PackMember]]) -> None:
    pack, members = built
    assert read_manifest(pack) == members


def test_tarfile_lists_and_extracts_it(built: tuple[bytes, list[PackMember]], tmp_path: Path) -> None:
    pack, members = built
    with tarfile.open(fileobj=io.BytesIO(pack)) as tar:
        infos = tar.getmembers()
        assert [i.name for i in infos] == [f"members/{n}.zst" for n in range(len(members))] + [MANIFEST_NAME]
        for info in infos:
            assert (info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode) == (
                0,
                0,
                0,
                "",
                "",
                0o444,
            )
        for info, member in zip(infos, members, strict=False):
            assert (info.offset_data, info.size) == (member.offset, member.length)
        tar.extractall(tmp_path, filter="data")
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text("utf-8"))
    assert manifest["members"][4]["key"] == "shoes/é-unicode.jpeg"
    for index, (_, data) in enumerate(_items()):
        frame = tmp_path / f"members/{index}.zst"
        if shutil.which("zstd"):
            out = tmp_path / f"members/{index}"
            subprocess.run(["zstd", "-q", "-d", str(frame), "-o", str(out)], check=True)
            assert out.read_bytes() == data
        else:
            assert zstandard.ZstdDecompressor().decompress(frame.read_bytes()) == data


def test_a_flipped_byte_is_caught_for_that_member_only(built: tuple[bytes, list[PackMember]]) -> None:
    pack, members = built
    damaged = bytearray(pack)
    damaged[members[3].offset + members[3].length // 2] ^= 0x01
    with pytest.raises(IntegrityError, match=r"shoes/big\.jpg: the vault copy is damaged"):
        read_member(bytes(damaged), members[3])
    for index in (0, 1, 2, 4):
        assert read_member(bytes(damaged), members[index]) == _items()[index][1]


def test_a_damaged_frame_header_is_caught_before_decompressing(
    built: tuple[bytes, list[PackMember]],
) -> None:
    pack, members = built
    damaged = bytearray(pack)
    damaged[members[0].offset + 6] ^= 0xFF  # inside the frame's content-size field
    with pytest.raises(IntegrityError, match=r"shoes/red\.jpg"):
        read_member(bytes(damaged), members[0])


def test_a_member_whose_catalog_checksum_differs_is_refused(built: tuple[bytes, list[PackMember]]) -> None:
    pack, members = built
    wrong = PackMember(members[0].key, "0" * 64, members[0].size, members[0].offset, members[0].length)
    with pytest.raises(IntegrityError, match="SHA-256"):
        read_member(pack, wrong)


@pytest.mark.parametrize("keep", [0, 100, 512, 5000, 600_000, -10_240, -1])
def test_a_truncated_pack_gives_integrity_errors(built: tuple[bytes, list[PackMember]], keep: int) -> None:
    pack, members = built
    truncated = pack[:keep]
    with pytest.raises(IntegrityError):
        read_manifest(truncated)
    cut = [m for m in members if m.offset + m.length > len(truncated)]
    for member in cut:
        with pytest.raises(IntegrityError, match="truncated"):
            read_member(truncated, member)


def test_a_manifest_that_does_not_match_its_tar_is_damage() -> None:
    pack, members = build_pack([("a.jpg", b"a" * 100), ("b.jpg", b"b" * 100)])
    text = json.dumps(members[1].offset).encode()
    wrong = json.dumps(members[1].offset + 512).encode()
    assert len(text) == len(wrong)  # same length, so the tar stays well formed
    head, manifest = pack.rsplit(b'"offset":' + text, 1)
    with pytest.raises(IntegrityError, match="does not match"):
        read_manifest(head + b'"offset":' + wrong + manifest)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        build_pack([])
    with pytest.raises(ValueError, match="twice"):
        build_pack([("a.jpg", b"1"), ("a.jpg", b"2")])


def test_pack_size_estimate_is_a_close_upper_bound_for_images() -> None:
    rng = random.Random(1)
    sizes = [0, 1, 700, 4096, 50_000, 100_000, 300_000, 900_000] * 3
    items = [
        (f"catalogue/2019/shoe-{n:05d}-variant.jpg", rng.randbytes(size)) for n, size in enumerate(sizes)
    ]
    pack, _ = build_pack(items)
    estimate = pack_size(sizes)
    assert len(pack) <= estimate <= len(pack) + 12_800 + 1536 * len(sizes)


def test_pack_groups_cut_before_the_target() -> None:
    assert pack_groups([], 100) == []
    assert pack_groups([40, 40, 20, 1, 99, 150, 5], 100) == [[0, 1, 2], [3, 4], [5], [6]]


def test_keys_are_named_by_content() -> None:
    digest = hashlib.sha256(b"an original").hexdigest()
    assert original_key(digest) == f"originals/{digest[:2]}/{digest}"
    assert pack_key(digest) == f"packs/{digest}.tar"


@pytest.mark.parametrize("bad", ["", "ab", "A" * 64, "g" * 64, "a" * 63, "a" * 65, "../" + "a" * 61])
def test_keys_refuse_anything_but_a_sha256(bad: str) -> None:
    for name in (original_key, pack_key):
        with pytest.raises(ValueError, match="64 lowercase hex digits"):
            name(bad)
