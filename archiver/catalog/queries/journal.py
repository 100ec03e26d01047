"""The vault's journal: rebuilding the catalog from it (archiver.rebuild), and fsck.

Functions take an open `Session` and never commit (see `archiver.catalog.queries`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from archiver.catalog.models import (
    Asset,
    AssetState,
    Model,
    Record,
    Source,
    VaultObject,
)

# --- the vault's journal: rebuilding the catalog from it (archiver.rebuild), and fsck ---


def model_by_sha256(session: Session, sha256: str) -> Model | None:
    return session.scalar(select(Model).where(Model.sha256 == sha256))


def model_name_taken(session: Session, name: str) -> bool:
    return session.scalar(select(Model.id).where(Model.name == name)) is not None


def vault_object_by_uri(session: Session, uri: str) -> VaultObject | None:
    return session.scalar(select(VaultObject).where(VaultObject.uri == uri))


def assets_by_key(session: Session, source: Source) -> dict[str, Asset]:
    """Every asset of `source` by key, with its record and vault object loaded (a query each)."""
    query = (
        select(Asset)
        .where(Asset.source_id == source.id)
        .options(selectinload(Asset.record), selectinload(Asset.vault_object))
    )
    return {asset.key: asset for asset in session.scalars(query)}


def put_record(session: Session, asset: Asset, columns: Mapping[str, Any]) -> Record:
    """Create or replace the asset's record with these columns as they are (a rebuild's)."""
    record = asset.record
    if record is None:
        record = Record(asset=asset, **columns)
        session.add(record)
    else:
        for name, value in columns.items():
            setattr(record, name, value)
    return record


def vaulted_assets(session: Session, prefix: str = "") -> list[Asset]:
    """The assets under `prefix` that have a vault copy (vaulted, archived, restored; with it loaded)."""
    states = (AssetState.VAULTED, AssetState.ARCHIVED, AssetState.RESTORED)
    query = (
        select(Asset)
        .where(
            Asset.key.startswith(prefix, autoescape=True),
            Asset.state.in_(states),
            Asset.vault_object_id.is_not(None),
        )
        .order_by(Asset.vault_object_id, Asset.key)
        .options(selectinload(Asset.vault_object), selectinload(Asset.source))
    )
    return list(session.scalars(query))


def vault_object_keys(session: Session) -> set[str]:
    return set(session.scalars(select(VaultObject.key)))


def journal_view(session: Session) -> dict[tuple[str, str], tuple[AssetState, str | None]]:
    """(source URL, key) -> (state, rendered SHA-256) of every asset that has a record."""
    rows = session.execute(
        select(Source.url, Asset.key, Asset.state, Record.rendered_sha256)
        .join(Asset, Asset.source_id == Source.id)
        .join(Record, Record.asset_id == Asset.id)
    )
    return {(url, key): (state, sha) for url, key, state, sha in rows}
