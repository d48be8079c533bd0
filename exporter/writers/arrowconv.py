"""Orders to Arrow and back into line: the conversion for one kind, its checks, and the widening of old data.

Strategy: ``pyarrow.array(records, type=struct)`` converts a batch of dicts fast, but an explicit type has
traps: keys it does not name are dropped, a float in an int64 column is truncated (1.5 -> 1), a bool in a
double column becomes 1.0, a string in a list column is split into characters, ``""`` or ``[]`` in a struct
column becomes an empty struct. ``Converter.fits`` rules those out before converting, with C-level passes
only (``map``/``set.issuperset``/``filter``: no Python code per record): every object's keys are known, and
int/float/struct/list columns hold only their own types. The other mismatches make ``pyarrow.array`` raise,
and a non-date string makes the cast to timestamp raise; the writer then takes its slow path (infer the
batch, widen the kind). Date-times and dates are converted as strings and cast afterwards (vectorised).

Orders given as their JSON text (``Converter.convert_lines``) are parsed by pyarrow's JSON reader with the
ingest type as its explicit schema, in C++ without the GIL and without a Python object per order. That
reader is strict where ``pyarrow.array`` is lax: a key the type does not name, a key given twice, a value
of another JSON type (1.0 or true in an int column, 5 in a string one, "" in a struct, an object in a list),
an int beyond int64, a string that is not a date-time: each is an error, and the caller takes the dict
path, which widens. Its one silent change is an integer in a double column, rounded like any JSON number;
a double column holding a value of magnitude 2**53 or more is handed to the dict path too, which keeps such
integers exact. Kinds with TEXT (mixed values kept as their text) have no JSON reader path.

Parquet cannot hold a struct without fields: an object that is always empty is stored as a struct with one
null-typed field ``_empty`` (so ``{}`` and null stay apart).
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from itertools import chain, repeat
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from exporter.errors import ExportError
from exporter.writers.cells import text_of
from exporter.writers.kinds import (
    BOOL,
    DATE,
    FLOAT,
    INT,
    ITEM,
    NULL,
    STRING,
    TEXT,
    TIMESTAMP,
    KeyPath,
    Kind,
    ListOf,
    Scalar,
    Struct,
    contains,
    leaf_paths,
)

EMPTY_FIELD = "_empty"
#: What ``pyarrow.array`` and casts raise on a value that does not fit.
CONVERSION_ERRORS = (pa.ArrowException, TypeError, ValueError, OverflowError)

_UTC = pa.timestamp("us", tz="UTC")
_STORAGE: dict[Kind, Any] = {
    NULL: pa.null(),
    BOOL: pa.bool_(),
    INT: pa.int64(),
    FLOAT: pa.float64(),
    STRING: pa.string(),
    TEXT: pa.string(),
    TIMESTAMP: _UTC,
    DATE: pa.date32(),
}
_TEMPORAL = frozenset({TIMESTAMP, DATE})
_RESHAPED = frozenset({TIMESTAMP, DATE, Struct(())})  # what ingest and storage types differ by
_NONE = type(None)
_INTS = frozenset({int, _NONE})
_NUMBERS = frozenset({int, float, _NONE})
_DICTS = frozenset({dict, _NONE})
_LISTS = frozenset({list, _NONE})
_EXACT = 2.0**53  # doubles below this in magnitude are the only ones an integer certainly kept exact

Records = list[dict[str, Any]]
Check = Callable[[list[Any]], bool]


def arrow_type(kind: Kind, *, ingest: bool = False) -> Any:
    """The Arrow type stored for ``kind`` (``ingest``: the type ``pyarrow.array`` converts to first)."""
    if isinstance(kind, Scalar):
        if ingest and kind in _TEMPORAL:
            return pa.string()
        return _STORAGE[kind]
    if isinstance(kind, ListOf):
        return pa.list_(arrow_type(kind.item, ingest=ingest))
    assert isinstance(kind, Struct)
    if not kind.fields and not ingest:
        return pa.struct([pa.field(EMPTY_FIELD, pa.null())])
    return pa.struct([pa.field(name, arrow_type(child, ingest=ingest)) for name, child in kind.fields])


def schema_of(kind: Struct) -> Any:
    """The Arrow schema of a file of orders of ``kind``."""
    return pa.schema([pa.field(name, arrow_type(child)) for name, child in kind.fields])


class Converter:
    """Converts batches of orders of one kind to Arrow record batches."""

    def __init__(self, kind: Struct) -> None:
        self.kind = kind
        self.schema = schema_of(kind)
        self._ingest = arrow_type(kind, ingest=True)
        self._cast = self._ingest != pa.struct(list(self.schema))
        self._check = _struct_check(kind)
        self._prepare = _preparer(kind) if contains(kind, frozenset({TEXT})) else None
        self._parse: Any = None  # the JSON reader's options, when this kind has that path
        if kind.fields and self._prepare is None:
            self._parse = pj.ParseOptions(
                explicit_schema=pa.schema(list(self._ingest)), unexpected_field_behavior="error"
            )
        self._doubles = list(leaf_paths(kind, frozenset({FLOAT})))

    def fits(self, records: Records) -> bool:
        """Whether ``convert`` can take ``records`` without silently changing a value."""
        try:
            return self._check(records)
        except (TypeError, AttributeError):
            return False

    def ingest(self, records: Records) -> Any:
        """The struct array of ``records`` with date-times still as strings (may raise)."""
        if self._prepare is not None:
            records = list(map(self._prepare, records))
        return pa.array(records, type=self._ingest)

    def finish(self, array: Any) -> Any:
        """The record batch of an ingested array: date-times cast to their types (may raise)."""
        if self._cast:
            array = _to_storage(array, self.kind)
        return pa.RecordBatch.from_struct_array(array)

    def convert(self, records: Records) -> Any:
        return self.finish(self.ingest(records))

    def convert_lines(self, lines: list[bytes]) -> Any | None:
        """The record batch of orders given as one-line JSON texts (``responses.decode_lines``), or None when
        the JSON reader cannot give exactly what ``convert`` would (see the module docstring): the caller
        then decodes them and takes the dict path."""
        if self._parse is None or not lines:
            return None
        block = b"\n".join(lines)
        try:
            table = pj.read_json(
                io.BytesIO(block),
                read_options=pj.ReadOptions(use_threads=False, block_size=len(block) + 1),
                parse_options=self._parse,
            )
            if table.num_rows != len(lines):
                return None
            array = pa.StructArray.from_arrays(list(map(whole, table.columns)), fields=list(self._ingest))
            for path in self._doubles:
                largest = pc.max(pc.abs(_descend(array, path))).as_py()
                if largest is not None and not largest < _EXACT:  # NaN cannot come from JSON
                    return None
            return self.finish(array)
        except CONVERSION_ERRORS:
            return None

    def bad_temporal_paths(self, array: Any) -> list[KeyPath]:
        """The date-time/date leaves of an ingested array holding a string their type cannot parse."""
        bad = []
        for path in leaf_paths(self.kind, _TEMPORAL):
            leaf = _descend(array, path)
            target = _UTC if _kind_at(self.kind, path) is TIMESTAMP else pa.date32()
            try:
                leaf.cast(target)
            except CONVERSION_ERRORS:
                bad.append(path)
        return bad

    def bad_fields(self, records: Records) -> list[str]:
        """The top-level fields that ``pyarrow.array`` refuses, one field at a time."""
        if self._prepare is not None:
            records = list(map(self._prepare, records))
        bad = []
        for name, child in self.kind.fields:
            try:
                pa.array(list(map(dict.get, records, repeat(name))), type=arrow_type(child, ingest=True))
            except CONVERSION_ERRORS:
                bad.append(name)
        return bad


def whole(column: Any) -> Any:
    """A column of a table as one array: its only chunk as it is (``combine_chunks`` copies, and fails on a
    ``list<null>`` from the JSON reader in pyarrow 26)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


