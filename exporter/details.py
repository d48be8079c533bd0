"""``--details``: each order's detail record (``GET /requests/{id}``) instead of its list item.

Strategy: a stage between the walk and the writer. Each page of list items, in order, becomes the detail
records of the same orders, fetched concurrently through the same fetcher (so the same rate limiter,
token and retries) and put back in the page's order before the writer sees them. An order that vanished
between the list and its detail (404) is counted and left out; it is not an error.
"""

from __future__ import annotations

from typing import Any

import anyio

from exporter.errors import RequestRejected
from exporter.fetch import Fetcher
from exporter.pipeline import Deliver, Records, task_group
from exporter.report import Counters


def with_details(deliver: Deliver, fetcher: Fetcher, counters: Counters, concurrency: int) -> Deliver:
    """``deliver``, fed detail records instead of the list items it is given."""
    slots = anyio.CapacityLimiter(concurrency)

    async def deliver_details(records: Records) -> None:
        details: list[dict[str, Any] | None] = [None] * len(records)

        async def one(index: int, order_id: str) -> None:
            async with slots:
                try:
                    details[index] = await fetcher.order(order_id)
                except RequestRejected as exc:
                    if exc.status != 404:
                        raise
                    counters.details_missing += 1

        async with task_group() as tg:
            for index, record in enumerate(records):
                order_id = record.get("id")
                if isinstance(order_id, str | int) and not isinstance(order_id, bool):
                    tg.start_soon(one, index, str(order_id))
                else:
                    details[index] = record  # no id to ask for: the list item is all there is
        await deliver([detail for detail in details if detail is not None])

    return deliver_details
