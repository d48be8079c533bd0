"""Sans-I/O planning: which pages to fetch, and whether what was written adds up. No awaits here.

Strategy: the first page (offset 0) tells two things, the total the server counts (``X-Total-Count``) and
the page size it really uses (it may cap ``limit`` silently: a first page shorter than asked while the
total says there is more means the cap is that length). Every other offset follows from those two, so all
pages can be fetched at once. At the end the totals are read again and the count of unique orders written
is checked against them; a shortfall that the totals do not explain is a failed export, never a short file.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """The pages of one export: ``total`` orders in pages of ``page_size``."""

    total: int
    page_size: int

    def offsets(self) -> range:
        """Every offset after the first page."""
        return range(self.page_size, self.total, self.page_size)

    def expected(self, offset: int) -> int:
        """How many orders the page at ``offset`` should hold if the total holds."""
        return max(0, min(self.page_size, self.total - offset))

    @property
    def pages(self) -> int:
        return -(-self.total // self.page_size) if self.total else 1


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


@dataclass(frozen=True)
class PageTally:
    """What came back for the planned pages: orders received at each offset, in offset order."""

    counts: tuple[tuple[int, int], ...]

    def tail_empty_after_end(self, plan: Plan) -> bool:
        """True when pages are full up to one point and every page after it came back empty: the shape of
        a total that counts more than the collection holds (e.g. one that ignores the filters)."""
        ended = False
        for offset, count in self.counts:
            if ended and count:
                return False
            if count < plan.expected(offset):
                ended = True
        return ended


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
    tail_empty: bool,
    total_ignores_filters: bool,
) -> Verdict:
    """Check ``written`` unique orders against the totals read at the start and at the end."""
    if written == total_first == total_last:
        return Verdict(True, f"all {written} orders the API counts were written")
    if total_first == total_last and written < total_first and tail_empty and total_ignores_filters:
        return Verdict(
            True,
            f"{written} orders written; X-Total-Count ({total_first}) ignores the filters: the pages "
            "after the "
            "last matching order came back empty",
        )
    low, high = sorted((total_first, total_last))
    if total_first != total_last and low <= written <= high:
        return Verdict(
            True,
            f"{written} orders written while the total moved from {total_first} to {total_last} "
            "(orders created or closed during the export)",
        )
    if written < low:
        missing = low - written
        return Verdict(
            False,
            f"{missing} orders missing: {written} written but the API counts {total_first} (start) and "
            f"{total_last} (end)",
        )
    return Verdict(
        False,
        f"{written} orders written but the API counts only {total_first} (start) and {total_last} (end): "
        "the pages do not add up",
    )