# -- the checks -----------------------------------------------------------------------------------


def _struct_check(kind: Struct) -> Check:
    """A check of a list of dicts (never None) against ``kind``."""
    keys = frozenset(name for name, _ in kind.fields)
    children = [(name, check) for name, child in kind.fields if (check := _value_check(child)) is not None]

    def check_dicts(dicts: list[Any]) -> bool:
        return all(map(keys.issuperset, dicts)) and all(
            child_check(list(map(dict.get, dicts, repeat(name)))) for name, child_check in children
        )

    return check_dicts


def _value_check(kind: Kind) -> Check | None:
    """A check of a list of values against ``kind``, or None when ``pyarrow.array`` is strict enough."""
    if kind is INT:
        return lambda values: _INTS.issuperset(map(type, values))
    if kind is FLOAT:
        return lambda values: _NUMBERS.issuperset(map(type, values))
    if isinstance(kind, Struct):
        inner = _struct_check(kind)
        return lambda values: _DICTS.issuperset(map(type, values)) and inner(list(filter(None, values)))
    if isinstance(kind, ListOf):
        item = _value_check(kind.item)
        if item is None:
            return lambda values: _LISTS.issuperset(map(type, values))
        return lambda values: (
            _LISTS.issuperset(map(type, values)) and item(list(chain.from_iterable(filter(None, values))))
        )
    return None


