"""The link check and the bridge, against a list that changes between pages (no HTTP, no sleeps)."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import anyio
import anyio.lowlevel
import orjson
import pytest

from exporter.checkpoint import Checkpoint
from exporter.pipeline import _fan_out, _Walk, _window_budget
from exporter.plan import Plan, reconcile
from exporter.report import Counters
from exporter.responses import Page, RawPage, decode_lines, decode_page

PAGE = 10
# The walk sees orders as dicts, or as JSON lines for a JSONL export: it must work the same on both.
DECODERS = pytest.mark.parametrize("lines", [False, True], ids=["dicts", "lines"])


class Collection:
    """A list of orders served by offset, decoded as an export would (dicts, or JSON lines); tests change it
    between pages."""

    def __init__(self, n: int, *, lines: bool = False) -> None:
        self.ids = [f"o{i:04d}" for i in range(n)]
        self.requests = 0
        self.decode = decode_lines if lines else decode_page

    async def order(self, order_id: str) -> dict[str, Any] | None:
        """An order's detail, as ``Fetcher.order`` gives it: None once it has left the list (closed)."""
        self.requests += 1
        return {"id": order_id} if order_id in self.ids else None

    async def page(self, offset: int, limit: int, **_: object) -> Page:
        self.requests += 1
        body = orjson.dumps([{"id": i, "n": len(i)} for i in self.ids[offset : offset + limit]])
        return self.decode(RawPage(offset, body, len(self.ids), None))  # X-Total-Count, as the API sends


def make_walk(collection: Collection) -> tuple[_Walk, list[str]]:
    written: list[str] = []

    async def deliver(records: list[Any]) -> None:
        for record in records:
            written.append((orjson.loads(record) if isinstance(record, bytes) else record)["id"])

    plan = Plan(total=len(collection.ids), page_size=PAGE)
    walk = _Walk(collection, plan, deliver, Counters(), horizon=1_000)  # type: ignore[arg-type]
    return walk, written


async def walk_all(collection: Collection, walk: _Walk, change_after: dict[int, Any]) -> None:
    """Take the planned pages in order, changing the collection after the pages named in change_after."""
    offsets = [0, *Plan(total=len(collection.ids), page_size=PAGE).offsets()]
    for index, offset in enumerate(offsets):
        page = await collection.page(offset, PAGE)
        await walk.accept(offset, page.items, page.ids, page.total)
        if index in change_after:
            change_after[index](collection.ids)

    async def ignore(state: object) -> None:
        return None

    await walk.follow_tail(100, ignore)


def assert_exact(written: list[str], stable: list[str]) -> None:
    assert len(written) == len(set(written)), "no order twice"
    positions = {order_id: i for i, order_id in enumerate(written)}
    assert all(order_id in positions for order_id in stable), set(stable) - set(positions)
    assert [positions[i] for i in stable] == sorted(positions[i] for i in stable), "order kept"


@DECODERS
async def test_unchanged_pages_link_without_a_single_extra_request(lines: bool) -> None:
    """A still collection: every page links through its overlap; no bridge, no tail beyond one page."""
    collection = Collection(95, lines=lines)
    walk, written = make_walk(collection)
    await walk_all(collection, walk, {})
    assert written == collection.ids
    assert walk._counters.bridge_requests == 0
    assert walk.proven


@DECODERS
async def test_a_closure_before_the_next_page_is_bridged(lines: bool) -> None:
    """One order closed before page 2 is read: the order that slid back onto page 1 is not lost."""
    collection = Collection(60, lines=lines)
    original = list(collection.ids)
    walk, written = make_walk(collection)
    await walk_all(collection, walk, {0: lambda ids: ids.remove("o0003")})
    assert_exact(written, [i for i in original if i != "o0003"])
    assert walk.drift_seen
    assert walk._counters.bridge_requests >= 1


@DECODERS
async def test_many_closures_shift_more_than_a_page_back(lines: bool) -> None:
    """Twenty orders closed after the first page: the bridge looks back to find where it stopped."""
    collection = Collection(80, lines=lines)
    closed = {f"o{i:04d}" for i in range(2, 40, 2)}
    stable = [i for i in collection.ids if i not in closed]

    def close(ids: list[str]) -> None:
        ids[:] = [i for i in ids if i not in closed]

    walk, written = make_walk(collection)
    await walk_all(collection, walk, {0: close})
    assert_exact(written, stable)


@DECODERS
async def test_insertions_push_a_page_wholly_before_the_previous_one(lines: bool) -> None:
    """25 orders inserted at the front after page 1: page 2 lies before page 1's last order and is skipped;
    the next pages link again, nothing of the original list is lost."""
    collection = Collection(70, lines=lines)
    stable = list(collection.ids)
    walk, written = make_walk(collection)
    inserted = [f"new{i:02d}" for i in range(25)]
    await walk_all(collection, walk, {0: lambda ids: ids.__setitem__(slice(0, 0), inserted)})
    assert_exact(written, stable)
    assert not set(written) & set(inserted[:10]), "orders inserted before what was read are not invented"


