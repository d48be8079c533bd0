"""Column kinds for Parquet: what type a JSON field needs, inferred from values and widened; pure, no I/O.

The kinds form a small lattice, so that ``unify`` can always find one kind that holds both of two::

    NULL  <  everything                  (only nulls seen so far)
    INT   <  FLOAT                       (a float among ints: double)
    TIMESTAMP, DATE  <  STRING           (a string that is not a date-time among date-times)
    STRUCT{a} + STRUCT{b} = STRUCT{a, b}   (fields in first-seen order)
    LIST<x> + LIST<y> = LIST<x + y>      (items of kinds that do not unify: the whole list becomes TEXT)
    anything else that meets  ->  TEXT   (the value's text: strings verbatim, anything else its JSON)

TIMESTAMP is an ISO 8601 date-time *with* a zone (``Z`` or ``±hh:mm``); a date-time without one stays a
string (its instant is unknown). DATE is ``YYYY-MM-DD``. An int outside int64 is TEXT.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

#: A step of a path that goes into the items of a list (the other steps are field names).
ITEM = None
KeyPath = tuple[str | None, ...]

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_is_timestamp = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}"
    r"(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})"
).fullmatch
_is_date = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}").fullmatch


class Kind:
    """A column kind (see the module docstring)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Scalar(Kind):
    name: str

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Struct(Kind):
    """An object: its fields' kinds, in first-seen order."""

    fields: tuple[tuple[str, Kind], ...] = ()

    @cached_property
    def by_name(self) -> dict[str, Kind]:
        return dict(self.fields)

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{name}: {kind!r}" for name, kind in self.fields) + "}"


@dataclass(frozen=True, slots=True)
class ListOf(Kind):
    """A list whose items are all of one kind."""

    item: Kind

    def __repr__(self) -> str:
        return f"list<{self.item!r}>"


NULL = Scalar("null")
BOOL = Scalar("bool")
INT = Scalar("int")
FLOAT = Scalar("float")
STRING = Scalar("string")
TIMESTAMP = Scalar("timestamp")
DATE = Scalar("date")
TEXT = Scalar("text")

_STRINGS = frozenset({STRING, TIMESTAMP, DATE})
_SCALARS = {scalar.name: scalar for scalar in (NULL, BOOL, INT, FLOAT, STRING, TIMESTAMP, DATE, TEXT)}


def kind_of(value: Any) -> Kind:
    """The narrowest kind that holds ``value``."""
    if value is None:
        return NULL
    kind = type(value)
    if kind is str:
        if _is_timestamp(value):
            return TIMESTAMP
        if _is_date(value):
            return DATE
        return STRING
    if kind is bool:
        return BOOL
    if kind is int:
        return INT if _I64_MIN <= value <= _I64_MAX else TEXT
    if kind is float:
        return FLOAT
    if kind is dict:
        return Struct(tuple((name, kind_of(item)) for name, item in value.items()))
    if kind is list:
        item_kind: Kind = NULL
        for item in value:
            item_kind = unify(item_kind, kind_of(item))
            if item_kind is TEXT:
                return TEXT
        return ListOf(item_kind)
    return TEXT


def unify(a: Kind, b: Kind) -> Kind:
    """The narrowest kind that holds every value of ``a`` and of ``b``."""
    if a is b or a == b:
        return a
    if a is NULL:
        return b
    if b is NULL:
        return a
    if a is TEXT or b is TEXT:
        return TEXT
    if isinstance(a, Struct) and isinstance(b, Struct):
        theirs = b.by_name
        fields = [(name, unify(kind, theirs[name]) if name in theirs else kind) for name, kind in a.fields]
        ours = a.by_name
        fields.extend((name, kind) for name, kind in b.fields if name not in ours)
        return Struct(tuple(fields))
    if isinstance(a, ListOf) and isinstance(b, ListOf):
        item = unify(a.item, b.item)
        return TEXT if item is TEXT else ListOf(item)
    if {a, b} == {INT, FLOAT}:
        return FLOAT
    if a in _STRINGS and b in _STRINGS:
        return STRING
    return TEXT


def infer(records: Iterable[Mapping[str, Any]]) -> Struct:
    """The kind of a batch of orders (each a JSON object)."""
    fields: dict[str, Kind] = {}
    for record in records:
        for name, value in record.items():
            known = fields.get(name)
            fields[name] = kind_of(value) if known is None else unify(known, kind_of(value))
    return Struct(tuple(fields.items()))


