"""A person's decisions on what the gate accepted: approve or reject, kept as catalog events.

Owns what a decision may change. An asset is decided while its hot copy is still there (verified,
or vaulted and held for review by `archiver sweep --require-review`): approving it lets
`archiver release` (or a later sweep) finish the swap; rejecting it marks it rejected with reason
`reviewer`, and it stays hot. A reviewer who changes their mind may approve an asset they
rejected (it goes back to where it was: vaulted, or verified). A gate rejection may be confirmed
(`reject`) but not approved: the gate kept no record to regenerate it from. An asset already
released (archived: its hot copy is gone, or restored since) cannot be decided again; the same
decision again is a no-op, so applying one CSV twice changes nothing.

Each decision is one `reviewed` event (decision, reviewer, comment) after the state change, if any.
A rejection that changes an asset's state is journaled in the vault first (a tombstone), as the
sweep does for an asset that changed: an earlier run may have journaled it as archived. A decision
takes effect only if no sweep holds a claim on the asset (`queries.take_unclaimed`), so a decision
and a release never interleave. Nothing here serves bytes or parses CSV.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from archiver.catalog import queries
from archiver.catalog.database import Catalog
from archiver.catalog.models import Asset, AssetState
from archiver.errors import NotFound, ReviewError
from archiver.journal import JournalWriter, tombstone

APPROVED, REJECTED = "approved", "rejected"
REVIEWER_REASON = "reviewer"  # an asset's reason when a person rejected it
# What people type (the CSV's decision column, the page's API) and what it means.
SPELLINGS = {
    "approve": APPROVED,
    "approved": APPROVED,
    "yes": APPROVED,
    "reject": REJECTED,
    "rejected": REJECTED,
    "no": REJECTED,
}
DECIDABLE = (AssetState.VERIFIED, AssetState.VAULTED, AssetState.REJECTED)


def parse_decision(text: str) -> str:
    """`approve`/`reject` (and their other spellings) as APPROVED/REJECTED; ReviewError otherwise."""
    decision = SPELLINGS.get(text.strip().lower())
    if decision is None:
        raise ReviewError(f"{text!r} is not a decision: use approve or reject")
    return decision


def default_reviewer() -> str:
    """The OS user, when no --reviewer is given."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no user name in the environment or the password database
        return f"uid-{os.getuid()}"


@dataclass(frozen=True)
class Decision:
    """One decision on one asset, by key (a CSV row) or by id (the page)."""

    decision: str  # APPROVED or REJECTED
    key: str = ""
    source: str | None = None
    asset_id: int | None = None
    comment: str | None = None
    where: str = ""  # for messages: "decisions.csv line 4: "


@dataclass(frozen=True)
class Outcome:
    asset_id: int
    key: str
    decision: str
    changed: bool  # False: the asset already stood so (a no-op)
    state: str  # the asset's state after it


def plan(session: Session, asset: Asset, decision: str) -> AssetState | bool | None:
    """What `decision` does to `asset`: the state it moves to, None if it records the decision and
    keeps the state, False if it changes nothing (already so). ReviewError if it may not be taken."""
    review = queries.reviews(session, [asset.id]).get(asset.id)
    current = review.status if review is not None else None
    key, state = asset.key, asset.state
    by_gate = state == AssetState.REJECTED and asset.reason != REVIEWER_REASON
    if state not in DECIDABLE:
        if current == decision:
            return False
        if state == AssetState.RESTORED:  # back hot: no advice to restore what is restored
            original_hot = asset.hot_sha256 is not None and asset.hot_sha256 == asset.sha256
            raise ReviewError(
                f"{key} is restored: the original is hot again, a decision changes nothing"
                if original_hot
                else f"{key} is restored as a rehydrated copy, a decision changes nothing; "
                f"`archiver restore {key} --original` puts the original in its place"
            )
        if state == AssetState.ARCHIVED:
            raise ReviewError(
                f"{key} was already released (archived: its hot copy was swapped for its record); "
                f"a decision cannot undo that: `archiver restore {key} --original` brings the original back"
            )
        raise ReviewError(
            f"{key} is {state.value}: the gate has not judged it yet, there is nothing to decide"
        )
    if by_gate:
        if decision == APPROVED:
            raise ReviewError(
                f"{key}: the gate rejected it ({asset.reason}) and kept no record to regenerate it from; "
                "it stays hot (a sweep with other thresholds or a better model may archive it)"
            )
        return False if current == REJECTED else None
    if asset.record is None:
        raise ReviewError(f"{key} has no record to decide on")
    if decision == REJECTED:
        return False if state == AssetState.REJECTED else AssetState.REJECTED
    if state == AssetState.REJECTED:  # a reviewer's rejection, overruled
        return AssetState.VAULTED if asset.vault_object_id is not None else AssetState.VERIFIED
    return False if current == APPROVED else None


