"""The page planner and the final reconciliation: pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.plan import Plan, continuation, first_position, last_position, plan_from_first_page, reconcile


def test_pages_overlap_by_one_order() -> None:
    """Offsets step by page size - 1, so each page repeats the previous page's last order."""
    plan = plan_from_first_page(100, 100, 1000)
    assert list(plan.offsets()) == list(range(99, 999, 99))
    assert plan.pages == 11
    assert plan.expected(990) == 10


def test_a_capped_limit_sets_the_page_size() -> None:
    """A first page shorter than asked, while more exist, reveals the server's cap."""
    plan = plan_from_first_page(500, 250, 10_000)
    assert plan.page_size == 250
    assert list(plan.offsets())[:2] == [249, 498]


def test_a_server_that_sends_more_than_asked_pages_by_what_it_sends() -> None:
    """Larger pages than asked: step by what came back."""
    assert plan_from_first_page(100, 300, 1000).page_size == 300


@pytest.mark.parametrize(("first", "total"), [(0, 0), (7, 7), (100, 100)])
def test_a_total_within_one_page_needs_no_other_planned_page(first: int, total: int) -> None:
    """Total 0, or no more than a page: the first page is the plan."""
    plan = plan_from_first_page(100, first, total)
    assert list(plan.offsets()) == []
    assert plan.pages == 1


def test_an_empty_first_page_with_a_total_keeps_the_asked_size() -> None:
    """An empty first page says nothing of a cap: page by what was asked."""
    assert plan_from_first_page(100, 0, 1000).page_size == 100


def test_pages_of_one_cannot_overlap() -> None:
    """With one order a page there is no overlap: every offset, no link checks."""
    plan = Plan(total=5, page_size=1)
    assert not plan.overlaps
    assert list(plan.offsets()) == [1, 2, 3, 4]


@given(st.integers(1, 5000), st.integers(0, 20_000))
def test_planned_pages_cover_every_position(page_size: int, total: int) -> None:
    """Property: the planned pages cover [0, total) with no hole, each adding at least one position."""
    plan = Plan(total=total, page_size=page_size)
    covered = set(range(plan.expected(0)))
    for offset in plan.offsets():
        span = set(range(offset, offset + plan.expected(offset)))
        assert span - covered, "each page brings something new"
        covered |= span
    assert covered == set(range(total))


def test_a_page_continues_after_the_previous_last_order() -> None:
    """The overlap: the page holds the previous last id; new orders start right after it."""
    assert continuation(["a", "b", "c"], ["c", "d", "e"]) == 1
    assert continuation(["a", "b", "c"], ["x", "c", "d"]) == 2  # shifted right: skip what came before
    assert continuation(["a", "b", "c"], ["d", "e"]) is None  # shifted left: something may be missing
    assert continuation([], ["d"]) == 0


def test_positions_find_anchors_and_meeting_points() -> None:
    """last_position/first_position search ids against a set."""
    ids = ["a", "b", "c", "b", "d"]
    assert last_position(ids, {"b"}) == 3
    assert last_position(ids, {"z"}) is None
    assert first_position(ids, {"b", "d"}, 2) == 3
    assert first_position(ids, {"a"}, 1) is None


def verdict(**kw: object) -> bool:
    settings: dict[str, object] = {
        "chain_proven": True,
        "drift_seen": False,
        "total_ignores_filters": False,
    }
    settings.update(kw)
    return reconcile(**settings).complete  # type: ignore[arg-type]


def test_reconcile_accepts_an_exact_count() -> None:
    """Written equals both totals: complete, proven chain or not."""
    assert verdict(total_first=10, total_last=10, written=10)
    assert verdict(total_first=10, total_last=10, written=10, chain_proven=False)


def test_reconcile_refuses_a_short_count_when_nothing_moved() -> None:
    """A shortfall with a steady total and no drift is incomplete, even with a linked chain: a server that
    stops answering past some offset looks the same."""
    result = reconcile(
        total_first=10,
        total_last=10,
        written=8,
        chain_proven=True,
        drift_seen=False,
        total_ignores_filters=False,
    )
    assert not result.complete
    assert "2 orders missing" in result.reason


def test_reconcile_trusts_a_linked_chain_under_drift() -> None:
    """Drift seen and every page linked: complete whatever the count."""
    assert verdict(total_first=100, total_last=140, written=95, drift_seen=True)
    assert verdict(total_first=100, total_last=90, written=99)


def test_reconcile_accepts_a_verified_filter_ignoring_total() -> None:
    """Only when the unfiltered total matched is a short count with a steady total complete."""
    assert verdict(total_first=100, total_last=100, written=30, total_ignores_filters=True)
    assert not verdict(total_first=100, total_last=100, written=30)


def test_reconcile_without_ids_falls_back_to_counts() -> None:
    """No chain (orders without ids): complete only if the count lies between the totals."""
    assert verdict(total_first=100, total_last=110, written=105, chain_proven=False)
    assert not verdict(total_first=100, total_last=110, written=95, chain_proven=False)


def test_reconcile_refuses_more_orders_than_counted() -> None:
    """More unique orders than any total, nothing moving: the pages do not add up."""
    assert not verdict(total_first=10, total_last=10, written=12)