@DECODERS
async def test_an_api_whose_order_changes_from_request_to_request_is_not_taken_for_drift(lines: bool) -> None:
    """No stable default order (each answer a new shuffle, the total steady): the pages seem to lie before
    the orders already written, and skipped they leave most orders out while every link holds. The walk
    counts the orders it met there and never wrote: more than the total grew, so not complete."""
    collection = Collection(50, lines=lines)
    shuffles = random.Random(1)
    real_page = collection.page

    async def shuffled(offset: int, limit: int, **kw: object) -> Page:
        shuffles.shuffle(collection.ids)
        return await real_page(offset, limit)

    collection.page = shuffled  # type: ignore[method-assign]
    walk, written = make_walk(collection)
    await walk_all(collection, walk, {})
    assert len(set(written)) < 50
    assert await walk.unexplained(len(collection.ids)) > 0, "orders passed over and never written"
    verdict = reconcile(
        total_first=50,
        total_last=50,
        written=len(written),
        chain_proven=walk.proven,
        drift_seen=walk.drift_seen,
        total_ignores_filters=False,
    )
    assert verdict.complete, "the links alone would have passed it: why the walk must count what it met"


async def scrambled_page(real_page: Any) -> Page:
    """What a proxy scrambled the answer at offset 9 into: the first order (already written), then the nine
    orders from offset 40."""
    page, first = await real_page(40, 9), await real_page(0, 1)
    return dataclasses.replace(page, items=first.items + page.items, ids=first.ids + page.ids)


@DECODERS
async def test_a_stale_page_behind_the_walk_passes_over_orders_only_until_they_are_written(
    lines: bool,
) -> None:
    """A proxy serves one scrambled answer: an order already written, then nine from further on. The page
    is taken to lie behind the walk, its orders are passed over, and the next pages write them after all:
    nothing unexplained is left. Had they never come, they would be counted against the total's growth."""
    collection = Collection(60, lines=lines)
    real_page = collection.page

    async def scrambled_once(offset: int, limit: int, **kw: object) -> Page:
        if offset == 9 and not walk.passed_over and not written[10:]:
            return await scrambled_page(real_page)
        return await real_page(offset, limit)

    collection.page = scrambled_once  # type: ignore[method-assign]
    walk, written = make_walk(collection)
    seen: list[int] = []
    real_behind = walk._behind

    def behind(ids: list[Any], l_at_least: int) -> Any:
        seen.append(len(ids))
        return real_behind(ids, l_at_least)

    walk._behind = behind  # type: ignore[method-assign]
    await walk_all(collection, walk, {})
    assert seen == [10], "the scrambled page was taken to lie behind the walk"
    assert written == collection.ids
    assert not walk.passed_over
    assert await walk.unexplained(60) == 0


@DECODERS
async def test_orders_passed_over_then_closed_are_explained_by_asking_for_them(lines: bool) -> None:
    """The scrambled answer's nine orders from further on are closed before the walk reaches them: never
    written, not grown into the total, but each is asked for at the end and is gone (404), so none is
    unexplained."""
    collection = Collection(60, lines=lines)
    real_page = collection.page
    scrambled = [f"o{i:04d}" for i in range(40, 49)]

    async def scrambled_once(offset: int, limit: int, **kw: object) -> Page:
        if offset == 9 and "o0040" in collection.ids and not walk.passed_over:
            return await scrambled_page(real_page)
        return await real_page(offset, limit)

    def close(ids: list[str]) -> None:
        ids[:] = [i for i in ids if i not in scrambled]

    collection.page = scrambled_once  # type: ignore[method-assign]
    walk, written = make_walk(collection)
    await walk_all(collection, walk, {1: close})
    assert walk.passed_over == set(scrambled)
    assert written == collection.ids
    requests = collection.requests
    assert await walk.unexplained(len(collection.ids)) == 0
    assert collection.requests == requests + 9, "each asked for once"


async def test_orders_passed_over_are_carried_by_a_checkpoint() -> None:
    """A walk resumed from a checkpoint still knows the orders its first run passed over: a commit between
    the scrambled page and the end of an unstable API must not wipe the evidence."""
    collection = Collection(60)
    real_page = collection.page

    async def scrambled_once(offset: int, limit: int, **kw: object) -> Page:
        return await (scrambled_page(real_page) if offset == 9 else real_page(offset, limit))

    collection.page = scrambled_once  # type: ignore[method-assign]
    walk, _ = make_walk(collection)
    for offset in (0, 9):
        page = await collection.page(offset, PAGE)
        await walk.accept(offset, page.items, page.ids, page.total)
    saved = Checkpoint.from_bytes(Checkpoint({}, walk.state(), {}).to_bytes()).walk
    resumed, _ = make_walk(collection)
    resumed.restore(saved)
    assert resumed.passed_over == walk.passed_over == {f"o{i:04d}" for i in range(40, 49)}


