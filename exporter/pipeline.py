"""The fan-out: one producer of offsets, N fetchers, and one writer that puts pages back in order.

Strategy: the first page gives the total and the real page size, so every other offset is known at once.
The producer hands offsets to ``concurrency`` fetcher tasks, but only after taking a slot of the reorder
window; the writer gives the slot back once the page is written. Pages can finish in any order, yet the
writer emits them strictly by offset, so the output equals a sequential walk, at most ``window`` pages
wait in memory whatever the total, and a slow writer holds the producer back. Because slots are taken in
offset order, the page the writer waits for always holds one: the window can never deadlock.

A page shorter than planned (not the last) is topped up from where it stopped; duplicates that offset
paging lets through (an order seen on two pages when the collection shifts) are dropped by id within a
bounded horizon of recent ids. At the end the total is read again and everything is reconciled.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import anyio

from exporter.errors import ExportError
from exporter.fetch import Fetcher
from exporter.plan import PageTally, Verdict, plan_from_first_page, reconcile
from exporter.report import Counters

Records = list[dict[str, Any]]
Deliver = Callable[[Records], Awaitable[None]]


class RecentIds:
    """Ids of the last ``horizon`` orders written: enough to catch the duplicates of shifting pages while
    memory stays bounded whatever the total."""

    def __init__(self, horizon: int) -> None:
        self._horizon = max(1, horizon)
        self._seen: set[Any] = set()
        self._pages: collections.deque[list[Any]] = collections.deque()
        self._held = 0

    def fresh(self, items: Records, counters: Counters) -> Records:
        """The orders of ``items`` not seen recently, in order; counts what it drops."""
        ids = [item.get("id") for item in items]
        try:
            unique = set(ids)
        except TypeError:  # an id that is a JSON object or array: compare its text
            ids = [i if i is None or isinstance(i, str | int) else repr(i) for i in ids]
            unique = set(ids)
        if None in unique:
            counters.orders_without_id += ids.count(None)
            unique.discard(None)
        if len(unique) == len(ids) - ids.count(None) and unique.isdisjoint(self._seen):
            kept = items
        else:
            kept, page_seen = [], set()
            for item, order_id in zip(items, ids, strict=True):
                if order_id is not None and (order_id in self._seen or order_id in page_seen):
                    counters.duplicates_dropped += 1
                    continue
                page_seen.add(order_id)
                kept.append(item)
        self._remember(list(unique))
        return kept

    def _remember(self, ids: list[Any]) -> None:
        self._seen.update(ids)
        self._pages.append(ids)
        self._held += len(ids)
        while self._held > self._horizon and len(self._pages) > 1:
            old = self._pages.popleft()
            self._seen.difference_update(old)
            self._held -= len(old)


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
) -> Verdict:
    """Fetch every page, hand the new orders to ``deliver`` in API order, and reconcile the totals."""
    first = await fetcher.page(0, page_size)
    plan = plan_from_first_page(page_size, len(first.items), first.total)
    counters.total_first = first.total
    counters.page_size = plan.page_size
    counters.pages_planned = plan.pages
    recent = RecentIds(dedupe_horizon)
    tally: list[tuple[int, int]] = []

    async def emit(offset: int, items: Records) -> None:
        tally.append((offset, len(items)))
        fresh = recent.fresh(items, counters)
        if fresh:
            await deliver(fresh)
        counters.orders_written += len(fresh)
        counters.pages_done += 1

    async def fetch_full(offset: int) -> Records:
        page = await fetcher.page(offset, plan.page_size)
        items = page.items
        expected = plan.expected(offset)
        # Short but not empty: the server capped this answer or the collection shifted; top it up.
        while 0 < len(items) < expected:
            more = await fetcher.page(offset + len(items), expected - len(items))
            if not more.items:
                break
            counters.gap_fills += 1
            items = items + more.items
        return items

    await emit(0, first.items)
    await _fan_out(plan.offsets(), fetch_full, emit, concurrency=concurrency, window=window)

    counters.total_last = (await fetcher.page(0, 1)).total
    tail_empty = PageTally(tuple(tally)).tail_empty_after_end(plan)
    ignores_filters = False
    if (
        filtered
        and tail_empty
        and counters.total_last == first.total
        and counters.orders_written < first.total
    ):
        ignores_filters = (await fetcher.page(0, 1, filtered=False)).total == first.total
    return reconcile(
        total_first=first.total,
        total_last=counters.total_last,
        written=counters.orders_written,
        tail_empty=tail_empty,
        total_ignores_filters=ignores_filters,
    )


async def _fan_out(
    offsets: range,
    fetch: Callable[[int], Awaitable[Records]],
    emit: Callable[[int, Records], Awaitable[None]],
    *,
    concurrency: int,
    window: int,
) -> None:
    if not offsets:
        return
    slots = anyio.Semaphore(window)
    offsets_tx, offsets_rx = anyio.create_memory_object_stream[int](0)
    pages_tx, pages_rx = anyio.create_memory_object_stream[tuple[int, Records]](window)

    async def produce() -> None:
        async with offsets_tx:
            for offset in offsets:
                await slots.acquire()
                await offsets_tx.send(offset)

    async def fetch_loop(
        rx: anyio.abc.ObjectReceiveStream[int], tx: anyio.abc.ObjectSendStream[tuple[int, Records]]
    ) -> None:
        async with rx, tx:
            async for offset in rx:
                await tx.send((offset, await fetch(offset)))

    async with task_group() as tg:
        tg.start_soon(produce)
        for _ in range(min(concurrency, len(offsets))):
            tg.start_soon(fetch_loop, offsets_rx.clone(), pages_tx.clone())
        offsets_rx.close()
        pages_tx.close()
        pending: dict[int, Records] = {}
        order = iter(offsets)
        wanted: int | None = next(order)
        async with pages_rx:
            async for offset, items in pages_rx:
                pending[offset] = items
                while wanted is not None and wanted in pending:
                    await emit(wanted, pending.pop(wanted))
                    slots.release()
                    wanted = next(order, None)


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
