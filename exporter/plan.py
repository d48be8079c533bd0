"""Sans-I/O planning: which pages to fetch, how pages link, and whether the export is complete.

Strategy: the first page (offset 0) tells two things, the total the server counts (``X-Total-Count``) and
the page size it really uses (it may cap ``limit`` silently: a first page shorter than asked while the
total says there is more means the cap is that length). Every other offset follows from those two, so all
pages can be fetched at once. Consecutive pages overlap by one order: a page that holds the previous
page's last order proves that nothing slipped between them, even while orders are created and closed
(offsets shift, but the relative order of the orders that stay does not). A page that does not link is
bridged by the pipeline, and the last page must come back short (the end of the collection). At the end,
``reconcile`` weighs that chain and the counts; it never calls a shortfall it cannot explain complete.

Shards (``--shard K/N``): N processes each walk one contiguous slice of the plan's pages, pages
[K*pages//N, (K+1)*pages//N). The first order of a slice that does not start at page 0 is the last order of
the slice before (the overlap): that shard writes it, and here it is only the *anchor* the slice's first
page links to. Only the last slice follows the collection past the plan. Each shard proves its own chain
(``reconcile_shard``) and reports its edges (``ShardEdges``): the anchor's id (``head``) and the id of the
last order it wrote (``tail``). ``join_shards`` then proves the whole: consecutive shards join when one's
tail is the next one's head, so the chains make one chain from the first order to the end, whatever moved
between the shards' runs; the counts are checked as ``reconcile`` checks them.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any

from exporter.errors import UsageError


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

    def shard_slice(self, shard: Shard) -> ShardSlice:
        """The pages of this plan that ``shard`` walks."""
        return ShardSlice(
            plan=self,
            first_page=shard.index * self.pages // shard.count,
            stop_page=(shard.index + 1) * self.pages // shard.count,
        )


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (``--shard K/N``): one of ``count`` disjoint slices of the plan."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise UsageError(
                f"--shard {self.index}/{self.count}: K/N needs N >= 1 and K from 0 to N-1 (e.g. 0/4 to 3/4)"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """The shard that ``text`` ("K/N") names."""
        index, _, count = text.partition("/")
        try:
            return cls(int(index), int(count))
        except ValueError:
            raise UsageError(
                f"--shard {text!r}: expected K/N, two whole numbers such as 0/4 (shard K of N, K from 0 "
                "to N-1)"
            ) from None

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


WHOLE = Shard(0, 1)  # the one slice that is the whole plan


@dataclass(frozen=True)
class ShardSlice:
    """The contiguous pages [``first_page``, ``stop_page``) of ``plan`` that one shard walks (page ``i`` is
    at offset ``i * step``); empty when there are more shards than pages."""

    plan: Plan
    first_page: int
    stop_page: int

    @property
    def pages(self) -> int:
        return self.stop_page - self.first_page

    @property
    def empty(self) -> bool:
        return self.pages == 0

    @property
    def first(self) -> bool:
        """It holds page 0, which no order comes before."""
        return self.first_page == 0 and not self.empty

    @property
    def last(self) -> bool:
        """It holds the plan's last page: it follows the collection past the plan, to its end."""
        return self.stop_page == self.plan.pages

    @property
    def anchored(self) -> bool:
        """Its first page's first order is the previous slice's last: not written here, only linked to."""
        return not self.empty and self.first_page > 0 and self.plan.overlaps

    def offsets(self) -> range:
        """The offsets of its pages."""
        step = self.plan.step
        return range(self.first_page * step, self.stop_page * step, step)

    def positions(self) -> range:
        """The positions of the orders it writes if the plan's total holds (the last slice: to the end)."""
        if self.empty:
            return range(0)
        start = self.first_page * self.plan.step + (1 if self.anchored else 0)
        if self.last:
            return range(start, self.plan.total)
        return range(start, (self.stop_page - 1) * self.plan.step + self.plan.page_size)


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
    """Whether the export is complete, and why; for a shard's run, also its edges (see ``join_shards``)."""

    complete: bool
    reason: str
    edges: ShardEdges | None = None