@DECODERS
async def test_a_short_page_that_lies_before_the_last_order_written_does_not_end_the_walk(
    lines: bool,
) -> None:
    """A proxy serves a stale short answer for the last page: orders of the page before, short of its last
    one. It lies before that order, so it cannot be the end: the walk goes on past that order to the real
    end, and no order is left out (taken for the end, it left the last 7 out, with every link held)."""
    collection = Collection(35, lines=lines)
    real_page = collection.page
    stale = {"served": False}

    async def stale_last_page(offset: int, limit: int, **kw: object) -> Page:
        if offset == 27 and not stale["served"]:
            stale["served"] = True
            return await real_page(15, 8)  # overlaps the previous page, short of its last order
        return await real_page(offset, limit)

    collection.page = stale_last_page  # type: ignore[method-assign]
    walk, written = make_walk(collection)
    await walk_all(collection, walk, {})
    assert written == collection.ids


@DECODERS
async def test_a_page_cut_short_by_the_server_is_filled(lines: bool) -> None:
    """A server that answers one page with 6 of 10 orders: the next page does not link; the 4 come back."""
    collection = Collection(50, lines=lines)
    walk, written = make_walk(collection)
    short = {"done": False}
    real_page = collection.page

    async def flaky(offset: int, limit: int, **kw: object) -> Page:
        answer = await real_page(offset, limit)
        if offset == 9 and not short["done"]:
            short["done"] = True
            return dataclasses.replace(answer, items=answer.items[:6], ids=answer.ids[:6])
        return answer

    collection.page = flaky  # type: ignore[method-assign]
    await walk_all(collection, walk, {})
    assert written == collection.ids


async def slow_writer_fan_out(size: int, concurrency: int, window_bytes: int | None) -> tuple[int, list[int]]:
    """40 pages of ``size`` bytes through ``_fan_out`` to a slow writer: the most pages ever waiting
    (fetched, not yet written), and the offsets written."""
    waiting: set[int] = set()
    most = 0
    written: list[int] = []

    async def fetch(offset: int) -> RawPage:
        nonlocal most
        await anyio.lowlevel.checkpoint()
        waiting.add(offset)
        most = max(most, len(waiting))
        return RawPage(offset, b"x" * size, None, None)

    async def emit(offset: int, page: RawPage) -> None:
        waiting.discard(offset)
        written.append(offset)
        await anyio.sleep(0.001)  # a slow writer

    await _fan_out(range(40), fetch, emit, concurrency=concurrency, window=64, window_bytes=window_bytes)
    return most, written


async def test_the_window_holds_back_new_fetches_past_its_bytes() -> None:
    """Pages of 1 MB with a 3 MB budget: while the writer is slow, fetchers stop starting new pages, so
    at most the budget plus the pages already in flight wait; every page is still written, in order."""
    most, written = await slow_writer_fan_out(1 << 20, 4, 3 << 20)
    assert written == list(range(40))
    assert most <= 3 + 1 + 4


async def test_the_window_budget_is_two_rounds_of_the_largest_page_within_bounds() -> None:
    """Without a fixed budget: at least 8 MiB, else two rounds of the largest page seen, at most 32 MiB."""
    assert _window_budget(8 << 20, 45_000, 16) == 8 << 20  # small pages: the floor
    assert _window_budget(8 << 20, 1 << 20, 16) == 32 << 20  # 2 x 16 x 1 MiB, capped
    assert _window_budget(8 << 20, 400_000, 16) == 2 * 16 * 400_000
    assert _window_budget(20 << 20, 45_000, 16) == 20 << 20  # never lower than a larger page made it
    # Pages of 2 MiB, 4 fetchers, a slow writer: the budget becomes 16 MiB, 8 pages, and holds.
    most, written = await slow_writer_fan_out(2 << 20, 4, None)
    assert written == list(range(40))
    assert 8 < most <= 8 + 1 + 4


@DECODERS
async def test_a_link_off_its_place_is_drift_even_when_the_totals_agree(lines: bool) -> None:
    """After page 1, three orders are created at the front (newest first) and three closed further on: the
    total is what it was, every page still links (further in than the offsets say), and the walk writes
    each order that stayed. The misplaced link is drift: the verdict is complete, not "3 missing"."""
    collection = Collection(95, lines=lines)
    original = list(collection.ids)
    closed = {"o0060", "o0070", "o0080"}

    def create_and_close(ids: list[str]) -> None:
        ids[:] = ["new0", "new1", "new2"] + [i for i in ids if i not in closed]

    walk, written = make_walk(collection)
    await walk_all(collection, walk, {1: create_and_close})
    assert_exact(written, [i for i in original if i not in closed])
    assert walk.proven
    assert walk.drift_seen
    verdict = reconcile(
        total_first=95,
        total_last=len(collection.ids),
        written=len(written),
        chain_proven=walk.proven,
        drift_seen=walk.drift_seen,
        total_ignores_filters=False,
    )
    assert len(collection.ids) == 95
    assert verdict.complete, verdict.reason


@DECODERS
async def test_pages_that_link_in_place_are_no_drift(lines: bool) -> None:
    """Orders created past the walk's position only: every page links where the offsets put it."""
    collection = Collection(60, lines=lines)
    walk, written = make_walk(collection)
    await walk_all(collection, walk, {1: lambda ids: ids.extend(["late0", "late1"])})
    assert written == collection.ids
    assert not walk.drift_seen
