"""``--details``: each order's detail record (``GET /requests/{id}``) instead of its list item.

Strategy: a stage between the walk and the writer. Each page of list items becomes the detail records of
the same orders, fetched through the same fetcher (so the same rate limiter, token and retries), at most
``concurrency`` at a time across pages: the details of the next pages are fetched while a page's slowest
ones are still out, so requests keep flowing as they do for list pages. Pages still reach the writer
whole and in order, at most ``window`` of them in flight. The walk's checkpoints follow the pages they
belong to: the walk's state is taken when the walk reports a page, and handed on only once that page's
details are written, so a checkpoint never claims a page whose details are still out. An order that
vanished between the list and its detail (404) is counted and left out; it is not an error.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

from exporter.checkpoint import WalkState
from exporter.fetch import Fetcher
from exporter.pipeline import Deliver, OnPage, Records, task_group
from exporter.report import Counters
from exporter.responses import detail_id


class _Page:
    """One page of list items on its way to becoming detail records."""

    def __init__(self, size: int) -> None:
        self.details: list[dict[str, Any] | None] = [None] * size
        self.waiting = size
        self.missing = 0
        self.done = anyio.Event()

    def arrived(self) -> None:
        self.waiting -= 1
        if not self.waiting:
            self.done.set()


def _constant(state: WalkState) -> Callable[[], WalkState]:
    return lambda: state


@contextlib.asynccontextmanager
async def details_stage(
    deliver: Deliver,
    on_page: OnPage,
    fetcher: Fetcher,
    counters: Counters,
    *,
    concurrency: int,
    window: int = 4,
) -> AsyncIterator[tuple[Deliver, OnPage]]:
    """The ``deliver`` and ``on_page`` to give the pipeline instead of ``deliver`` and ``on_page``: pages
    of list items in, pages of detail records out (in order). Leaving the block writes what is still out."""
    slots = anyio.CapacityLimiter(concurrency)
    queue: collections.deque[_Page | WalkState] = collections.deque()
    in_flight = 0

    async def forward(*, wait: bool) -> None:
        """Hand on, in order, every page whose details are all in and the states that follow it; with
        ``wait``, wait for the first page still out."""
        nonlocal in_flight
        while queue:
            head = queue[0]
            if isinstance(head, _Page):
                if not head.done.is_set():
                    if not wait:
                        return
                    await head.done.wait()
                queue.popleft()
                in_flight -= 1
                await deliver([detail for detail in head.details if detail is not None])
                wait = False
            else:
                queue.popleft()
                # The 404s counted so far, less those of the pages that are still out.
                head.counters["details_missing"] = counters.details_missing - sum(
                    page.missing for page in queue if isinstance(page, _Page)
                )
                await on_page(_constant(head))

    async with task_group() as tg:

        async def fetch(page: _Page, index: int, order_id: str) -> None:
            async with slots:
                page.details[index] = await fetcher.order(order_id)
                if page.details[index] is None:
                    page.missing += 1
                    counters.details_missing += 1
            page.arrived()

        async def deliver_details(records: Records) -> None:
            nonlocal in_flight
            while in_flight >= window:
                await forward(wait=True)
            page = _Page(len(records))
            queue.append(page)
            in_flight += 1
            for index, record in enumerate(records):
                order_id = detail_id(record.get("id"))
                if order_id is not None:
                    tg.start_soon(fetch, page, index, order_id)
                else:
                    page.details[index] = record  # no id to ask for: the list item is all there is
                    page.arrived()
            if not records:
                page.done.set()
            await forward(wait=False)

        async def on_page_details(state: Callable[[], WalkState]) -> None:
            # Taken now: the walk moves on while this page's details are still out.
            snapshot = state()
            queue.append(snapshot)
            await forward(wait=False)

        yield deliver_details, on_page_details
        while queue:
            await forward(wait=True)
