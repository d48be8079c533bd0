"""Sans-I/O planning: which pages to fetch, how pages link, and whether the export is complete.

Strategy: the first page (offset 0) tells two things, the total the server counts (``X-Total-Count``) and
the page size it really uses (it may cap ``limit`` silently: a first page shorter than asked while the
total says there is more means the cap is that length). Every other offset follows from those two, so all
pages can be fetched at once. Consecutive pages overlap by one order: a page that holds the previous
page's last order proves that nothing slipped between them, even while orders are created and closed
(offsets shift, but the relative order of the orders that stay does not). A page that does not link is
bridged by the pipeline, and the last page must come back short (the end of the collection). At the end,
``reconcile`` weighs that chain and the counts; it never calls a shortfall it cannot explain complete.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """The pages of one export: ``total`` orders in pages of ``page_size``. Consecutive pages overlap by
    one order (``step`` = ``page_size`` - 1), so that each page proves it continues the one before."""

    total: int
    page_size: int

    @property
    def overlaps(self) -> bool:
        return self.page_size > 1

    @property
    def step(self) -> int:
        return self.page_size - 1 if self.overlaps else 1

    def offsets(self) -> range:
        """Every offset after the first page, each page holding at least one order the previous lacks."""
        return range(self.step, self.total - 1 if self.overlaps else self.total, self.step)

    def expected(self, offset: int) -> int:
        """How many orders the page at ``offset`` should hold if the total holds."""
        return max(0, min(self.page_size, self.total - offset))

    @property
    def pages(self) -> int:
        return 1 + len(self.offsets())


def plan_from_first_page(requested: int, first_count: int, total: int) -> Plan:
    """The plan that follows from the first page: ``first_count`` orders where ``requested`` were asked."""
    if first_count > requested:
        # The server ignored `limit` and sent more: it pages by that many.
        page_size = first_count
    elif 0 < first_count < requested and first_count < total:
        # Shorter than asked although more exist: the server caps `limit` at this.
        page_size = first_count
    else:
        page_size = requested
    return Plan(total=total, page_size=page_size)


def continuation(previous: Sequence[object], ids: Sequence[object]) -> int | None:
    """Where the new orders of a page start, if the page holds the previous page's last order (the
    overlap): the index just past it. None when the page does not link to the previous one."""
    if not previous:
        return 0
    last = previous[-1]
    for index, order_id in enumerate(ids):
        if order_id == last:
            return index + 1
    return None


def last_position(ids: Sequence[object], wanted: Container[object]) -> int | None:
    """The index of the last of ``ids`` found in ``wanted``, or None."""
    for index in range(len(ids) - 1, -1, -1):
        if ids[index] in wanted:
            return index
    return None


def first_position(ids: Sequence[object], wanted: Container[object], start: int) -> int | None:
    """The index of the first of ``ids[start:]`` found in ``wanted``, or None."""
    for index in range(start, len(ids)):
        if ids[index] in wanted:
            return index
    return None


@dataclass(frozen=True)
class Verdict:
    """Whether the export is complete, and why."""

    complete: bool
    reason: str


def reconcile(
    *,
    total_first: int,
    total_last: int,
    written: int,
    chain_proven: bool,
    drift_seen: bool,
    total_ignores_filters: bool,
) -> Verdict:
    """Decide whether ``written`` unique orders make a complete export.

    ``chain_proven``: every page linked to the one before (or was bridged) and the last one reached the end
    of the collection. ``drift_seen``: the collection visibly moved (a page that did not link, or totals
    that differ). A chain that ends early while nothing moved and the count falls short is not trusted: a
    server that stops answering past some offset looks the same."""
    moved = total_first != total_last
    if written == total_first == total_last:
        return Verdict(True, f"all {written} orders the API counts were written")
    if chain_proven and (drift_seen or moved):
        return Verdict(
            True,
            f"{written} orders written while the collection moved (total {total_first} at the start, "
            f"{total_last} at the end); every page was linked to the next, so every order present "
            "throughout was written once",
        )
    if chain_proven and written < total_first and total_ignores_filters:
        return Verdict(
            True,
            f"{written} orders written; X-Total-Count ({total_first}) ignores the filters: the pages after "
            "the last matching order came back empty",
        )
    low, high = sorted((total_first, total_last))
    if not chain_proven and moved and low <= written <= high:
        return Verdict(
            True,
            f"{written} orders written while the total moved from {total_first} to {total_last} "
            "(orders without ids: checked by count only)",
        )
    if written < low:
        return Verdict(
            False,
            f"{low - written} orders missing: {written} written but the API counts {total_first} (start) and "
            f"{total_last} (end)",
        )
    return Verdict(
        False,
        f"{written} orders written but the API counts {total_first} (start) and {total_last} (end): "
        "the pages do not add up",
    )
