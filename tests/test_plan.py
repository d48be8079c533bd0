"""The page planner and the final reconciliation: pure functions."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.errors import UsageError
from exporter.plan import (
    Plan,
    Shard,
    ShardEdges,
    Verdict,
    continuation,
    first_position,
    join_shards,
    last_position,
    plan_from_first_page,
    reconcile,
    reconcile_shard,
)


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


def reconciled(**kw: object) -> Verdict:
    """``reconcile`` with a proven chain, no drift and a total that heeds the filters, unless told."""
    settings: dict[str, object] = {
        "chain_proven": True,
        "drift_seen": False,
        "total_ignores_filters": False,
    }
    settings.update(kw)
    return reconcile(**settings)  # type: ignore[arg-type]


def verdict(**kw: object) -> bool:
    return reconciled(**kw).complete


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


def test_reconcile_counts_an_order_the_api_listed_twice_only_when_nothing_moved() -> None:
    """Written plus the duplicates dropped make the total: complete when every page linked in its place
    under one total (the API listed an order twice); else a shift could have doubled one order and skipped
    another, so the shortfall stands, and its message says duplicates were dropped."""
    assert verdict(total_first=10, total_last=10, written=8, duplicates=2)
    result = reconciled(total_first=10, total_last=10, written=8, chain_proven=False, duplicates=2)
    assert not result.complete
    assert "2 orders missing: 8 written (2 more dropped as duplicates" in result.reason
    assert not verdict(total_first=10, total_last=10, written=8, duplicates=1)
    assert not verdict(total_first=10, total_last=10, written=8, duplicates=3)
    assert not verdict(total_first=10, total_last=11, written=8, duplicates=2, chain_proven=False)


def test_reconcile_refuses_more_orders_than_counted() -> None:
    """More unique orders than any total, nothing moving: the pages do not add up."""
    assert not verdict(total_first=10, total_last=10, written=12)


# -- shards ----------------------------------------------------------------------------------------


@given(st.integers(1, 300), st.integers(0, 5_000), st.integers(1, 12))
def test_shard_slices_split_the_plan_and_its_positions(page_size: int, total: int, count: int) -> None:
    """Property: the slices, in shard order, are the plan's pages, each page once; the orders they write
    (each slice without its anchor) are every position once; only the last slice follows the tail."""
    plan = Plan(total=total, page_size=page_size)
    parts = [plan.shard_slice(Shard(index, count)) for index in range(count)]
    pages = [page for part in parts for page in range(part.first_page, part.stop_page)]
    assert pages == list(range(plan.pages))
    assert [offset for part in parts for offset in part.offsets()] == [0, *plan.offsets()]
    assert [position for part in parts for position in part.positions()] == list(range(total))
    assert [part.last for part in parts] == [False] * (count - 1) + [True]
    filled = [part for part in parts if not part.empty]
    assert filled[0].first
    assert not filled[0].anchored
    assert all(part.anchored == plan.overlaps for part in filled[1:])
    for before, after in pairwise(filled):
        # The anchor is the previous slice's last order: its last page's last position.
        last_page = before.offsets()[-1]
        assert last_page + min(page_size, total - last_page) - 1 == after.offsets()[0] or not plan.overlaps


def test_one_shard_is_the_unsharded_plan() -> None:
    """N = 1: the one slice is every page, from the first order to the end."""
    plan = Plan(total=1000, page_size=100)
    part = plan.shard_slice(Shard(0, 1))
    assert list(part.offsets()) == [0, *plan.offsets()]
    assert part.positions() == range(1000)
    assert part.first
    assert part.last
    assert not part.anchored


def test_more_shards_than_pages_leaves_slices_empty() -> None:
    """Two pages, five shards: three slices are empty; the others hold one page each."""
    plan = Plan(total=150, page_size=100)
    parts = [plan.shard_slice(Shard(index, 5)) for index in range(5)]
    assert [part.empty for part in parts] == [True, True, False, True, False]
    assert list(parts[2].offsets()) == [0]
    assert parts[2].positions() == range(100)
    assert list(parts[4].offsets()) == [99]
    assert parts[4].positions() == range(100, 150)
    assert parts[4].anchored
    assert parts[4].last


@pytest.mark.parametrize("text", ["3", "a/b", "1/", "/3", "1/3/5", "3/3", "-1/2", "0/0", ""])
def test_a_bad_shard_is_refused_in_one_line(text: str) -> None:
    """Anything but K/N with 0 <= K < N is a usage error naming the form."""
    with pytest.raises(UsageError) as caught:
        Shard.parse(text)
    assert "K/N" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_shard_parses_and_prints_as_k_of_n() -> None:
    assert Shard.parse("2/5") == Shard(2, 5)
    assert str(Shard(2, 5)) == "2/5"


def test_a_shard_reconciles_against_its_slice() -> None:
    """The slice's positions are what a shard must write: exact with a steady total, or a proven chain while
    the collection moved; an empty slice has nothing to write."""
    plan = Plan(total=1000, page_size=100)
    middle = plan.shard_slice(Shard(1, 3))  # pages 3 to 6: positions 298 to 693 (297 is its anchor)
    assert middle.positions() == range(298, 694)

    def check(**kw: object) -> tuple[bool, str]:
        settings: dict[str, object] = {"total_last": 1000, "chain_proven": True, "drift_seen": False}
        settings.update(kw)
        result = reconcile_shard(middle, **settings)  # type: ignore[arg-type]
        return result.complete, result.reason

    assert check(written=396)[0]
    complete, reason = check(written=390)
    assert not complete
    assert "6 orders missing" in reason
    assert "positions 298 to 693" in reason
    assert check(written=390, drift_seen=True)[0]
    assert check(written=390, total_last=995)[0]
    assert not check(written=390, total_last=995, chain_proven=False)[0]
    assert not check(written=400)[0]
    assert check(written=390, duplicates=6)[0]
    assert not check(written=390, duplicates=6, chain_proven=False)[0]
    assert not check(written=390, duplicates=5)[0]
    empty = Plan(total=50, page_size=100).shard_slice(Shard(0, 2))
    assert reconcile_shard(empty, total_last=50, written=0, chain_proven=True, drift_seen=False).complete


def still_edges(total: int, page_size: int, count: int, ids: list[str] | None = None) -> list[ShardEdges]:
    """The edges N shards report over a collection that does not move (``ids``, by position)."""
    ids = ids or [f"o{i:05d}" for i in range(total)]
    plan = Plan(total=total, page_size=page_size)
    edges = []
    for index in range(count):
        part = plan.shard_slice(Shard(index, count))
        offsets = part.offsets()
        last_page = offsets[-1] if offsets else 0
        edges.append(
            ShardEdges(
                shard=Shard(index, count),
                plan_pages=plan.pages,
                first_page=part.first_page,
                stop_page=part.stop_page,
                first_offset=offsets[0] if offsets else None,
                last_offset=offsets[-1] if offsets else None,
                head=ids[offsets[0]] if part.anchored else None,
                tail=None if part.empty or part.last else ids[last_page + page_size - 1],
                total_first=total,
                total_last=total,
                page_size=page_size,
                written=len(part.positions()),
                proven=plan.overlaps,
                drift_seen=False,
                complete=True,
                reason="all of its slice",
            )
        )
    return edges


@given(st.integers(1, 200), st.integers(0, 3_000), st.integers(1, 10))
def test_shards_of_a_still_collection_join(page_size: int, total: int, count: int) -> None:
    """Property: the shards of a collection that does not move always join, complete."""
    result = join_shards(still_edges(total, page_size, count))
    assert result.complete, result.reason


def test_joined_shards_are_complete() -> None:
    """Three shards whose ends meet and whose counts add up to the total."""
    result = join_shards(still_edges(5000, 100, 3))
    assert result.complete
    assert "all 5000 orders" in result.reason


def test_joined_shards_count_the_orders_the_api_listed_twice() -> None:
    """A shard that dropped orders the API listed twice, every chain proven, one total: the join is complete
    by written plus dropped; without proven chains the shortfall stands."""
    edges = still_edges(5000, 100, 3)
    edges[1] = replace(edges[1], written=edges[1].written - 2, duplicates=2)
    result = join_shards(edges)
    assert result.complete, result.reason
    assert "2 dropped" in result.reason
    unproven = [replace(edge, proven=False) for edge in edges]
    result = join_shards(unproven)
    assert not result.complete
    assert "2 orders missing: the shards wrote 4998 (2 more dropped as duplicates" in result.reason


def test_shards_that_do_not_meet_leave_a_gap() -> None:
    """Shard 2 started after another order than the one shard 1 ended with: not complete, named."""
    edges = still_edges(5000, 100, 3)
    edges[2] = replace(edges[2], head="o09999")
    result = join_shards(edges)
    assert not result.complete
    assert result.reason.startswith("shards 1 and 2 do not join")
    assert "o09999" in result.reason


def test_shards_that_saw_different_totals_must_prove_their_chain() -> None:
    """A total that moved between the shards' starts: the joins must hold and every chain be proven; a
    count cannot stand in for them."""
    edges = still_edges(5000, 100, 3)
    edges[1] = replace(edges[1], total_first=5003, total_last=5003)
    assert join_shards(edges).complete, "joined and proven: complete while the collection moved"
    unproven = [*edges[:2], replace(edges[2], proven=False)]
    result = join_shards(unproven)
    assert not result.complete
    assert "different totals" in result.reason
    moved_apart = [edges[0], edges[1], replace(edges[2], head="o03400", total_first=5100)]
    assert "do not join" in join_shards(moved_apart).reason


def test_a_steady_total_needs_the_exact_count() -> None:
    """Joined shards whose counts miss orders while nothing moved: incomplete, like reconcile."""
    edges = still_edges(5000, 100, 3)
    edges[1] = replace(edges[1], written=edges[1].written - 2)
    result = join_shards(edges)
    assert not result.complete
    assert "2 orders missing" in result.reason


def test_an_incomplete_shard_makes_the_join_incomplete() -> None:
    """A shard whose own verdict failed: the join names it and its reason."""
    edges = still_edges(5000, 100, 3)
    edges[1] = replace(edges[1], complete=False, reason="7 orders missing")
    result = join_shards(edges)
    assert not result.complete
    assert result.reason == "shard 1/3 is not complete: 7 orders missing"


def test_the_join_needs_every_shard_in_order() -> None:
    """Missing or misordered shards are refused before anything else."""
    edges = still_edges(5000, 100, 3)
    assert "in order" in join_shards([edges[0], edges[2], edges[1]]).reason
    assert "in order" in join_shards(edges[:2]).reason
    assert not join_shards([]).complete


def test_joins_without_ids_fall_back_to_the_exact_count() -> None:
    """Pages of one order (no overlap): no anchors, so only the exact count with a steady total proves it."""
    edges = still_edges(40, 1, 3)
    assert all(edge.head is None for edge in edges)
    assert join_shards(edges).complete
    moved = [*edges[:2], replace(edges[2], total_last=41, drift_seen=True)]
    assert "cannot be shown to join" in join_shards(moved).reason


def test_edges_survive_json() -> None:
    """to_json/from_json: what each shard records is what the join reads."""
    for edge in still_edges(5000, 100, 3):
        assert ShardEdges.from_json(orjson.loads(orjson.dumps(edge.to_json()))) == edge