def reconcile(
    *,
    total_first: int,
    total_last: int,
    written: int,
    chain_proven: bool,
    drift_seen: bool,
    total_ignores_filters: bool,
    duplicates: int = 0,
) -> Verdict:
    """Decide whether ``written`` unique orders make a complete export.

    ``chain_proven``: every page linked to the one before (or was bridged) and the last one reached the end
    of the collection. ``drift_seen``: the collection visibly moved (a page that did not link, or totals
    that differ). A chain that ends early while nothing moved and the count falls short is not trusted: a
    server that stops answering past some offset looks the same. ``duplicates``: orders dropped because
    their id was already written; see ``listed_twice``."""
    moved = total_first != total_last
    if written == total_first == total_last:
        return Verdict(True, f"all {written} orders the API counts were written")
    if listed_twice(total_first, written, duplicates, chain_proven, drift_seen or moved):
        return Verdict(True, _listed_twice_reason(total_first, written, duplicates))
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
            f"{low - written} orders missing: {written} written{_dropped(duplicates)} but the API counts "
            f"{total_first} (start) and {total_last} (end)",
        )
    return Verdict(
        False,
        f"{written} orders written but the API counts {total_first} (start) and {total_last} (end): "
        "the pages do not add up",
    )


def listed_twice(total: int, written: int, duplicates: int, chain_proven: bool, moved: bool) -> bool:
    """Whether the ``duplicates`` dropped were the API listing an order twice, and the count is exact.

    While nothing moved (one total, every page linked in its place) each position was received once, so a
    repeated id is the API's own (a list joined to a table of two rows for one order, say), not a shift:
    written plus dropped must then be the total. Without a proven chain a shift that doubles one order and
    skips another looks the same, so the shortfall stands."""
    return duplicates > 0 and chain_proven and not moved and written + duplicates == total


def _listed_twice_reason(total: int, written: int, duplicates: int) -> str:
    return (
        f"all {total} orders the API counts were received: {written} written and {duplicates} dropped, the "
        "API having listed their ids twice while nothing moved"
    )


def _dropped(duplicates: int) -> str:
    """What a shortfall's message adds about the duplicates dropped: they were received, but do not make
    up for it (see ``listed_twice``)."""
    return f" ({duplicates} more dropped as duplicates)" if duplicates else ""


def reconcile_shard(
    part: ShardSlice,
    *,
    total_last: int,
    written: int,
    chain_proven: bool,
    drift_seen: bool,
    duplicates: int = 0,
) -> Verdict:
    """Decide whether ``written`` unique orders make ``part`` complete: ``reconcile`` for one slice.

    The slice should hold the orders of its positions (without its anchor; the last slice to the end of the
    collection). An exact count while the total held, or a proven chain while the collection moved, is
    complete; the joins with the neighbouring slices are ``join_shards``'s to prove."""
    plan = part.plan
    if part.empty:
        return Verdict(True, f"no page of the plan's {plan.pages} falls to this shard: nothing to write")
    positions = part.positions()
    expected = len(positions)
    where = f"positions {positions.start} to {positions.stop - 1}" if expected else "no position"
    moved = total_last != plan.total
    if written == expected and not moved:
        return Verdict(True, f"all {expected} orders of the slice ({where}) were written")
    if listed_twice(expected, written, duplicates, chain_proven, drift_seen or moved):
        return Verdict(True, f"{_listed_twice_reason(expected, written, duplicates)} ({where})")
    if chain_proven and (drift_seen or moved):
        return Verdict(
            True,
            f"{written} orders written while the collection moved (total {plan.total} at the start, "
            f"{total_last} at the end); every page of the slice was linked to the next",
        )
    if written < expected:
        return Verdict(
            False,
            f"{expected - written} orders missing: {written} written{_dropped(duplicates)} but the slice "
            f"holds {expected} ({where}; total {plan.total} at the start, {total_last} at the end)",
        )
    return Verdict(
        False,
        f"{written} orders written but the slice holds {expected} ({where}; total {plan.total} at the start, "
        f"{total_last} at the end): the pages do not add up",
    )


