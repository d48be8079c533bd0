"""The orders as served: their pre-encoded JSON, which of them are open, and when drift made or closed them.

Strategy: each order is encoded once, when made, and a page is ``b"[" + b",".join(items) + b"]"``. Which
orders a selection (filters + sort) picks, and in which order, is a *view* computed once and kept (a few,
least recently used out first), so the next pages of the same query cost a slice and a join. Orders are
never deleted, only marked closed: a view of every order ever made stays valid, is brought up to date by
looking at the orders made since only, and refilters its open orders only after something was closed.
"""

from __future__ import annotations

import math
import random
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import orjson

from exporter.sandbox.data import BASE_FIELDS, LATE_FIELDS, LINES_FIELD, JSONObject, OrderFactory, id_of
from exporter.sandbox.query import Selection, SortKeyValue, matches, sort_key, sorted_positions

_VIEWS_KEPT = 8  # a view of a million orders takes 16 MB (32 with closes), 200 MB more if growing


class OrderStore:
    """Every order made so far, by index, with its open/closed state and drift history."""

    def __init__(
        self,
        seed: int,
        orders: int,
        late_field_from: int | None,
        *,
        growing: bool = False,
        order_lines: int = 0,
    ) -> None:
        self.growing = growing  # whether create() may be called: views keep their sort keys only then
        self._factory = OrderFactory(seed, late_field_from, order_lines)
        self.items: list[bytes] = []  # index -> the order as a list item, encoded
        self.open_flags = bytearray()  # index -> 1 while the order is open
        self.open_count = 0
        self.closes = 0
        self.known_fields = frozenset(
            BASE_FIELDS
            + (LATE_FIELDS if late_field_from is not None else ())
            + ((LINES_FIELD,) if order_lines else ())
        )
        self.created: list[int] = []  # indices made by drift, in order
        self.closed: list[int] = []  # indices closed by drift, in order
        self._made_at: dict[int, float] = {}  # drift's orders only: the initial ones always existed
        self._views: OrderedDict[Selection, View] = OrderedDict()
        for _ in range(orders):
            self._make()

    def __len__(self) -> int:
        return len(self.items)

    def _make(self) -> int:
        index = len(self.items)
        # orjson's bytes keep a 4 KiB allocation each: copying them down to size halves the memory.
        self.items.append(bytes(memoryview(orjson.dumps(self._factory.make(index)))))
        self.open_flags.append(1)
        self.open_count += 1
        return index

    def create(self, now: float) -> int:
        """Make one more order (the newest: it sorts last by createdAt) and return its index."""
        if not self.growing:
            raise RuntimeError("this store was made with growing=False")
        index = self._make()
        self._made_at[index] = now
        self.created.append(index)
        return index

    def close(self, index: int) -> None:
        """Close the open order at ``index``: it leaves every list and its detail is gone."""
        if not self.open_flags[index]:
            raise ValueError(f"order {id_of(index)} is already closed")
        self.open_flags[index] = 0
        self.open_count -= 1
        self.closes += 1
        self.closed.append(index)

    def pick_open(self, rng: random.Random) -> int | None:
        """A uniformly random open order's index, or None when none is open."""
        if not self.open_count:
            return None
        while True:  # terminates: at least one of the indices drawn from is open
            index = rng.randrange(len(self.items))
            if self.open_flags[index]:
                return index

    def is_open(self, index: int) -> bool:
        """Whether the order at ``index`` exists and is open."""
        return 0 <= index < len(self.items) and bool(self.open_flags[index])

    def order(self, index: int) -> JSONObject:
        """The order at ``index``, decoded from what is served."""
        decoded: JSONObject = orjson.loads(self.items[index])
        return decoded

    def page(self, selection: Selection, offset: int, limit: int) -> tuple[list[bytes], int]:
        """The encoded items of one page and the number of open orders the selection matches."""
        view = self.view(selection)
        items = self.items
        return [items[i] for i in view.open[offset : offset + limit]], len(view.open)

    def view(self, selection: Selection) -> View:
        """The up-to-date view of ``selection``."""
        view = self._views.get(selection)
        if view is None:
            view = self._views[selection] = View(selection)
            if len(self._views) > _VIEWS_KEPT:
                self._views.popitem(last=False)
        else:
            self._views.move_to_end(selection)
        view.refresh(self)
        return view

    def existed_since(self, view: View, since: float) -> list[int]:
        """The open orders of an up-to-date ``view`` that existed at time ``since``, in served order."""
        made_at = self._made_at
        return [i for i in view.open if made_at.get(i, -math.inf) <= since]


class View:
    """One selection over the store: the matching orders ever made, in served order, and the open ones."""

    def __init__(self, selection: Selection) -> None:
        self.selection = selection
        self.ordered: Sequence[int] = range(0)  # matching indices in served order, closed ones included
        self.open: Sequence[int] = range(0)  # the same, open ones only
        self._seen = 0  # store indices looked at so far
        self._closes_seen = 0
        self._matched = array("q")  # matching indices, ascending
        self._columns: list[list[SortKeyValue]] = [[] for _ in selection.sort]  # aligned with _matched

    def refresh(self, store: OrderStore) -> None:
        """Take in the orders made and closed since the last refresh."""
        grew = self._seen < len(store)
        if grew:
            self._take_new(store)
        if grew or self._closes_seen != store.closes:
            self._closes_seen = store.closes
            flags = store.open_flags
            self.open = (
                self.ordered if not store.closes else array("q", [i for i in self.ordered if flags[i]])
            )

    def _take_new(self, store: OrderStore) -> None:
        selection, start, end = self.selection, self._seen, len(store)
        self._seen = end
        if not selection.filters and not selection.sort:
            self.ordered = range(end)  # the served order is the insertion order: nothing to decode
            return
        matched = self._matched
        for index in range(start, end):
            order: dict[str, Any] = orjson.loads(store.items[index])
            if matches(order, selection.filters):
                matched.append(index)
                for column, field in zip(self._columns, selection.sort, strict=True):
                    column.append(sort_key(order, field.path))
        if not selection.sort:
            self.ordered = matched
            return
        positions = sorted_positions(self._columns, selection.sort, len(matched))
        self.ordered = array("q", [matched[p] for p in positions])
        if not store.growing:
            self._columns = []  # no order can join any more: the keys have served (a million take 200 MB)
