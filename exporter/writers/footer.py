"""Parquet files of one schema joined into one file without decoding their data.

Strategy: a Parquet file is ``PAR1``, its column chunks, then the footer: a Thrift compact-protocol
``FileMetaData``, its length (4 bytes, little-endian) and ``PAR1``. The footer finds every column chunk by
its absolute byte offset, so the chunks of several files can be copied one after another as bytes, under
one footer that lists all their row groups with the offsets moved by where each file landed. This module
reads a footer generically (field ids and wire types; no schema needed), moves the offsets it knows, and
writes it back. It declines (``join`` returns False before writing anything; the caller then decodes and
rewrites) any footer that does not write back to its very bytes, or that holds what it does not expect:
encryption, a column chunk kept in another file, a field it does not know in a row group, column chunk or
column metadata (it could be an offset), or metadata other than the first file's.

Copying costs about what the copy of a single segment does (~25 bytes an order); the rewrite it replaces
decodes and encodes every value again (~1 s per million orders).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

MAGIC = b"PAR1"

# Thrift compact protocol wire types.
_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(13)
_BOOLS = (_TRUE, _FALSE)

# Field ids of parquet.thrift that this module reads or moves.
_FILE_NUM_ROWS, _FILE_ROW_GROUPS = 3, 4
_FILE_DECLINED = frozenset({8, 9})  # encryption_algorithm, footer_signing_key_metadata
_GROUP_KNOWN = frozenset(range(1, 8))
_GROUP_COLUMNS, _GROUP_FILE_OFFSET, _GROUP_ORDINAL = 1, 5, 7
_CHUNK_KNOWN = frozenset(range(2, 8))  # 1 file_path, 8-9 encryption: declined
_CHUNK_META = 3
_CHUNK_OFFSETS = frozenset({2, 4, 6})  # file_offset, offset_index_offset, column_index_offset
_META_KNOWN = frozenset(range(1, 18))
_META_OFFSETS = frozenset({9, 10, 11, 14})  # data, index, dictionary page; bloom filter

Field = tuple[int, int, Any]  # (field id, wire type, value); a bool field's value is None


class _Seq(NamedTuple):
    type: int
    items: list[Any]


class _Map(NamedTuple):
    key: int
    value: int
    pairs: list[tuple[Any, Any]]


class _Decline(Exception):
    """A footer this module does not merge safely."""


# -- reading --------------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise _Decline("the footer is cut short")
        out = self.data[self.pos : self.pos + size]
        self.pos += size
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def varint(self) -> int:
        out = shift = 0
        while True:
            byte = self.byte()
            out |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return out
            shift += 7
            if shift > 70:
                raise _Decline("a varint runs on")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def struct(self, depth: int) -> list[Field]:
        if depth > 64:
            raise _Decline("the footer nests too deep")
        fields: list[Field] = []
        last = 0
        while True:
            head = self.byte()
            if head == _STOP:
                return fields
            kind, delta = head & 0x0F, head >> 4
            field_id = last + delta if delta else self.zigzag()
            fields.append((field_id, kind, None if kind in _BOOLS else self.value(kind, depth)))
            last = field_id

    def value(self, kind: int, depth: int) -> Any:
        if kind == _BYTE:
            return self.byte()
        if kind in (_I16, _I32, _I64):
            return self.zigzag()
        if kind == _DOUBLE:
            return self.take(8)
        if kind == _BINARY:
            return self.take(self.varint())
        if kind in (_LIST, _SET):
            head = self.byte()
            size, item = head >> 4, head & 0x0F
            if size == 15:
                size = self.varint()
            return _Seq(item, [self.element(item, depth) for _ in range(size)])
        if kind == _MAP:
            size = self.varint()
            if not size:
                return _Map(0, 0, [])
            types = self.byte()
            key, value = types >> 4, types & 0x0F
            return _Map(
                key, value, [(self.element(key, depth), self.element(value, depth)) for _ in range(size)]
            )
        if kind == _STRUCT:
            return self.struct(depth + 1)
        raise _Decline(f"unknown Thrift type {kind}")

    def element(self, kind: int, depth: int) -> Any:
        return self.byte() if kind in _BOOLS else self.value(kind, depth)


def decode(data: bytes) -> list[Field]:
    """The fields of a Thrift compact struct that is all of ``data``."""
    reader = _Reader(data)
    fields = reader.struct(0)
    if reader.pos != len(data):
        raise _Decline("bytes after the footer's end")
    return fields


# -- writing --------------------------------------------------------------------------------------


def _varint(n: int, out: bytearray) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _zigzag(n: int) -> int:
    return 2 * n if n >= 0 else -2 * n - 1


def _struct(fields: list[Field], out: bytearray) -> None:
    last = 0
    for field_id, kind, value in fields:
        delta = field_id - last
        if 0 < delta <= 15:
            out.append(delta << 4 | kind)
        else:
            out.append(kind)
            _varint(_zigzag(field_id), out)
        if kind not in _BOOLS:
            _value(kind, value, out)
        last = field_id
    out.append(_STOP)


def _value(kind: int, value: Any, out: bytearray) -> None:
    if kind == _BYTE:
        out.append(value)
    elif kind in (_I16, _I32, _I64):
        _varint(_zigzag(value), out)
    elif kind == _DOUBLE:
        out += value
    elif kind == _BINARY:
        _varint(len(value), out)
        out += value
    elif kind in (_LIST, _SET):
        size = len(value.items)
        if size < 15:
            out.append(size << 4 | value.type)
        else:
            out.append(0xF0 | value.type)
            _varint(size, out)
        for item in value.items:
            _element(value.type, item, out)
    elif kind == _MAP:
        if not value.pairs:
            out.append(0)
            return
        _varint(len(value.pairs), out)
        out.append(value.key << 4 | value.value)
        for key, item in value.pairs:
            _element(value.key, key, out)
            _element(value.value, item, out)
    elif kind == _STRUCT:
        _struct(value, out)
    else:
        raise _Decline(f"unknown Thrift type {kind}")


def _element(kind: int, value: Any, out: bytearray) -> None:
    if kind in _BOOLS:
        out.append(value)
    else:
        _value(kind, value, out)


def encode(fields: list[Field]) -> bytes:
    """The Thrift compact bytes of a struct's fields."""
    out = bytearray()
    _struct(fields, out)
    return bytes(out)


