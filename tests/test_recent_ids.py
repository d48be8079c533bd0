"""The duplicate horizon: what it drops, what it counts, and that it stays bounded."""

from __future__ import annotations

from exporter.pipeline import RecentIds
from exporter.report import Counters


def page(start: int, stop: int) -> tuple[list[dict[str, int]], list[int]]:
    items = [{"id": i} for i in range(start, stop)]
    return items, [item["id"] for item in items]


def test_an_order_seen_within_the_horizon_is_dropped_and_counted() -> None:
    recent, counters = RecentIds(1_000), Counters()
    assert recent.fresh(*page(0, 100), counters) == page(0, 100)[0]
    # A shifted page: 30 orders already written, 70 new.
    kept = recent.fresh(*page(70, 170), counters)
    assert [item["id"] for item in kept] == list(range(100, 170))
    assert counters.duplicates_dropped == 30


def test_duplicates_within_one_page_and_missing_ids() -> None:
    recent, counters = RecentIds(1_000), Counters()
    items = [{"id": 1}, {"id": 2}, {"id": 1}, {}, {}]
    kept = recent.fresh(items, [1, 2, 1, None, None], counters)
    assert kept == [{"id": 1}, {"id": 2}, {}, {}]
    assert counters.duplicates_dropped == 1
    assert counters.orders_without_id == 2


def test_at_least_half_the_horizon_is_remembered_and_never_more_than_it() -> None:
    recent, counters = RecentIds(1_000), Counters()
    for start in range(0, 10_000, 100):
        recent.fresh(*page(start, start + 100), counters)
        remembered = [i for i in range(start + 100) if i in recent]
        assert len(remembered) <= 1_000
        # The newest ids are always among them, at least horizon / 2 of them.
        newest = list(range(max(0, start + 100 - 500), start + 100))
        assert all(i in recent for i in newest)
