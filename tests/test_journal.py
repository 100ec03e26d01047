"""The record journal's format and the model tar, without a sweep: segments round-trip, damage is
one IntegrityError naming the segment, the newest entry per asset wins, and model tars cannot
write outside their directory."""

from __future__ import annotations

import hashlib
import io
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import zstandard

from archiver.errors import IntegrityError
from archiver.journal import JournalWriter, decode_segment, encode_segment, latest, read_journal, tombstone
from archiver.storage import LocalVault
from archiver.storage.vault_format import journal_key, model_files_from_tar, model_tar

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def put(key: str, at: datetime, writer: str = "w1", seed: int = 0) -> dict[str, object]:
    return {
        "op": "put",
        "at": int(at.timestamp() * 1e6),
        "w": writer,
        "src": "file:///hot",
        "k": key,
        "r": {"s": seed},
    }


def test_segments_round_trip_and_the_newest_entry_wins(tmp_path: Path) -> None:
    vault = LocalVault(tmp_path / "vault", "GLACIER")
    writer = JournalWriter(vault, "STANDARD", "w1")
    (first,) = writer.append([put("a.png", T0), put("b.png", T0)], T0)
    assert first.storage_class == "STANDARD" and first.key == journal_key(first.sha256)
    later = T0 + timedelta(seconds=1)
    writer.append(
        [put("a.png", later, "w2", seed=7), tombstone("file:///hot", "b.png", "restored", "r", later, "w2")],
        later,
    )
    assert writer.append([], later) == []  # nothing to say: no segment
    entries = read_journal(vault)
    assert [e.ident[1] for e in entries] == ["a.png", "b.png", "a.png", "b.png"]  # oldest first
    newest = latest(entries)
    assert newest["file:///hot", "a.png"].doc["r"] == {"s": 7}
    assert newest["file:///hot", "b.png"].op == "del"


def test_a_damaged_segment_is_one_error_naming_it() -> None:
    data = encode_segment([put("a.png", T0)], "w1", T0)
    key = journal_key(hashlib.sha256(data).hexdigest())
    assert [e.doc["k"] for e in decode_segment(data, key)] == ["a.png"]
    with pytest.raises(IntegrityError, match=f"{key} does not hash to its name"):
        decode_segment(data[:-1], key)
    bogus = zstandard.ZstdCompressor().compress(b'{"format":"other"}\n')
    with pytest.raises(IntegrityError, match="is damaged"):
        decode_segment(bogus, journal_key(hashlib.sha256(bogus).hexdigest()))


def test_model_tars_round_trip_and_refuse_paths_that_leave_their_directory() -> None:
    files = [("model_index.json", b"{}"), ("unet/diffusion_pytorch_model.safetensors", b"\0" * 10)]
    assert model_files_from_tar(model_tar(files), where="m") == files
    assert model_tar(files) == model_tar(files)  # deterministic
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(IntegrityError, match="not a model file"):
        model_files_from_tar(buffer.getvalue(), where="m")