# -- merging --------------------------------------------------------------------------------------


def _offset(kind: int, value: Any, shift: int) -> Any:
    if kind != _I64:
        raise _Decline("an offset that is not an i64")
    return value + shift if value > 0 else value  # 0: not set


def _moved_meta(fields: list[Field], shift: int) -> list[Field]:
    out = []
    for field_id, kind, value in fields:
        if field_id not in _META_KNOWN:
            raise _Decline(f"column metadata field {field_id}")
        out.append((field_id, kind, _offset(kind, value, shift) if field_id in _META_OFFSETS else value))
    return out


def _moved_chunk(fields: list[Field], shift: int) -> list[Field]:
    out = []
    for field_id, kind, value in fields:
        if field_id not in _CHUNK_KNOWN:
            raise _Decline(f"column chunk field {field_id}")
        if field_id in _CHUNK_OFFSETS:
            value = _offset(kind, value, shift)
        elif field_id == _CHUNK_META:
            if kind != _STRUCT:
                raise _Decline("column metadata that is not a struct")
            value = _moved_meta(value, shift)
        out.append((field_id, kind, value))
    return out


def _moved_group(fields: list[Field], shift: int, ordinal: int) -> list[Field]:
    out = []
    for field_id, kind, value in fields:
        if field_id not in _GROUP_KNOWN:
            raise _Decline(f"row group field {field_id}")
        if field_id == _GROUP_COLUMNS:
            if kind != _LIST or value.type != _STRUCT:
                raise _Decline("row group columns that are not a list of structs")
            value = _Seq(_STRUCT, [_moved_chunk(chunk, shift) for chunk in value.items])
        elif field_id == _GROUP_FILE_OFFSET:
            value = _offset(kind, value, shift)
        elif field_id == _GROUP_ORDINAL:
            if kind != _I16 or ordinal >= 2**15:
                raise _Decline("a row group ordinal out of range")
            value = ordinal
        out.append((field_id, kind, value))
    return out


