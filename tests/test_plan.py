"""The page planner and the final reconciliation: pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.plan import PageTally, Plan, plan_from_first_page, reconcile


def test_offsets_cover_every_order_after_the_first_page() -> None:
    """Offsets step by the page size from the second page to the total."""
    plan = plan_from_first_page(100, 100, 1050)
    assert list(plan.offsets()) == list(range(100, 1050, 100))
    assert plan.pages == 11
    assert plan.expected(1000) == 50


def test_a_capped_limit_sets_the_page_size() -> None:
    """A first page shorter than asked, while more exist, reveals the server's cap."""
    plan = plan_from_first_page(500, 250, 10_000)
    assert plan.page_size == 250
    assert list(plan.offsets())[:2] == [250, 500]


def test_a_server_that_sends_more_than_asked_pages_by_what_it_sends() -> None:
    """Larger pages than asked: step by what came back, so no order is fetched twice."""
    assert plan_from_first_page(100, 300, 1000).page_size == 300


@pytest.mark.parametrize(("first", "total"), [(0, 0), (7, 7), (100, 100)])
def test_a_total_within_one_page_needs_no_other_page(first: int, total: int) -> None:
    """Total 0, or smaller than a page: the first page is everything."""
    plan = plan_from_first_page(100, first, total)
    assert list(plan.offsets()) == []
    assert plan.pages == 1


def test_an_empty_first_page_with_a_total_keeps_the_asked_size() -> None:
    """An empty first page says nothing of a cap: page by what was asked."""
    assert plan_from_first_page(100, 0, 1000).page_size == 100


@given(st.integers(1, 5000), st.integers(0, 20_000))
def test_planned_pages_tile_the_total_exactly(page_size: int, total: int) -> None:
    """Property: the planned pages cover [0, total) once, with no overlap and no hole."""
    plan = Plan(total=total, page_size=page_size)
    covered = plan.expected(0) + sum(plan.expected(o) for o in plan.offsets())
    assert covered == total


def test_tail_of_empty_pages_is_recognised() -> None:
    """Full pages, one short page, then only empty pages: the shape of an overstated total."""
    plan = Plan(total=500, page_size=100)
    assert PageTally(((0, 100), (100, 100), (200, 30), (300, 0), (400, 0))).tail_empty_after_end(plan)
    assert not PageTally(((0, 100), (100, 0), (200, 100), (300, 0), (400, 0))).tail_empty_after_end(plan)
    assert not PageTally(((0, 100), (100, 100), (200, 100), (300, 100), (400, 100))).tail_empty_after_end(
        plan
    )


def test_reconcile_accepts_an_exact_count() -> None:
    """Written equals both totals: complete."""
    verdict = reconcile(
        total_first=10, total_last=10, written=10, tail_empty=False, total_ignores_filters=False
    )
    assert verdict.complete


def test_reconcile_refuses_a_gap_the_totals_do_not_explain() -> None:
    """A shortfall with a steady total is an incomplete export, with the count missing in the reason."""
    verdict = reconcile(
        total_first=10, total_last=10, written=8, tail_empty=False, total_ignores_filters=False
    )
    assert not verdict.complete
    assert "2 orders missing" in verdict.reason


def test_reconcile_accepts_a_verified_filter_ignoring_total() -> None:
    """Only when the tail is empty *and* the unfiltered total matched is a short count complete."""
    ok = reconcile(total_first=100, total_last=100, written=30, tail_empty=True, total_ignores_filters=True)
    unverified = reconcile(
        total_first=100, total_last=100, written=30, tail_empty=True, total_ignores_filters=False
    )
    assert ok.complete
    assert not unverified.complete


def test_reconcile_accepts_a_count_between_moving_totals() -> None:
    """Orders created or closed during the run: a count between the two totals is explained."""
    assert reconcile(
        total_first=100, total_last=110, written=105, tail_empty=False, total_ignores_filters=False
    ).complete
    assert not reconcile(
        total_first=100, total_last=110, written=95, tail_empty=False, total_ignores_filters=False
    ).complete


def test_reconcile_refuses_more_orders_than_counted() -> None:
    """More unique orders than any total: the pages do not add up."""
    verdict = reconcile(
        total_first=10, total_last=10, written=12, tail_empty=False, total_ignores_filters=False
    )
    assert not verdict.complete
