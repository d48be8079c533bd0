"""The fan-out: N fetcher tasks, and one writer side that puts pages back in order and checks them.

Strategy: the first page gives the total and the real page size, so every other offset is known at once.
The first wave goes out with it, guessed at the page size asked for (``_Ahead``): no round trip is spent
waiting for the plan when the server honours the page size.
``concurrency`` fetcher tasks take the offsets in order, each only after taking a slot of the reorder
window; the writer side gives the slot back once the page is written. Pages can finish in any order, yet
they are written strictly by offset, so the output equals a sequential walk, at most ``window`` pages wait
in memory (as bytes, decoded only at their turn; no new fetch starts while they hold two rounds of pages,
8 to 32 MiB, whatever the page size) whatever the total, and a slow writer holds the fetchers back.
Because slots are taken in offset order, the page the writer waits for always holds one: the window cannot
deadlock.

Pages overlap by one order (see ``plan``). The writer side (``_Walk``) checks that each page holds the
previous page's last order; when one does not (orders were closed or created in between, or the server
cut a page short) it *bridges*: it fetches windows afresh from where the previous page's orders stand now,
and either writes what lies between them and the page, or finds that the page was pushed wholly before
them and adds nothing. Past the planned pages it follows the collection while pages come back full.
Duplicates that offset paging lets through are dropped by id within a bounded horizon of recent ids. At
the end, the total of the answer that came last (as late as any order written) and ``plan.reconcile``
decide.

A shard (``--shard K/N``) reads the first page for the plan only, then walks its slice of the pages the same
way (see ``plan.ShardSlice``): a slice after the first one takes its first page's first order as the anchor
the page links to, without writing it; only the last slice follows the tail. ``plan.reconcile_shard``
decides for the slice, and the shard's edges (``plan.ShardEdges``: in the returned verdict and in
``Counters.shard``) let ``plan.join_shards`` prove that the shards join.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Container, Iterable, Iterator
from typing import Any, NamedTuple

import anyio

from exporter.checkpoint import WalkState
from exporter.errors import ExportError, IncompleteExport, UsageError
from exporter.fetch import Fetcher
from exporter.plan import (
    WHOLE,
    Plan,
    Shard,
    ShardEdges,
    ShardSlice,
    Verdict,
    continuation,
    first_position,
    last_position,
    plan_from_first_page,
    reconcile,
    reconcile_shard,
)
from exporter.report import Counters
from exporter.responses import Items, RawPage, detail_id

Records = list[dict[str, Any]]
# Called after each page with a function that tells the walk's state (built only when a commit wants it).
OnPage = Callable[[Callable[[], WalkState]], Awaitable[None]]
# Counters that describe the output (not this run's requests): carried over by --resume.
RESUMED_COUNTERS = (
    "orders_written",
    "duplicates_dropped",
    "orders_without_id",
    "pages_done",
    "links_broken",
    "bridge_requests",
    "orders_bridged",
    "tail_pages",
    "details_missing",
)
_MAX_BRIDGE_WINDOWS = 64
# Orders met behind the walk and not written yet (``_Walk.passed_over``) kept at most: past that many, the
# API's order is not stable enough to export by offsets.
_MAX_PASSED_OVER = 100_000
# Up to this many of them left unwritten at the end are asked for one by one (closed, or still there).
_MAX_ASKED = 200
# Takes each page's new orders, as the fetcher decoded them: dicts, or JSON lines (see ``responses.Items``).
Deliver = Callable[[Items], Awaitable[None]]


class RecentIds:
    """Ids of the last orders written, at least ``horizon`` / 2 of them and at most ``horizon``: enough to
    catch the duplicates of shifting pages while memory stays bounded whatever the total.

    Two generations of sets; the older is dropped whole when the newer is full. One set with the oldest
    page's ids taken out as each new page's went in kept rebuilding a table of megabytes, and peak RSS grew
    with the length of the export (JSONL: 58 MB at 100,000 orders, 69 MB at 1,000,000; now 56 and 64)."""

    def __init__(self, horizon: int) -> None:
        self._generation = max(1, horizon // 2)
        self._newer: set[Any] = set()
        self._older: set[Any] = set()

    def fresh(self, items: Items, ids: list[Any], counters: Counters) -> Items:
        """The orders of ``items`` (whose ids are ``ids``) not seen recently, in order; counts what it
        drops."""
        unique = set(ids)
        missing = 0
        if None in unique:
            missing = ids.count(None)
            counters.orders_without_id += missing
            unique.discard(None)
        if (
            len(unique) == len(ids) - missing
            and unique.isdisjoint(self._newer)
            and unique.isdisjoint(self._older)
        ):
            kept = items
        else:
            kept, page_seen = [], set()
            for item, order_id in zip(items, ids, strict=True):
                if order_id is not None and (order_id in self or order_id in page_seen):
                    counters.duplicates_dropped += 1
                    continue
                page_seen.add(order_id)
                kept.append(item)
        self.remember(unique)
        return kept

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._newer or order_id in self._older

    def remember(self, ids: Iterable[Any]) -> None:
        """Count ``ids`` as seen."""
        self._newer.update(ids)
        if len(self._newer) >= self._generation:
            self._older, self._newer = self._newer, set()


class _Bridged(NamedTuple):
    """What ``_Walk._bridge`` found: the orders to write and their ids, the ids the next page must link
    to and the offset where those stood, and whether the page lay wholly before the previous one's last
    order (then it is no end of the collection, however short)."""

    items: Items
    ids: list[Any]
    link: list[Any]
    offset: int
    behind: bool = False


class _Walk:
    """The writer's side of the pipeline: takes pages in offset order, checks that each links to the one
    before, bridges the ones that do not, and hands the new orders on.

    It reads nothing of an order but its id, given beside it (``Page.ids``): the orders may be dicts or
    JSON lines, and are only sliced, counted and handed on, in step with their ids."""

    def __init__(
        self, fetcher: Fetcher, plan: Plan, deliver: Deliver, counters: Counters, horizon: int
    ) -> None:
        self._fetcher = fetcher
        self._plan = plan
        self._deliver = deliver
        self._counters = counters
        self._recent = RecentIds(horizon)
        self.previous: list[Any] | None = None  # ids of the last non-empty page or window taken
        self.last_offset = 0  # where the last order of `previous` stood when it was fetched
        self.ended = False  # the last page or window came back short: the end of the collection
        self.proven = plan.overlaps  # every link checked so far (ids present, pages overlapping)
        self.drift_seen = False
        self.next_offset: int | None = None  # the next planned page to take; None past the plan (or slice)
        self.shard: Shard | None = None  # the shard whose slice this walk covers; None: the whole plan
        self.anchor_pending = False  # the next page taken starts a shard's slice: its first order anchors
        self.passed_over: set[Any] = set()  # ids met on pages behind the walk (``_behind``), not written yet
        self.head: Any = None  # the id of that anchor, once taken

    def state(self) -> WalkState:
        """Where the walk stands, for a checkpoint."""
        return WalkState(
            total_first=self._plan.total,
            page_size=self._plan.page_size,
            next_offset=self.next_offset,
            previous=list(self.previous or []),
            last_offset=self.last_offset,
            ended=self.ended,
            proven=self.proven,
            drift_seen=self.drift_seen,
            counters={name: getattr(self._counters, name) for name in RESUMED_COUNTERS},
            shard=None if self.shard is None else str(self.shard),
            head=self.head,
            passed_over=list(self.passed_over),
        )

    def restore(self, state: WalkState) -> None:
        """Continue from a checkpoint's state."""
        self.previous = list(state.previous) or None
        self.last_offset = state.last_offset
        self.ended = state.ended
        self.proven = state.proven
        self.drift_seen = state.drift_seen
        self.next_offset = state.next_offset
        self.head = state.head
        self.passed_over = set(state.passed_over)
        for name, value in state.counters.items():
            if name in RESUMED_COUNTERS:
                setattr(self._counters, name, value)
        if self.previous:
            self._recent.remember(self.previous)

    async def accept(
        self, offset: int, items: Items, ids: list[Any], total: int | None = None, *, again: bool = False
    ) -> None:
        """Take the page fetched at ``offset``: its orders, their ids, and the X-Total-Count it came with
        (None: none, or unknown); ``again``: it was fetched a second time, having come back empty."""
        fetched_at = offset
        new, new_ids = items, ids
        behind = False
        if self.anchor_pending:
            # A shard's first page: its first order is the previous shard's last, which that shard writes;
            # here it stands for the previous page of the link check.
            self.anchor_pending = False
            new, new_ids = items[1:], ids[1:]
            self.head = ids[0] if ids else None
            if self.head is None:
                self.proven = False  # nothing to link to: the slice's start cannot be shown
            else:
                self.previous, self.last_offset = ids[:1], offset
                self._recent.remember(self.previous)
        if not self.proven or None in ids:
            self.proven = False
            if (
                self.previous
                and ids
                and offset == self.last_offset
                and self.previous[-1] is None
                and ids[0] is None
            ):
                # No chain to check, but this page starts where the previous one ended: its first order is
                # that page's last, the overlap. Without an id the duplicate horizon cannot drop it, so it
                # goes by position (an order with an id is left to the horizon, which also sees drift).
                new, new_ids = new[1:], new_ids[1:]
        elif self.previous is not None:
            start = continuation(self.previous, ids)
            if start is not None:
                if start - 1 != self.last_offset - offset:
                    # Linked, but the previous page's last order is not where the offsets put it: orders
                    # were created or closed before it. The totals may still agree (as many created as
                    # closed), so this is the only sign that a count short of them is drift, not loss.
                    self.drift_seen = True
                new, new_ids = items[start:], ids[start:]
            elif not items and self.ended:
                pass  # past the end of the collection, as the previous page already said
            elif not items and total is not None and offset < total and not again:
                # Empty, though its own count says orders stand here: a glitch is likelier than every order
                # from the previous page's last on closed at once. Asked again once: bridged as it is, with
                # no order of its own to meet, it walked windows to the end of the collection (64 at most,
                # then exit 5, "orders moved faster than the export could follow").
                self._counters.retries += 1
                page = await self._fetcher.page(offset, self._plan.page_size)
                await self.accept(offset, page.items, page.ids, page.total, again=True)
                return
            else:
                if items:
                    self.drift_seen = True
                    self._counters.links_broken += 1
                new, new_ids, ids, offset, behind = await self._bridge(offset, items, ids)
        if ids:
            self.previous = ids
            self.last_offset = offset + len(ids) - 1
        # A page that lies before L is no end, however short: the collection goes on past L.
        self.ended = not behind and _ends(fetched_at, len(items), self._plan.page_size, total)
        await self._emit(new, new_ids)

    async def follow_tail(self, limit: int, on_page: OnPage) -> None:
        """After the planned pages: while the last page was full, the collection may go on (orders created
        meanwhile, or pushed along by others): follow it, page by page, to its end."""
        pages = 0
        while not self.ended and self.proven:
            if pages >= limit:
                raise IncompleteExport(
                    f"the collection kept growing past {pages} extra pages; export with a sort that puts new "
                    "orders last (e.g. --sort createdAt) or filter on a closed period"
                )
            pages += 1
            self._counters.tail_pages += 1
            offset = self.last_offset
            page = await self._fetcher.page(offset, self._plan.page_size)
            await self.accept(offset, page.items, page.ids, page.total)
            self.next_offset = None
            await on_page(self.state)

    async def _emit(self, items: Items, ids: list[Any]) -> None:
        if self.passed_over:
            self.passed_over.difference_update(ids)
        fresh = self._recent.fresh(items, ids, self._counters)
        if fresh:
            await self._deliver(fresh)
        self._counters.orders_written += len(fresh)
        self._counters.pages_done += 1

    def _behind(self, ids: list[Any], l_at_least: int) -> _Bridged:
        """A page of ``ids`` lies wholly before L, the previous page's last order, which now stands at
        ``l_at_least`` or further: the page adds nothing, says nothing of where the collection ends
        (``_Bridged.behind``), and the walk goes on from L's new place.

        Orders inserted before L push it on, so such a page holds orders already written, and orders created
        meanwhile. Those never met are kept in ``passed_over`` until they are written: if the API's order
        changes from one request to the next (no stable default sort), they never are, and the verdict
        counts them against what the total grew (``unexplained``), since every link may still hold."""
        self.passed_over.update(i for i in ids if i is not None and i not in self._recent)
        if len(self.passed_over) > _MAX_PASSED_OVER:
            raise IncompleteExport(_unstable(len(self.passed_over)), resumable=False)  # it would again
        previous = self.previous or []
        return _Bridged([], [], previous, max(self.last_offset, l_at_least) - len(previous) + 1, behind=True)

    async def unexplained(self, total_last: int) -> int:
        """How many orders met on pages behind the walk, and never written, are neither explained by the
        total's growth (orders created behind the walk) nor gone (closed meanwhile, asked one by one when
        there are few): 0 for an API whose order holds still."""
        grown = max(0, total_last - self._plan.total)
        if len(self.passed_over) <= grown:
            return 0
        if len(self.passed_over) > _MAX_ASKED:
            return len(self.passed_over) - grown
        present = 0
        for order_id in self.passed_over:
            key = detail_id(order_id)
            if key is None or await self._fetcher.order(key) is not None:
                present += 1  # still there, or no id to ask with; gone (404): closed since it was met
        return max(0, present - grown)

    async def _bridge(self, offset: int, items: Items, ids: list[Any]) -> _Bridged:
        """The orders between the previous page and this one, fetched afresh.

        This page does not hold the previous page's last order L, so it lies wholly before L (orders
        inserted earlier in the list pushed L on) or wholly after it (orders closed before it pulled the
        rest back, or the server cut a page short). Find where the previous page's orders stand now, looking
        back, then forward; if this page's orders show up before them, the page adds nothing (skip it);
        else walk windows forward from L until this page's orders appear, or the collection ends."""
        assert self.previous is not None
        plan, counters = self._plan, self._counters
        previous = set(self.previous)
        # Any order already written marks a point of the list we are past: the previous page's orders may
        # all have been closed meanwhile, but some earlier one is still there.
        walked: set[Any] = set()
        covered = _Either(walked, self._recent)
        if not previous.isdisjoint(ids):
            # It overlaps the previous page without reaching L: it lies before L, which stands past it.
            return self._behind(ids, offset + len(ids))
        wanted = {order_id: index for index, order_id in enumerate(ids)}
        probes = _probe_starts(max(0, min(offset, self.last_offset) - plan.page_size // 2), plan.page_size)
        start = next(probes)
        first_seen: int | None = None  # where this page's orders were first seen while looking for L
        located = False
        bridged: Items = []
        bridged_ids: list[Any] = []
        for _ in range(_MAX_BRIDGE_WINDOWS):
            counters.bridge_requests += 1
            page = await self._fetcher.page(start, plan.page_size)
            window, window_ids = page.items, page.ids
            seen = first_position(window_ids, wanted, 0)
            if seen is not None and (first_seen is None or start + seen < first_seen):
                first_seen = start + seen
            anchor = last_position(window_ids, covered)
            if anchor is None:
                start = next(probes, -1)
                if start < 0:
                    break
                continue
            if not located:
                located = True
                if first_seen is not None and first_seen < start + anchor:
                    # Its orders stand before an order already written (L, or one before it): so does it.
                    return self._behind(ids, start + anchor)
            meet = first_position(window_ids, wanted, anchor + 1)
            if meet is not None:
                counters.orders_bridged += meet - anchor - 1
                resume_at = wanted[window_ids[meet]]
                return _Bridged(
                    bridged + window[anchor + 1 : meet] + items[resume_at:],
                    bridged_ids + window_ids[anchor + 1 : meet] + ids[resume_at:],
                    ids,
                    offset,
                )
            bridged += window[anchor + 1 :]
            bridged_ids += window_ids[anchor + 1 :]
            counters.orders_bridged += len(window) - anchor - 1
            if _ends(start, len(window), plan.page_size, page.total):
                # The collection ends here and none of this page's orders are left in it: they were closed.
                return _Bridged(bridged, bridged_ids, window_ids, start)
            walked.update(window_ids)
            start += len(window) - 1
            probes = _probe_starts(start, plan.page_size)
            next(probes)
        raise IncompleteExport(
            f"orders moved faster than the export could follow near offset {offset}: could not link the page "
            "there to the one before it"
        )


def _unstable(count: int) -> str:
    return (
        f"the API does not list the orders in a stable order: {count:,} orders met in pages that stood "
        "before orders already written were never written, more than the total grew; export with --sort "
        "on fields that do not change, e.g. --sort createdAt,id"
    )


def _ends(offset: int, count: int, page_size: int, total: int | None) -> bool:
    """Whether an answer of ``count`` orders from ``offset`` reached the end of the collection: it is short
    of the page size, and its own X-Total-Count counts no order past it (or it has none, or it brought no
    more than the overlap). A server that cuts later pages shorter than the first (a cap that varies) sends
    short answers long before the end: taken for the end, they ended the walk there, and what the bridge
    had not found was taken for closed."""
    if count >= page_size:
        return False
    return total is None or offset + count >= total or count <= 1


class _Either:
    """Membership in either of two containers, without building their union."""

    def __init__(self, first: Container[Any], second: Container[Any]) -> None:
        self._first = first
        self._second = second

    def __contains__(self, item: object) -> bool:
        return item in self._first or item in self._second


def _probe_starts(base: int, page_size: int) -> Iterator[int]:
    """Window starts around ``base``, alternately back and forward, ever further (never below 0)."""
    seen = set()
    distance = page_size
    yield base
    seen.add(base)
    while distance < 2**40:
        for candidate in (max(0, base - distance), base + distance):
            if candidate not in seen:
                seen.add(candidate)
                yield candidate
        distance *= 2


async def run_pipeline(
    fetcher: Fetcher,
    deliver: Deliver,
    counters: Counters,
    *,
    page_size: int,
    concurrency: int,
    window: int,
    dedupe_horizon: int,
    filtered: bool,
    resume: WalkState | None = None,
    on_page: OnPage | None = None,
    shard: Shard | None = None,
) -> Verdict:
    """Fetch every page, hand the new orders to ``deliver`` in API order, and reconcile. ``on_page`` hears
    the walk's state after each page (for checkpoints); ``resume`` continues from such a state. ``shard``:
    walk only that shard's slice of the pages; the verdict is the slice's, with the shard's edges (also left
    in ``counters.shard``)."""
    report_state = on_page or _ignore
    # Structured: the first wave's fetches (see _Ahead) live no longer than the export.
    async with task_group() as guesses:
        ahead = (
            _Ahead(guesses, fetcher, page_size, concurrency - 1) if resume is None and shard is None else None
        )
        if resume is None:
            first = await fetcher.page(0, page_size, need_total=True)
            assert first.total is not None
            plan = plan_from_first_page(page_size, len(first.items), first.total)
            part = plan.shard_slice(shard or WHOLE)
            walk = _Walk(fetcher, plan, deliver, counters, dedupe_horizon)
            walk.shard = shard
            offsets = part.offsets()
            if ahead is not None:
                ahead.keep(offsets if plan.page_size == page_size else range(0))
            if part.first:
                await walk.accept(0, first.items, first.ids, first.total)
                offsets = offsets[1:]
            walk.anchor_pending = part.anchored
            walk.next_offset = offsets.start if offsets else None
            await report_state(walk.state)
        else:
            plan = Plan(total=resume.total_first, page_size=resume.page_size)
            if resume.shard != (None if shard is None else str(shard)):
                raise UsageError(
                    f"--resume: the checkpoint was made by {_shard_name(resume.shard)}, not by "
                    f"{_shard_name(shard)}: resume with the same --shard"
                )
            part = plan.shard_slice(shard or WHOLE)
            walk = _Walk(fetcher, plan, deliver, counters, dedupe_horizon)
            walk.shard = shard
            walk.restore(resume)
            planned = part.offsets()
            start = resume.next_offset if resume.next_offset is not None else planned.stop
            offsets = range(start, planned.stop, planned.step)
            # Stopped before the slice's first page was taken: its anchor is still to come.
            walk.anchor_pending = part.anchored and start == planned.start
        counters.total_first = plan.total
        counters.orders_planned = len(part.positions())
        counters.page_size = plan.page_size
        counters.pages_planned = part.pages

        async def fetch(offset: int) -> RawPage:
            guessed = await ahead.take(offset) if ahead is not None else None
            return guessed if guessed is not None else await fetcher.raw_page(offset, plan.page_size)

        async def take(offset: int, raw: RawPage) -> None:
            page = await fetcher.decoded(raw, plan.page_size)  # a body broken after all: fetched again
            await walk.accept(offset, page.items, page.ids, page.total)
            # Set only once the page is taken: a checkpoint made while accept() waits must not skip it.
            following = offset + offsets.step
            walk.next_offset = following if following < offsets.stop else None
            await report_state(walk.state)

        await _fan_out(offsets, fetch, take, concurrency=concurrency, window=window)
        if part.last:
            await walk.follow_tail(max(100, plan.pages), report_state)

        # The end total: that of the answer that came last, as late as any order written; read afresh only
        # when no answer of this run had one.
        total_last = fetcher.latest_total
        if total_last is None:
            total_last = (await fetcher.page(0, 1, need_total=True)).total
        assert total_last is not None
        counters.total_last = total_last
        written = counters.orders_written
        counters.drift_seen = walk.drift_seen or total_last != plan.total
        unexplained = await walk.unexplained(total_last)
        if shard is not None:
            verdict = reconcile_shard(
                part,
                total_last=total_last,
                written=written,
                chain_proven=walk.proven,
                drift_seen=walk.drift_seen,
                duplicates=counters.duplicates_dropped,
            )
            if unexplained:
                verdict = Verdict(False, _unstable(unexplained))
            counters.shard = _edges(shard, part, walk, total_last, counters, verdict)
            return Verdict(verdict.complete, verdict.reason, counters.shard)
        if unexplained:
            return Verdict(False, _unstable(unexplained))
        ignores_filters = False
        if filtered and walk.proven and counters.total_last == plan.total and written < plan.total:
            ignores_filters = (await fetcher.page(0, 1, filtered=False, need_total=True)).total == plan.total
        return reconcile(
            total_first=plan.total,
            total_last=total_last,
            written=written,
            chain_proven=walk.proven,
            drift_seen=walk.drift_seen,
            total_ignores_filters=ignores_filters,
            duplicates=counters.duplicates_dropped,
        )


class _Ahead:
    """The first wave, asked for together with the first page: the pages that follow it if the server
    honours the page size asked for, which the first page's answer then confirms (they are handed to the
    fan-out) or refutes (they are cancelled). Saves the first round trip of every export; costs at most
    ``count`` wasted requests when the collection is smaller than the wave or the server caps the page."""

    def __init__(self, tg: anyio.abc.TaskGroup, fetcher: Fetcher, page_size: int, count: int) -> None:
        step = Plan(total=0, page_size=page_size).step  # the plan's, if the page size asked for holds
        self._guesses = {step * i: _Guess() for i in range(1, count + 1)}
        for offset, guess in self._guesses.items():
            tg.start_soon(guess.fetch, fetcher, offset, page_size)

    def keep(self, offsets: Container[int]) -> None:
        """Cancel the guesses that are not among the planned ``offsets``."""
        for offset in [offset for offset in self._guesses if offset not in offsets]:
            self._guesses.pop(offset).scope.cancel()

    async def take(self, offset: int) -> RawPage | None:
        """The guessed page at ``offset`` (its fetch's error, raised), or None if it was not guessed."""
        guess = self._guesses.pop(offset, None)
        if guess is None:
            return None
        await guess.arrived.wait()
        if isinstance(guess.result, Exception):
            raise guess.result
        assert guess.result is not None  # set before `arrived`
        return guess.result


class _Guess:
    """One page of the first wave: its fetch's scope (to cancel it), and its page or error once arrived."""

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.arrived = anyio.Event()
        self.result: RawPage | Exception | None = None

    async def fetch(self, fetcher: Fetcher, offset: int, page_size: int) -> None:
        with self.scope:
            try:
                self.result = await fetcher.raw_page(offset, page_size)
            except Exception as exc:  # kept for whoever takes the page; ignored if nobody does
                self.result = exc
        self.arrived.set()


def _edges(
    shard: Shard,
    part: ShardSlice,
    walk: _Walk,
    total_last: int,
    counters: Counters,
    verdict: Verdict,
) -> ShardEdges:
    """What ``plan.join_shards`` needs of this shard's run."""
    offsets = part.offsets()
    return ShardEdges(
        shard=shard,
        plan_pages=part.plan.pages,
        first_page=part.first_page,
        stop_page=part.stop_page,
        first_offset=offsets[0] if offsets else None,
        last_offset=offsets[-1] if offsets else None,
        head=walk.head,
        # The last order of its chain: the next shard's anchor, if nothing moved in between.
        tail=walk.previous[-1] if walk.previous and not part.last else None,
        total_first=part.plan.total,
        total_last=total_last,
        page_size=part.plan.page_size,
        written=counters.orders_written,
        proven=walk.proven,
        drift_seen=walk.drift_seen,
        complete=verdict.complete,
        reason=verdict.reason,
        duplicates=counters.duplicates_dropped,
    )


def _shard_name(shard: Shard | str | None) -> str:
    return "an unsharded export" if shard is None else f"shard {shard}"


async def _ignore(state: Callable[[], WalkState]) -> None:
    return None


async def _fan_out(
    offsets: range,
    fetch: Callable[[int], Awaitable[RawPage]],
    emit: Callable[[int, RawPage], Awaitable[None]],
    *,
    concurrency: int,
    window: int,
    window_bytes: int | None = None,
) -> None:
    """Fetch ``offsets`` with ``concurrency`` tasks; ``emit`` each page in offset order. At most
    ``window`` pages wait, and no new fetch starts while the waiting pages hold ``window_bytes`` (None: two
    rounds of the largest page seen, within 8 to 32 MiB; see ``_window_budget``)."""
    if not offsets:
        return
    slots = anyio.Semaphore(window)
    todo = iter(offsets)
    done: dict[int, RawPage] = {}
    held = [0]  # bytes of the pages in `done`
    budget = [window_bytes or _WINDOW_BYTES_MIN]
    drained: list[anyio.Event | None] = [None]  # set when the writer takes a page, for fetchers held back
    # The offset the writer side waits for, and the event that wakes it when that page arrives: pages
    # that arrive early wake nobody (most arrive out of order), and an event is made only for a wait.
    wanted: list[Any] = [None, None]

    async def fetcher() -> None:
        # A slot is taken before an offset, and offsets are taken in order: the page the writer waits
        # for always holds a slot, so the window cannot deadlock.
        while True:
            try:
                slots.acquire_nowait()  # no checkpoint when a slot is free: the fetch awaits anyway
            except anyio.WouldBlock:
                await slots.acquire()
            # Held back by the bytes waiting: the page the writer wants is never among the held back,
            # since offsets go out in order and every page before it has been written.
            while held[0] > budget[0]:
                event = drained[0] = drained[0] or anyio.Event()
                await event.wait()
            offset = next(todo, None)
            if offset is None:
                slots.release()
                return
            page = done[offset] = await fetch(offset)
            held[0] += len(page.body)
            if window_bytes is None:
                budget[0] = _window_budget(budget[0], len(page.body), concurrency)
            if offset == wanted[0]:
                wanted[1].set()

    async with task_group() as tg:
        for _ in range(min(concurrency, len(offsets))):
            tg.start_soon(fetcher)
        for offset in offsets:
            page = done.pop(offset, None)
            if page is None:
                arrived = anyio.Event()
                wanted[:] = offset, arrived
                await arrived.wait()
                wanted[0] = None
                page = done.pop(offset)
            held[0] -= len(page.body)
            if drained[0] is not None:
                drained[0].set()
                drained[0] = None
            await emit(offset, page)
            del page  # its bytes go now, not when the next page replaces them
            slots.release()


_WINDOW_BYTES_MIN = 8 << 20
_WINDOW_BYTES_MAX = 32 << 20


def _window_budget(budget: int, page_bytes: int, concurrency: int) -> int:
    """The bytes the waiting pages may hold: two rounds of the largest page seen, so that a slow page
    never idles the fetchers, within 8 to 32 MiB. When the writer is the slower side, the window stays full
    whatever its size: 32 MiB of 500-order pages there made the heap grow with the length of the export
    (CSV: peak RSS 57 MB at 100,000 orders, 65 MB at 1,000,000; 57 and 63 at 8 MiB)."""
    return max(budget, min(_WINDOW_BYTES_MAX, 2 * concurrency * page_bytes))


@contextlib.asynccontextmanager
async def task_group() -> AsyncIterator[anyio.abc.TaskGroup]:
    """An anyio task group that raises the one error that matters rather than an ExceptionGroup."""
    try:
        async with anyio.create_task_group() as tg:
            yield tg
    except BaseExceptionGroup as group:
        raise _most_telling(group.exceptions) from None


def _most_telling(errors: Iterable[BaseException]) -> BaseException:
    """The one error of a task group worth showing: ours first, then an interrupt, then anything."""
    leaves: list[BaseException] = []

    def walk(items: Iterable[BaseException]) -> None:
        for item in items:
            if isinstance(item, BaseExceptionGroup):
                walk(item.exceptions)
            else:
                leaves.append(item)

    walk(errors)
    for kind in (ExportError, KeyboardInterrupt, Exception):
        for leaf in leaves:
            if isinstance(leaf, kind):
                return leaf
    return leaves[0]
