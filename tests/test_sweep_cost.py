"""The dry-run estimate against numbers worked out by hand, and the cases packing exists for."""

from __future__ import annotations

import json

import pytest

from archiver.errors import ConfigError
from archiver.sweep.cost import DEFAULT_PRICES, ClassEstimate, Prices, estimate, plan_objects

KIB, MIB, GIB = 2**10, 2**20, 2**30


def _rows(rows: list[ClassEstimate]) -> dict[str, ClassEstimate]:
    return {row.vault_class: row for row in rows}


def test_hand_computation() -> None:
    # Originals: 100 KiB = 102,400 B; 2 MiB = 2,097,152 B; 5 GiB = 5,368,709,120 B.
    # Threshold 1 MiB: the 2 MiB and 5 GiB originals are their own objects; the 100 KiB one goes
    # into a pack, estimated as 12,800 (per pack) + 102,400 + 1,536 (per member) = 116,736 B.
    # Objects: 2,097,152 + 5,368,709,120 + 116,736 = 5,370,923,008 B stored, 3 objects.
    # Originals: 5,370,908,672 B = 5 + 2/1024 + 100/1048576 = 5.0020484924316406 GB (GB = 2^30 B).
    # Hot (STANDARD): 5.0020484924316406 * 0.023 = 0.11504711532592773 USD/month.
    rows = _rows(estimate([100 * KIB, 2 * MIB, 5 * GIB], pack_threshold=1 * MIB, pack_target=64 * MIB))
    for row in rows.values():
        assert (row.originals, row.objects) == (3, 3)
        assert (row.original_bytes, row.stored_bytes) == (5_370_908_672, 5_370_923_008)
        assert row.hot_monthly == pytest.approx(0.11504711532592773)

    # GLACIER_IR: the 116,736 B pack is billed as 128 KiB = 131,072 B; no per-object overhead.
    # Billed 131,072 + 2,097,152 + 5,368,709,120 = 5,370,937,344 B = 5 + 2/1024 + 128/1048576
    # = 5.0020751953125 GB; * 0.004 = 0.02000830078125 USD/month.
    # Saving 0.11504711532592773 - 0.02000830078125 = 0.09503881454467773.
    # Minimum 90 days = 3 months: 0.02000830078125 * 3 = 0.06002490234375 USD.
    # Break-even: 0.06002490234375 / 0.11504711532592773 = 0.5217419156812393 months.
    ir = rows["GLACIER_IR"]
    assert (ir.billed_bytes, ir.standard_overhead_bytes, ir.minimum_days) == (5_370_937_344, 0, 90)
    assert ir.archive_monthly == pytest.approx(0.02000830078125)
    assert ir.saving_monthly == pytest.approx(0.09503881454467773)
    assert ir.minimum_commitment == pytest.approx(0.06002490234375)
    assert ir.break_even_months == pytest.approx(0.5217419156812393)

    # GLACIER: each of the 3 objects + 32 KiB at 0.0036 and + 8 KiB at 0.023.
    # Billed at 0.0036: 5,370,923,008 + 3 * 32,768 = 5,371,021,312 B = 5.002153396606445 GB
    #   -> 5.002153396606445 * 0.0036 = 0.018007752227783204
    # At STANDARD: 3 * 8,192 = 24,576 B = 0.00002288818359375 GB -> * 0.023 = 0.00000052642822265625
    # Monthly 0.018007752227783204 + 0.00000052642822265625 = 0.01800827865600586
    # Saving 0.11504711532592773 - 0.01800827865600586 = 0.09703883666992187
    # Minimum 90 days = 3 months: 0.054024835968017576; break-even 0.054024835968017576 / 0.115047... =
    # 0.4695887925130984 months.
    glacier = rows["GLACIER"]
    assert (glacier.billed_bytes, glacier.standard_overhead_bytes) == (5_371_021_312, 24_576)
    assert glacier.archive_monthly == pytest.approx(0.01800827865600586)
    assert glacier.saving_monthly == pytest.approx(0.09703883666992187)
    assert glacier.minimum_commitment == pytest.approx(0.054024835968017576)
    assert glacier.break_even_months == pytest.approx(0.4695887925130984)

    # DEEP_ARCHIVE: same bytes as GLACIER at 0.00099: 5.002153396606445 * 0.00099 = 0.004952131862640381
    # + the same 0.00000052642822265625 at STANDARD = 0.004952658290863037 USD/month.
    # Saving 0.11504711532592773 - 0.004952658290863037 = 0.1100944570350647.
    # Minimum 180 days = 6 months: 0.029715949745178223; break-even 0.25829374044706055 months.
    deep = rows["DEEP_ARCHIVE"]
    assert (deep.billed_bytes, deep.standard_overhead_bytes, deep.minimum_days) == (
        5_371_021_312,
        24_576,
        180,
    )
    assert deep.archive_monthly == pytest.approx(0.004952658290863037)
    assert deep.saving_monthly == pytest.approx(0.1100944570350647)
    assert deep.minimum_commitment == pytest.approx(0.029715949745178223)
    assert deep.break_even_months == pytest.approx(0.25829374044706055)


