"""Checking that the catalog, the vault and its journal agree (`archiver fsck`).

Like `git annex fsck` and `restic check`: every asset the catalog has in the vault has its vault
object, with the checksum the catalog recorded (a HEAD with the checksum mode; with `read_data`
the bytes are read and hashed, each pack member too, after a thaw where the tier needs one);
every asset the journal holds is in the catalog with the same record, and every archived asset
is in the journal; and no original sits in the vault that neither the catalog nor the journal
names (an orphan). A HEAD that reports no checksum (an object overwritten by another tool, a
local file written since it was stored) is not clean: `read_data` settles it. Partial writes that
an interrupted command left (`Vault.leftovers`) are listed apart: they are not damage.
Findings are data; the command decides the exit code. Nothing is changed, except that `read_data`
asks the vault to thaw what it cannot read yet (a vault that thaws at once is read at once).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from archiver.catalog import queries
from archiver.catalog.database import Catalog
from archiver.catalog.models import AssetState
from archiver.errors import IntegrityError, NoSuchObject, StorageError
from archiver.journal import latest, read_journal
from archiver.storage import Leftover, RestoreTier, Vault
from archiver.storage.vault_format import DATA_PREFIXES, PackMember, read_catalogued_member

# Problems, and what each means. "thawing" is not damage: the bytes could not be read yet.
KINDS = {
    "missing": "the vault object the catalog names does not exist",
    "checksum": "the vault reports another SHA-256 than the catalog recorded",
    "unverified": (
        "the vault holds no checksum for it, or its bytes changed since they were stored: "
        "run fsck --read-data to read and hash them"
    ),
    "corrupt": "the bytes read back do not hash to what was recorded",
    "unreadable": "the vault refused to read it",
    "thawing": "in an archive tier: a restore was requested, run fsck --read-data again once it is done",
    "not-in-catalog": "the journal holds this record, the catalog does not",
    "not-journaled": "archived in the catalog, but its record is not in the vault's journal",
    "orphan": "an original in the vault that neither the catalog nor the journal names",
}


@dataclass(frozen=True)
class Finding:
    kind: str
    where: str  # a vault key, or an asset's "source key"
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "where": self.where, "detail": self.detail}


@dataclass
class FsckReport:
    vault: str
    read_data: bool
    objects: int = 0
    assets: int = 0
    journal_entries: int = 0
    findings: list[Finding] = field(default_factory=list)
    # Partial writes left behind (a temporary file, an incomplete upload): not damage, nothing
    # refers to them; reported with the command that removes them, and no effect on the exit code.
    leftovers: list[Leftover] = field(default_factory=list)

    @property
    def pending_only(self) -> bool:
        return bool(self.findings) and all(f.kind == "thawing" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = defaultdict(int)
        for finding in self.findings:
            counts[finding.kind] += 1
        return {
            "vault": self.vault,
            "read_data": self.read_data,
            "objects": self.objects,
            "assets": self.assets,
            "journal_entries": self.journal_entries,
            "problems": dict(sorted(counts.items())),
            "findings": [f.to_dict() for f in self.findings],
            "leftovers": [
                {
                    "where": left.where,
                    "size": left.size,
                    "at": left.last_modified.isoformat(),
                    "remove": left.remove,
                }
                for left in self.leftovers
            ],
            "clean": not self.findings,
        }


Progress = Callable[[int, int], None]  # (done, total) vault objects


def fsck(
    catalog: Catalog,
    vault: Vault,
    *,
    prefix: str = "",
    read_data: bool = False,
    thaw_tier: RestoreTier = "Bulk",
    progress: Progress | None = None,
) -> FsckReport:
    report = FsckReport(vault=vault.url, read_data=read_data)
    with catalog.begin() as session:
        assets = queries.vaulted_assets(session, prefix)
        members: dict[str, list[tuple[str, PackMember]]] = defaultdict(list)
        recorded: dict[str, tuple[str, bool]] = {}  # vault key -> (sha256, is_pack)
        for asset in assets:
            obj = asset.vault_object
            assert obj is not None
            recorded[obj.key] = (obj.sha256, obj.is_pack)
            member = PackMember(
                asset.key, asset.sha256 or "", asset.size, asset.vault_offset or 0, asset.vault_length or 0
            )
            members[obj.key].append((f"{asset.source.url} {asset.key}", member))
        archived = {(asset.source.url, asset.key) for asset in assets if asset.state == AssetState.ARCHIVED}
        known_objects = queries.vault_object_keys(session)
        in_catalog = queries.journal_view(session)
    report.assets, report.objects = len(assets), len(recorded)
    for done, (key, (sha256, is_pack)) in enumerate(sorted(recorded.items()), 1):
        report.findings += _check_object(vault, key, sha256, is_pack, members[key], read_data, thaw_tier)
        if progress is not None:
            progress(done, len(recorded))
    entries = read_journal(vault)
    report.journal_entries = len(entries)
    newest = latest(entries)
    puts = latest(e for e in entries if e.op == "put")
    for (source, key), entry in sorted(puts.items()):
        if not key.startswith(prefix):
            continue
        held = in_catalog.get((source, key))
        if held is None or held[1] != entry.doc["r"]["h"]:
            detail = "not in the catalog" if held is None else "the catalog's record differs"
            report.findings.append(Finding("not-in-catalog", f"{source} {key}", f"{detail}: {entry.segment}"))
    for source, key in sorted(archived - set(newest)):
        report.findings.append(Finding("not-journaled", f"{source} {key}", KINDS["not-journaled"]))
    named = known_objects | {entry.doc["v"]["k"] for entry in entries if entry.op == "put"}
    for prefix_ in DATA_PREFIXES:
        for info in vault.list(prefix_):
            if info.key not in named:
                report.findings.append(Finding("orphan", info.key, f"{info.size} bytes: {KINDS['orphan']}"))
    report.leftovers = list(vault.leftovers())
    return report


def _check_object(
    vault: Vault,
    key: str,
    sha256: str,
    is_pack: bool,
    members: list[tuple[str, PackMember]],
    read_data: bool,
    thaw_tier: RestoreTier,
) -> list[Finding]:
    try:
        head = vault.head(key)
    except NoSuchObject:
        held = ", ".join(name for name, _ in members[:5]) + (" …" if len(members) > 5 else "")
        return [Finding("missing", key, f"{KINDS['missing']}; it held {held}")]
    except StorageError as exc:
        return [Finding("unreadable", key, str(exc))]
    if head.sha256 is not None and head.sha256 != sha256:
        return [Finding("checksum", key, f"the vault says {head.sha256}, the catalog {sha256}")]
    if not read_data:
        if head.sha256 is None:  # nothing vouches for the bytes: never call that clean
            return [Finding("unverified", key, f"{KINDS['unverified']} (the catalog's: {sha256})")]
        return []
    try:
        # A vault that thaws at once (a local one, or a restore already done) is read now.
        if not vault.restore_state(key).readable and not vault.request_restore(key, thaw_tier, 1).readable:
            return [Finding("thawing", key, f"{KINDS['thawing']} (tier {thaw_tier})")]
        data = vault.get(key)
    except IntegrityError as exc:
        return [Finding("corrupt", key, str(exc))]
    except StorageError as exc:
        return [Finding("unreadable", key, str(exc))]
    if hashlib.sha256(data).hexdigest() != sha256:
        return [Finding("corrupt", key, f"{KINDS['corrupt']} ({sha256})")]
    found = []
    if is_pack:
        for name, member in members:
            try:
                read_catalogued_member(data, member)
            except IntegrityError as exc:
                found.append(Finding("corrupt", key, f"{name}: {exc}"))
    return found