def contains(kind: Kind, wanted: frozenset[Kind]) -> bool:
    """Whether ``kind`` is, or holds somewhere inside, one of ``wanted``."""
    if kind in wanted:
        return True
    if isinstance(kind, Struct):
        return any(contains(child, wanted) for _, child in kind.fields)
    if isinstance(kind, ListOf):
        return contains(kind.item, wanted)
    return False


def leaf_paths(kind: Kind, wanted: frozenset[Kind], path: KeyPath = ()) -> Iterator[KeyPath]:
    """The paths of every leaf of ``kind`` that is one of ``wanted``."""
    if kind in wanted:
        yield path
    elif isinstance(kind, Struct):
        for name, child in kind.fields:
            yield from leaf_paths(child, wanted, (*path, name))
    elif isinstance(kind, ListOf):
        yield from leaf_paths(kind.item, wanted, (*path, ITEM))


def replace(kind: Kind, path: KeyPath, new: Kind) -> Kind:
    """``kind`` with the kind at ``path`` replaced by ``new``."""
    if not path:
        return new
    step, rest = path[0], path[1:]
    if isinstance(kind, ListOf) and step is ITEM:
        return ListOf(replace(kind.item, rest, new))
    if isinstance(kind, Struct) and step is not None:
        return Struct(tuple((n, replace(k, rest, new) if n == step else k) for n, k in kind.fields))
    raise ValueError(f"no {step!r} in {kind!r}")


def paths_between(old: Kind, new: Kind, src: Kind, dst: Kind, path: KeyPath = ()) -> Iterator[KeyPath]:
    """The paths where ``old`` has the kind ``src`` and ``new`` (wider) has ``dst``."""
    if old == src and new == dst:
        yield path
    elif isinstance(old, Struct) and isinstance(new, Struct):
        wider = new.by_name
        for name, kind in old.fields:
            if name in wider:
                yield from paths_between(kind, wider[name], src, dst, (*path, name))
    elif isinstance(old, ListOf) and isinstance(new, ListOf):
        yield from paths_between(old.item, new.item, src, dst, (*path, ITEM))


def path_name(path: KeyPath) -> str:
    """A path as a dotted column name (``properties.site.city``; list items as ``tags[]``)."""
    name = ""
    for step in path:
        if step is ITEM:
            name += "[]"
        else:
            name += ("." if name else "") + step
    return name


def changes(old: Struct, new: Struct) -> tuple[list[str], list[str]]:
    """What ``new`` has that ``old`` had not: (fields added, ``field: old -> new`` for kinds widened)."""
    added: list[str] = []
    widened: list[str] = []
    _diff(old, new, (), added, widened)
    return added, widened


def _diff(old: Kind, new: Kind, path: KeyPath, added: list[str], widened: list[str]) -> None:
    if old == new:
        return
    if isinstance(old, Struct) and isinstance(new, Struct):
        before = old.by_name
        for name, kind in new.fields:
            if name in before:
                _diff(before[name], kind, (*path, name), added, widened)
            else:
                added.append(path_name((*path, name)))
    elif isinstance(old, ListOf) and isinstance(new, ListOf):
        _diff(old.item, new.item, (*path, ITEM), added, widened)
    elif old is not NULL:
        widened.append(f"{path_name(path)}: {old!r} -> {new!r}")


def kind_to_json(kind: Kind) -> Any:
    """``kind`` as JSON, for a checkpoint: a scalar's name, ``{"list": item}``, or
    ``{"struct": [[name, kind], ...]}``."""
    if isinstance(kind, Scalar):
        return kind.name
    if isinstance(kind, ListOf):
        return {"list": kind_to_json(kind.item)}
    assert isinstance(kind, Struct)
    return {"struct": [[name, kind_to_json(child)] for name, child in kind.fields]}


def kind_from_json(data: Any) -> Kind:
    """The kind ``kind_to_json`` gave ``data`` for (scalars are the module's own); ``ValueError`` if none."""
    if isinstance(data, str) and data in _SCALARS:
        return _SCALARS[data]
    if isinstance(data, dict) and len(data) == 1:
        if "list" in data:
            return ListOf(kind_from_json(data["list"]))
        fields = data.get("struct")
        if isinstance(fields, list):
            pairs = []
            for pair in fields:
                if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
                    raise ValueError(f"not a struct field: {pair!r}")
                pairs.append((pair[0], kind_from_json(pair[1])))
            if len({name for name, _ in pairs}) != len(pairs):
                raise ValueError("a struct names a field twice")
            return Struct(tuple(pairs))
    raise ValueError(f"not a kind: {data!r}")
