"""Hive partitioning of a dataset (``--partition-by``): which folder an order goes to; pure, no I/O.

A spec is an attribute, optionally with a time transform: ``type`` puts an order under ``type=<value>/``;
``createdAt:month`` under ``createdAt_month=2026-01/`` (``year``: ``2026``, ``day``: ``2026-01-31``,
``hour``: ``2026-01-31T23``). Several specs nest in the order given. A dotted name reads a nested
attribute (``customer.type`` -> folder key ``customer_type``).

A plain top-level attribute is taken out of the order written to the file: its value is in the path,
where Hive readers (pyarrow.dataset, DuckDB, Spark, Trino) add it back as a column, and a column both in
the files and in the path would clash. A transform keeps its source attribute in the file (the key is a
new name). Date-times are bucketed by their instant in UTC, as the Parquet files store them. A missing or
null value, or one a transform cannot read, goes to ``__HIVE_DEFAULT_PARTITION__`` (Hive's own name for
it). Values are URI-escaped outside ``A-Za-z0-9._~-`` (pyarrow's Hive partitioning decodes that; values
without such characters read back the same in every reader).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from exporter.errors import UsageError

DEFAULT_PARTITION = "__HIVE_DEFAULT_PARTITION__"
TRANSFORMS = ("year", "month", "day", "hour")
_WIDTH = {"year": 4, "month": 7, "day": 10, "hour": 13}
_SAFE = "-_.~"  # besides letters and digits; everything else is %XX (spaces, "/" and "=" included)
_is_utc_prefix = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}").fullmatch


@dataclass(frozen=True)
class PartitionKey:
    """One level of the folders: ``source`` (a dotted attribute path), optionally ``transform``ed."""

    source: tuple[str, ...]
    transform: str | None = None

    @property
    def name(self) -> str:
        base = "_".join(self.source)
        return f"{base}_{self.transform}" if self.transform else base

    @property
    def spec(self) -> str:
        text = ".".join(self.source)
        return f"{text}:{self.transform}" if self.transform else text

    @property
    def strips(self) -> bool:
        """Whether the attribute leaves the file (a plain top-level attribute; see the module docstring)."""
        return self.transform is None and len(self.source) == 1

    def value(self, order: dict[str, Any]) -> str:
        """The folder value of ``order`` (not yet escaped)."""
        value: Any = order
        for step in self.source:
            if not isinstance(value, dict):
                return DEFAULT_PARTITION
            value = value.get(step)
        if value is None:
            return DEFAULT_PARTITION
        if self.transform is not None:
            return _bucket(value, self.transform)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return value or DEFAULT_PARTITION
        if isinstance(value, int | float):
            return repr(value)
        return DEFAULT_PARTITION  # an object or a list names no folder


def parse_specs(specs: Sequence[str]) -> tuple[PartitionKey, ...]:
    """The keys of ``--partition-by`` values; ``UsageError`` naming the bad one."""
    keys: list[PartitionKey] = []
    for spec in specs:
        attribute, _, transform = spec.partition(":")
        source = tuple(attribute.split("."))
        if not attribute or not all(source):
            raise UsageError(f"--partition-by {spec!r}: name an attribute, e.g. type or createdAt:month")
        if transform and transform not in TRANSFORMS:
            raise UsageError(
                f"--partition-by {spec!r}: unknown transform {transform!r}; "
                f"use one of {', '.join(TRANSFORMS)}"
            )
        key = PartitionKey(source, transform or None)
        if key.name in {k.name for k in keys}:
            raise UsageError(f"--partition-by {spec!r} is given twice")
        keys.append(key)
    return tuple(keys)


class Partitioner:
    """Routes orders to their folders and strips the attributes the path carries."""

    def __init__(self, keys: Sequence[PartitionKey]) -> None:
        self.keys = tuple(keys)
        self._strip = frozenset(key.source[0] for key in self.keys if key.strips)

    def split(self, orders: list[dict[str, Any]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
        """``orders`` by folder, in order within each, stripped as written (no per-order work without
        keys)."""
        if not self.keys:
            return {(): orders}
        folders: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for order in orders:
            folders.setdefault(self.folder(order), []).append(self.stripped(order))
        return folders

    def folder(self, order: dict[str, Any]) -> tuple[str, ...]:
        """The folder values of ``order``, one per key (not escaped)."""
        return tuple(key.value(order) for key in self.keys)

    def stripped(self, order: dict[str, Any]) -> dict[str, Any]:
        """``order`` as written into the file (without the attributes its path carries)."""
        if not self._strip:
            return order
        return {name: value for name, value in order.items() if name not in self._strip}

    def path(self, folder: tuple[str, ...]) -> str:
        """The relative folder of ``folder``'s values: ``k1=v1/k2=v2/`` (empty without keys)."""
        return "".join(
            f"{key.name}={quote(value, safe=_SAFE)}/" for key, value in zip(self.keys, folder, strict=True)
        )

    def described(self, folder: tuple[str, ...]) -> dict[str, str]:
        return {key.name: value for key, value in zip(self.keys, folder, strict=True)}


def _bucket(value: Any, transform: str) -> str:
    if not isinstance(value, str):
        return DEFAULT_PARTITION
    width = _WIDTH[transform]
    if len(value) == 10 and transform != "hour":  # a date: no zone to convert
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            return DEFAULT_PARTITION
        return value[:width]
    if value.endswith(("Z", "+00:00")) and _is_utc_prefix(value[:13]):
        return value[:width].replace(" ", "T")  # already UTC: the common case, without parsing
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return DEFAULT_PARTITION
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.isoformat()[:width]