def merged_footer(footers: list[bytes], shifts: list[int]) -> bytes:
    """One footer listing the row groups of every footer, each file's offsets moved by its shift (where its
    bytes land in the merged file minus where they were); raises ``_Decline`` when it cannot be trusted."""
    decoded = []
    for footer in footers:
        fields = decode(footer)
        if encode(fields) != footer:
            raise _Decline("a footer does not write back to its own bytes")
        decoded.append(fields)
    first = decoded[0]

    def rest(fields: list[Field]) -> list[Field]:
        return [field for field in fields if field[0] not in (_FILE_NUM_ROWS, _FILE_ROW_GROUPS)]

    if any(field[0] in _FILE_DECLINED for field in first):
        raise _Decline("an encrypted footer")
    if any(rest(fields) != rest(first) for fields in decoded[1:]):
        raise _Decline("files of different schemas or metadata")
    rows = 0
    groups: list[Any] = []
    for fields, shift in zip(decoded, shifts, strict=True):
        by_id = {field_id: (kind, value) for field_id, kind, value in fields}
        kind, count = by_id.get(_FILE_NUM_ROWS, (None, None))
        listed = by_id.get(_FILE_ROW_GROUPS)
        if kind != _I64 or type(count) is not int or listed is None or listed[0] != _LIST:
            raise _Decline("a footer without rows or row groups")
        if listed[1].type != _STRUCT:
            raise _Decline("a footer without rows or row groups")
        rows += count
        groups.extend(_moved_group(group, shift, len(groups)) for group in listed[1].items)
    merged: list[Field] = []
    for field_id, kind, value in first:
        if field_id == _FILE_NUM_ROWS:
            value = rows
        elif field_id == _FILE_ROW_GROUPS:
            value = _Seq(_STRUCT, groups)
        merged.append((field_id, kind, value))
    return encode(merged)


def _tail(path: Path) -> tuple[bytes, int]:
    """The footer of the Parquet file at ``path`` and where its data ends."""
    with path.open("rb") as source:
        size = source.seek(0, 2)
        source.seek(0)
        if size < 12 or source.read(4) != MAGIC:
            raise _Decline(f"{path.name} is not a Parquet file")
        source.seek(size - 8)
        trailer = source.read(8)
        length = int.from_bytes(trailer[:4], "little")
        if trailer[4:] != MAGIC or length > size - 12:
            raise _Decline(f"{path.name} has no footer")
        source.seek(size - 8 - length)
        return source.read(length), size - 8 - length


def join(paths: list[Path], stream: BinaryIO, *, chunk: int) -> bool:
    """Write the Parquet files at ``paths`` (of one schema) into ``stream`` as one file; False, with nothing
    written, when their footers cannot be merged safely."""
    try:
        tails = [_tail(path) for path in paths]
        shifts = []
        landed = 0
        for index, (_, end) in enumerate(tails):
            start = 0 if index == 0 else len(MAGIC)  # the first file's PAR1 opens the merged one
            shifts.append(landed - start)
            landed += end - start
        footer = merged_footer([footer for footer, _ in tails], shifts)
    except _Decline:
        return False
    for index, (path, (_, end)) in enumerate(zip(paths, tails, strict=True)):
        start = 0 if index == 0 else len(MAGIC)
        with path.open("rb") as source:
            source.seek(start)
            left = end - start
            while left > 0:
                data = source.read(min(left, chunk))
                if not data:
                    raise OSError(f"{path.name} was cut short while it was being copied")
                stream.write(data)
                left -= len(data)
    stream.write(footer + len(footer).to_bytes(4, "little") + MAGIC)
    return True