def take(
    session: Session, asset: Asset, decision: Decision, reviewer: str, now: datetime
) -> tuple[Outcome, AssetState | bool | None]:
    """Record `decision` on `asset` in the caller's transaction (see `plan`)."""
    action = plan(session, asset, decision.decision)
    if action is not False:
        if not queries.take_unclaimed(session, asset.id, now):
            raise ReviewError(
                f"{decision.where}{asset.key} is being processed by a sweep ({asset.claimed_by}): "
                "decide again once it ends"
            )
        if action == AssetState.REJECTED:
            queries.set_state(
                session,
                asset,
                AssetState.REJECTED,
                reason=REVIEWER_REASON,
                detail=decision.comment or f"rejected by {reviewer}",
            )
        elif action == AssetState.VAULTED:
            queries.set_state(session, asset, AssetState.VAULTED, vault_object=asset.vault_object_id)
        elif action == AssetState.VERIFIED:
            assert asset.record is not None
            queries.set_state(session, asset, AssetState.VERIFIED, seed=asset.record.seed)
        queries.record_event(
            session,
            queries.REVIEWED,
            asset,
            decision=decision.decision,
            reviewer=reviewer,
            comment=decision.comment,
        )
    changed = action is not False
    return Outcome(asset.id, asset.key, decision.decision, changed, asset.state.value), action


def _asset(session: Session, decision: Decision) -> Asset:
    if decision.asset_id is not None:
        asset = session.get(Asset, decision.asset_id)
        if asset is None:
            raise NotFound(f"{decision.where}no asset with id {decision.asset_id} in the catalog")
        return asset
    try:
        scope = queries.scoped_source(session, decision.source)
        return queries.resolve_key(session, decision.key, scope).asset  # the oldest source's, unless named
    except NotFound as exc:
        raise NotFound(f"{decision.where}{exc}") from None


def apply(
    catalog: Catalog,
    journal: JournalWriter,
    decisions: Sequence[Decision],
    reviewer: str,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Outcome]:
    """Take every decision, or none: each is checked first (unknown keys are NotFound, refusals
    ReviewError, naming the row), the rejections that change a state are journaled, then all are
    recorded in one transaction."""
    with catalog.begin() as session:  # check them all before anything is written
        tombstones = []
        for decision in decisions:
            asset = _asset(session, decision)
            try:
                action = plan(session, asset, decision.decision)
            except ReviewError as exc:
                raise ReviewError(f"{decision.where}{exc}; nothing was applied") from None
            if action == AssetState.REJECTED:
                tombstones.append(
                    tombstone(
                        asset.source.url, asset.key, "rejected", REVIEWER_REASON, clock(), journal.writer
                    )
                )
    journal.append(tombstones, clock())
    with catalog.begin() as session:
        outcomes = []
        for decision in decisions:
            outcome, _ = take(session, _asset(session, decision), decision, reviewer, clock())
            outcomes.append(outcome)
    return outcomes
