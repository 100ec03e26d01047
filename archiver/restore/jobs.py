"""Restore jobs: the persisted requests that bring an archived asset back.

Owns filing a request (idempotent: an open job for the same asset and mode is reused; an asset
already back hot as asked is not restored again, `already_restored`) and, in `run.py`, advancing
jobs. Both the `archiver restore` command and the mount's fallback file
their requests here, so there is one queue and one history.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from archiver.catalog import queries
from archiver.catalog.models import Asset, AssetState, RestoreMode, Source
from archiver.errors import NoSuchObject, NotFound
from archiver.storage import HotStore

RESTORABLE = (AssetState.ARCHIVED, AssetState.RESTORED)  # those with a record and a vault copy


@dataclass
class Chosen:
    assets: list[Asset]  # restorable, in the catalog's order
    note: str = ""  # which source's asset a key held by several sources named, and the others


def choose_restorable(
    session: Session, *, key: str | None, prefix: str | None, scope: Source | None
) -> Chosen:
    """The assets `restore KEY` (or `--prefix`) acts on, in `scope` if given; NotFound saying what
    the key or prefix names instead when nothing there can be restored."""
    label = key if key is not None else f"{prefix}*"
    note = ""
    if key is not None:
        # The key names what is archived (as the mount and the origin show it): a source that
        # holds the key too but has nothing to restore does not take its place.
        try:
            resolved = queries.resolve_key(session, key, scope, RESTORABLE)
        except NotFound:
            resolved = queries.resolve_key(session, key, scope)  # says what it is instead
        assets = [resolved.asset]
        if resolved.others:
            note = f"restoring the one in {resolved.asset.source.url}; {resolved.also_in()}"
    else:
        assets = queries.list_assets(session, prefix or "", scope)
        if not assets:
            raise NotFound(f"no asset {label!r} in the catalog: `archiver ls` lists what is there")
    restorable = [a for a in assets if a.state in RESTORABLE]
    if not restorable:
        states = ", ".join(sorted({a.state.value for a in assets}))
        raise NotFound(
            f"nothing to restore: {label!r} is {states}, not archived "
            "(only archived assets have a record and a vault copy)"
        )
    return Chosen(restorable, note)


def already_restored(asset: Asset, store: HotStore, mode: RestoreMode) -> str | None:
    """How `asset` is already back at its key, when that serves `mode`: "original" (serves both
    modes) or "rehydrated" (serves a rehydration); None when a restore has to run.

    The copy a restore made counts while the store still reports it (same size and ETag). One
    changed or gone since is restored again (the copy step never replaces what is not ours), and
    so is an asset whose hot copy the catalog does not know (restored before schema 0006 and not
    repaired by it, or rebuilt from the vault)."""
    if asset.state != AssetState.RESTORED or asset.hot_size is None:
        return None
    original = asset.hot_sha256 is not None and asset.hot_sha256 == asset.sha256
    if mode == RestoreMode.ORIGINAL and not original:
        return None  # a render is hot; the byte-exact original was asked for
    try:
        info = store.head(asset.key)
    except NoSuchObject:
        return None
    if (info.etag, info.size) != (asset.hot_etag, asset.hot_size):
        return None
    return "original" if original else "rehydrated"