@dataclass(frozen=True)
class ShardEdges:
    """What one shard's run tells ``join_shards``: its slice, the ids at its two ends, its counts and its
    own verdict. JSON-ready through ``to_json``/``from_json``."""

    shard: Shard
    plan_pages: int
    first_page: int  # its slice: pages [first_page, stop_page) of the plan it made
    stop_page: int
    first_offset: int | None  # offsets of the slice's first and last pages; None for an empty slice
    last_offset: int | None
    head: Any  # id of the anchor, the slice's first order as fetched; None for the first slice or no anchor
    tail: Any  # id of the last order written; None for the last shard or an empty slice
    total_first: int
    total_last: int
    page_size: int
    written: int
    proven: bool  # every page of the slice linked to the one before
    drift_seen: bool
    complete: bool  # its own verdict (``reconcile_shard``)
    reason: str
    duplicates: int = 0  # orders dropped because their id was already written (edges of old runs: none)

    @property
    def empty(self) -> bool:
        return self.stop_page == self.first_page

    def to_json(self) -> dict[str, Any]:
        """A JSON object of the edges (the shard as "K/N")."""
        return {**asdict(self), "shard": str(self.shard)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ShardEdges:
        """The edges ``to_json`` gave."""
        return cls(**{**raw, "shard": Shard.parse(raw["shard"])})


def join_shards(edges: Sequence[ShardEdges]) -> Verdict:
    """Whether the shards' outputs, concatenated in shard order, make one complete export.

    Every shard's own verdict must be complete; the first shard with pages must start at page 0; each shard
    with pages must begin where the one before ended (its head is the previous one's tail: its first page
    linked to the last order that shard wrote). Then the counts: all orders the API counts (one total
    throughout), or, when the collection moved, every shard's chain proven. A join that ids cannot show
    (orders without ids, pages of one order) is accepted only with the exact count."""
    if not edges:
        return Verdict(False, "no shard to join: give the edges of every shard, 0/N to N-1/N")
    count = len(edges)
    for position, edge in enumerate(edges):
        if edge.shard != Shard(position, count):
            return Verdict(
                False,
                f"expected the edges of shards 0/{count} to {count - 1}/{count} in order, got shard "
                f"{edge.shard} at place {position}: give every shard of one sharded export, in shard order",
            )
    for edge in edges:
        if not edge.complete:
            return Verdict(False, f"shard {edge.shard} is not complete: {edge.reason}")
    if edges[-1].empty:
        return Verdict(
            False,
            f"the last shard, {edges[-1].shard}, has no page: nothing reached the end of the collection; "
            "give the edges of one sharded export",
        )
    filled = [edge for edge in edges if not edge.empty]
    if filled[0].first_page != 0:
        return Verdict(
            False,
            f"no shard wrote the first page: shard {filled[0].shard}, the first with pages, starts at page "
            f"{filled[0].first_page} (the shards planned with different totals); run the shards again",
        )
    unproven: tuple[ShardEdges, ShardEdges] | None = None
    for before, after in pairwise(filled):
        if before.tail is not None and before.tail == after.head:
            continue
        if before.tail is None or after.head is None:
            unproven = unproven or (before, after)
            continue
        return Verdict(
            False,
            f"shards {before.shard.index} and {after.shard.index} do not join: shard {before.shard.index} "
            f"ended with order {before.tail!r} (page at offset {before.last_offset}, total "
            f"{before.total_first}) but shard {after.shard.index} started after order {after.head!r} (offset "
            f"{after.first_offset}, total {after.total_first}): the collection moved between their runs; "
            "run the shards again",
        )
    total = edges[0].total_first
    totals = sorted({edge.total_first for edge in edges} | {edge.total_last for edge in edges})
    written = sum(edge.written for edge in edges)
    duplicates = sum(edge.duplicates for edge in edges)
    steady = totals == [total]
    if steady and written == total:
        how = "" if unproven is None else " (no ids at the joins: they were checked by count only)"
        return Verdict(True, f"all {total} orders the API counts were written by the {count} shards{how}")
    proven = unproven is None and all(edge.proven for edge in filled)
    moved = not steady or any(edge.drift_seen for edge in edges)
    if listed_twice(total, written, duplicates, proven, moved):
        return Verdict(True, f"{_listed_twice_reason(total, written, duplicates)}, by the {count} shards")
    if unproven is not None:
        before, after = unproven
        return Verdict(
            False,
            f"shards {before.shard.index} and {after.shard.index} cannot be shown to join (no id at the "
            f"join: shard {before.shard.index} ended with {before.tail!r}, shard {after.shard.index} started "
            f"after {after.head!r}) and the count does not prove it: {written} orders written, the API "
            f"counts {', '.join(map(str, totals))}",
        )
    if moved and all(edge.proven for edge in filled):
        return Verdict(
            True,
            f"{written} orders written by the {count} shards while the collection moved (totals seen: "
            f"{', '.join(map(str, totals))}); every page of every shard was linked to the next, and each "
            "shard began at the order the one before ended with",
        )
    if not steady:
        return Verdict(
            False,
            f"the shards saw different totals ({', '.join(map(str, totals))}) and not every shard's chain "
            f"is proven: {written} orders written cannot be checked; run the shards again",
        )
    if written < total:
        return Verdict(
            False,
            f"{total - written} orders missing: the shards wrote {written}{_dropped(duplicates)} but the API "
            f"counts {total}",
        )
    return Verdict(
        False, f"the shards wrote {written} orders but the API counts {total}: their pages do not add up"
    )