def _preparer(kind: Kind) -> Callable[[Any], Any] | None:
    """Turns the TEXT fields of a value into their text, copying only what it changes."""
    if kind is TEXT:
        return lambda value: value if value is None else text_of(value)
    if isinstance(kind, Struct):
        inner = [(name, prep) for name, child in kind.fields if (prep := _preparer(child)) is not None]
        if not inner:
            return None

        def prepare_struct(value: Any) -> Any:
            if type(value) is not dict:
                return value
            out = dict(value)
            for name, prep in inner:
                item = out.get(name)
                if item is not None:
                    out[name] = prep(item)
            return out

        return prepare_struct
    if isinstance(kind, ListOf):
        prep_item = _preparer(kind.item)
        if prep_item is None:
            return None
        return lambda value: [prep_item(item) for item in value] if type(value) is list else value
    return None


def exact_as_double(column: Any, path: KeyPath) -> bool:
    """Whether the ints at ``path`` inside ``column`` all survive a cast to double (|n| <= 2**53)."""
    leaf = _descend(column, path)
    if isinstance(leaf, pa.ChunkedArray):
        leaf = leaf.combine_chunks()
    extremes = pc.min_max(leaf).as_py()
    return all(value is None or abs(value) <= 2**53 for value in extremes.values())


def _to_storage(array: Any, kind: Kind) -> Any:
    """An ingested array with its date-times cast and its empty structs given their placeholder.

    Only the leaves that change are cast, the rest is reassembled around them: ``Array.cast`` of a struct
    or list holding a ``list<null>`` gives an invalid array in pyarrow 26 (the null values lose their
    length), so the struct-wide cast cannot be used.
    """
    if kind in _TEMPORAL:
        return array.cast(arrow_type(kind))
    if isinstance(kind, Struct):
        if not kind.fields:
            return pa.StructArray.from_arrays(
                [pa.nulls(len(array))],
                names=[EMPTY_FIELD],
                mask=array.is_null() if array.null_count else None,
            )
        if not contains(kind, _RESHAPED):
            return array
        # flatten(), not field(): under a null object pyarrow.array leaves "" that would not parse
        children = [
            _to_storage(values, child)
            for values, (_, child) in zip(array.flatten(), kind.fields, strict=True)
        ]
        fields = [pa.field(name, child.type) for (name, _), child in zip(kind.fields, children, strict=True)]
        return pa.StructArray.from_arrays(
            children, fields=fields, mask=array.is_null() if array.null_count else None
        )
    if isinstance(kind, ListOf) and contains(kind, _RESHAPED):
        values = _to_storage(array.values, kind.item)
        return pa.ListArray.from_arrays(
            array.offsets, values, mask=array.is_null() if array.null_count else None
        )
    return array