def test_plan_objects_packs_small_originals_greedily() -> None:
    # Singles first, in order; then the packs: [300, 500] (800 <= 1000), [400, 200], [999].
    sizes = [300, 5000, 500, 400, 1000, 200, 999]
    assert plan_objects(sizes, pack_threshold=1000, pack_target=1000) == [
        5000,
        1000,  # exactly the threshold: not packed
        12_800 + 300 + 500 + 2 * 1536,
        12_800 + 400 + 200 + 2 * 1536,
        12_800 + 999 + 1536,
    ]
    assert plan_objects(sizes, pack_threshold=0, pack_target=1) == sizes  # threshold 0: nothing packed
    assert plan_objects([], pack_threshold=10, pack_target=10) == []


def test_glacier_ir_bills_a_small_object_as_128_kib() -> None:
    ir = _rows(estimate([1000], pack_threshold=0, pack_target=MIB))["GLACIER_IR"]
    assert ir.billed_bytes == 128 * KIB
    assert ir.archive_monthly == pytest.approx(131_072 / GIB * 0.004)  # 4.8828125e-07
    big = _rows(estimate([200 * KIB], pack_threshold=0, pack_target=MIB))["GLACIER_IR"]
    assert big.billed_bytes == 200 * KIB


def test_tiny_objects_cost_more_in_deep_archive_unpacked_and_packing_fixes_it() -> None:
    sizes = [1000] * 1000  # 1,000 originals of 1 KB: 1,000,000 B
    # Unpacked: hot 1,000,000 B * 0.023 = 23,000 B-USD; archived, per object
    # (1,000 + 32,768) * 0.00099 + 8,192 * 0.023 = 33.43032 + 188.416 = 221.84632, so 221,846.32
    # for all (each divided by 2^30): saving (23,000 - 221,846.32) / 2^30 = -1.851896e-04 USD/month.
    unpacked = _rows(estimate(sizes, pack_threshold=0, pack_target=MIB))["DEEP_ARCHIVE"]
    assert unpacked.objects == 1000
    assert unpacked.hot_monthly == pytest.approx(23_000 / GIB)
    assert unpacked.archive_monthly == pytest.approx(221_846.32 / GIB)
    assert unpacked.saving_monthly == pytest.approx((23_000 - 221_846.32) / GIB)
    assert unpacked.saving_monthly < 0
    assert unpacked.break_even_months is None

    # Packed into one pack of 12,800 + 1000 * (1,000 + 1,536) = 2,548,800 B:
    # (2,548,800 + 32,768) * 0.00099 + 8,192 * 0.023 = 2,555.75232 + 188.416 = 2,744.16832.
    packed = _rows(estimate(sizes, pack_threshold=MIB, pack_target=64 * MIB))["DEEP_ARCHIVE"]
    assert (packed.objects, packed.stored_bytes) == (1, 2_548_800)
    assert packed.archive_monthly == pytest.approx(2_744.16832 / GIB)
    assert packed.saving_monthly == pytest.approx((23_000 - 2_744.16832) / GIB)
    assert packed.saving_monthly > 0


def test_prices_can_be_overridden_and_unknown_classes_are_refused() -> None:
    assert DEFAULT_PRICES.rate("DEEP_ARCHIVE") == 0.00099
    dearer = Prices(deep_archive=0.002)
    deep = _rows(estimate([GIB], dearer, pack_threshold=0, pack_target=MIB))["DEEP_ARCHIVE"]
    assert deep.archive_monthly == pytest.approx((GIB + 32 * KIB) / GIB * 0.002 + 8 * KIB / GIB * 0.023)
    with pytest.raises(ConfigError, match="no price for storage class 'ONEZONE_IA'"):
        estimate([1], pack_threshold=0, pack_target=1, hot_class="ONEZONE_IA")
    with pytest.raises(ConfigError, match="no price"):
        DEFAULT_PRICES.rate("standard")


def test_hot_class_sets_the_hot_rate() -> None:
    ir_hot = estimate([GIB], pack_threshold=0, pack_target=MIB, hot_class="GLACIER_IR")
    assert ir_hot[0].hot_monthly == pytest.approx(0.004)
    assert ir_hot[0].saving_monthly == pytest.approx(0.0)


def test_nothing_to_archive() -> None:
    for row in estimate([], pack_threshold=MIB, pack_target=64 * MIB):
        assert (row.objects, row.hot_monthly, row.archive_monthly, row.break_even_months) == (0, 0, 0, None)


def test_to_dict_is_json() -> None:
    rows = estimate([5 * MIB], pack_threshold=MIB, pack_target=64 * MIB)
    decoded = json.loads(json.dumps([row.to_dict() for row in rows]))
    assert [row["vault_class"] for row in decoded] == ["GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"]
    assert decoded[2]["minimum_days"] == 180


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="pack target"):
        plan_objects([1], pack_threshold=1, pack_target=0)
    with pytest.raises(ConfigError, match="pack threshold"):
        plan_objects([1], pack_threshold=-1, pack_target=1)
    with pytest.raises(ValueError, match="negative"):
        plan_objects([-1], pack_threshold=1, pack_target=1)
