"""What a list call asks for (page, sort, filters), parsed and checked; pure functions, no I/O.

Sorting follows the API: comma-separated field names, ``-`` for descending, dotted names for nested fields.
Ties keep insertion order in both directions. Values of different JSON types compare by type first
(numbers and booleans, then strings, then objects and lists); a missing or null value sorts after every
other value, so last when ascending and first when descending, as in SQL's default.
Filters compare as strings: a string value as is, any other value as its JSON text (``true``, ``4``,
``null``); an order without the field never matches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

RESERVED = frozenset({"offset", "limit", "sort"})
_INTEGER = re.compile(r"-?[0-9]+")

Path = tuple[str, ...]
SortKeyValue = tuple[int, Any]


class QueryError(ValueError):
    """A query the API answers with 400 code 28; the message names the parameter and the problem."""


@dataclass(frozen=True, slots=True)
class SortField:
    """One field of a sort: its path in the order and its direction."""

    path: Path
    descending: bool


@dataclass(frozen=True, slots=True)
class Selection:
    """Which orders, in which order: the part of a query that pages share (the cache key of a view)."""

    filters: tuple[tuple[Path, str], ...] = ()
    sort: tuple[SortField, ...] = ()


def parse_page(offset: str | None, limit: str | None, default_size: int, max_size: int) -> tuple[int, int]:
    """``(offset, limit)`` from the query's texts; an absent limit is the default, a large one is capped."""
    first = 0 if offset is None else _integer("offset", offset, minimum=0)
    size = default_size if limit is None else _integer("limit", limit, minimum=1)
    return first, min(size, max_size)


def _integer(name: str, text: str, minimum: int) -> int:
    if _INTEGER.fullmatch(text) is None:
        raise QueryError(f"{name} must be an integer, got {text!r}")
    value = int(text)
    if value < minimum:
        raise QueryError(f"{name} must be >= {minimum}, got {value}")
    return value


def parse_selection(
    sort: str | None, filters: Iterable[tuple[str, str]], known_fields: frozenset[str]
) -> Selection:
    """The selection a sort text and filter pairs describe; unknown or repeated names raise QueryError."""
    fields: list[SortField] = []
    for raw in (sort or "").split(","):
        name = raw.strip()
        if not name:
            continue
        descending = name.startswith("-")
        name = name.removeprefix("-")
        if name not in known_fields:
            raise QueryError(f"sort: unknown field {name!r}")
        fields.append(SortField(tuple(name.split(".")), descending))
    pairs: dict[str, str] = {}
    for name, value in filters:
        if name not in known_fields:
            raise QueryError(f"filter: unknown field {name!r}")
        if name in pairs:
            raise QueryError(f"filter: {name!r} is given more than once")
        pairs[name] = value
    conditions = tuple(sorted((tuple(name.split(".")), value) for name, value in pairs.items()))
    return Selection(conditions, tuple(fields))


def selection_of(
    filters: Mapping[str, str] | None, sort: str | None, known_fields: frozenset[str]
) -> Selection:
    """The selection for a Python caller: same syntax as the query string."""
    pairs = list((filters or {}).items())
    reserved = RESERVED.intersection(name for name, _ in pairs)
    if reserved:
        raise QueryError(f"filter: {sorted(reserved)} are not filters")
    return parse_selection(sort, pairs, known_fields)


_MISSING = object()


def lookup(order: Mapping[str, Any], path: Path) -> Any:
    """The value at ``path`` in ``order``, or a sentinel when any step is missing."""
    value: Any = order
    for step in path:
        if not isinstance(value, dict):
            return _MISSING
        value = value.get(step, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def matches(order: Mapping[str, Any], filters: tuple[tuple[Path, str], ...]) -> bool:
    """Whether ``order`` satisfies every equality filter."""
    for path, wanted in filters:
        value = lookup(order, path)
        if value is _MISSING:
            return False
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        if text != wanted:
            return False
    return True


def sort_key(order: Mapping[str, Any], path: Path) -> SortKeyValue:
    """A key that orders any JSON values totally: by type rank, then value; missing and null rank last."""
    value = lookup(order, path)
    if value is None or value is _MISSING:
        return (3, 0)
    if isinstance(value, bool | int | float):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    return (2, orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


def sorted_positions(columns: list[list[SortKeyValue]], sort: tuple[SortField, ...], size: int) -> list[int]:
    """Positions ``0..size-1`` ordered by the key columns (one per sort field); ties keep position order.

    One stable pass per field, last field first: Python's sort is stable even with ``reverse=True``.
    """
    positions = list(range(size))
    for column, field in reversed(list(zip(columns, sort, strict=True))):
        positions.sort(key=column.__getitem__, reverse=field.descending)
    return positions