def _descend(array: Any, path: KeyPath) -> Any:
    for step in path:
        index = None if step is ITEM else array.type.get_field_index(step)
        array = array.flatten() if index is None else array.flatten()[index]  # with the parents' nulls
    return array


def _kind_at(kind: Kind, path: KeyPath) -> Kind:
    for step in path:
        if isinstance(kind, ListOf):
            kind = kind.item
        else:
            assert isinstance(kind, Struct)
            assert step is not None
            kind = kind.by_name[step]
    return kind


# -- widening data already written ----------------------------------------------------------------


def conform_batch(batch: Any, src: Struct, dst: Struct, schema: Any) -> Any:
    """A record batch of kind ``src`` (as stored) turned into one of kind ``dst`` (``src`` <= ``dst``)."""
    have = src.by_name
    columns = []
    for name, kind in dst.fields:
        if name in have:
            columns.append(conform(batch.column(name), have[name], kind))
        else:
            columns.append(pa.nulls(batch.num_rows, type=arrow_type(kind)))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def conform(array: Any, src: Kind, dst: Kind) -> Any:
    """An array of kind ``src`` (as stored) turned into one of kind ``dst``, keeping every value."""
    if src == dst:
        return array
    if array.offset:
        array = pa.concat_arrays([array])  # rebuilding lists and structs needs unsliced arrays
    if src is NULL:
        return pa.nulls(len(array), type=arrow_type(dst))
    if dst is TEXT:
        if src in (STRING, TEXT):
            return array
        if src in (INT, BOOL):
            return array.cast(pa.string())
        texts = [None if v is None else text_of(_plain(v, src)) for v in array.to_pylist()]
        return pa.array(texts, pa.string())
    if dst is STRING and src is DATE:
        return array.cast(pa.string())
    if dst is STRING and src is TIMESTAMP:
        return pa.array([None if v is None else _iso(v) for v in array.to_pylist()], pa.string())
    if dst is FLOAT and src is INT:  # exact: the writer made such columns TEXT when it would not be
        return array.cast(pa.float64())
    if isinstance(src, Struct) and isinstance(dst, Struct):
        have = src.by_name
        old = dict(zip((field.name for field in array.type), array.flatten(), strict=True))
        children = []
        for name, kind in dst.fields:
            if name in have:
                children.append(conform(old[name], have[name], kind))
            else:
                children.append(pa.nulls(len(array), type=arrow_type(kind)))
        target = arrow_type(dst)
        if not dst.fields:
            children = [pa.nulls(len(array))]
        return pa.StructArray.from_arrays(children, fields=list(target), mask=array.is_null())
    if isinstance(src, ListOf) and isinstance(dst, ListOf):
        values = conform(array.values, src.item, dst.item)
        return pa.ListArray.from_arrays(array.offsets, values, mask=array.is_null())
    raise ExportError(f"internal error: cannot widen a column from {src!r} to {dst!r}")


def _plain(value: Any, kind: Kind) -> Any:
    """A value read back from Arrow as the JSON value it came from."""
    if value is None:
        return None
    if kind is TIMESTAMP:
        return _iso(value)
    if kind is DATE:
        return value.isoformat()
    if isinstance(kind, Struct):
        if not kind.fields:
            return {}
        return {name: _plain(value.get(name), child) for name, child in kind.fields}
    if isinstance(kind, ListOf):
        return [_plain(item, kind.item) for item in value]
    return value


def _iso(value: dt.datetime) -> str:
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
