"""Where the Parquet writer's segments live: names that a later run can find, the sweep of what a killed
run left, durability, and what a commit keeps (``Committed``), checked against the files before a resume
reuses them.

A segment is ``<prefix><number>.parquet`` in ``scratch_dir``; the prefix comes from the partial output's
own name (``.out.parquet.partial.seg-``), so a later run of the same export finds the segments of an
earlier one. A stream without a file name gets a random prefix (the commit's state carries it anyway).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from exporter.writers.arrowconv import schema_of
from exporter.writers.files import file_behind
from exporter.writers.kinds import Struct, kind_from_json, kind_to_json
from exporter.writers.state import check_tag, integer, items, new_state, refuse, strings

_NUMBER = re.compile(r"[0-9]{4,9}")
_SUFFIX = ".parquet"


@dataclass
class Segment:
    """A finished segment: a complete Parquet file of one kind."""

    path: Path
    kind: Struct
    rows: int
    size: int
    synced: bool = False


@dataclass
class Committed:
    """What a commit of the Parquet writer keeps: enough to go on as if it had never stopped."""

    base: int  # where the writer started in the stream (it writes there only at close)
    orders: int
    prefix: str
    following: int  # the number of the next segment
    segments: list[Segment]
    kind: Struct | None  # the current kind; None before the first batch
    fieldless: int  # orders without any field, waiting for a first column
    columns_added: list[str]
    columns_widened: list[str]

    def to_state(self) -> dict[str, Any]:
        """The JSON state; kinds are listed once and named by their index."""
        kinds: dict[Struct, int] = {}
        segments = [
            {
                "name": segment.path.name,
                "rows": segment.rows,
                "size": segment.size,
                "kind": kinds.setdefault(segment.kind, len(kinds)),
            }
            for segment in self.segments
        ]
        current = kinds.setdefault(self.kind, len(kinds)) if self.kind is not None else None
        return new_state(
            "parquet",
            bytes=self.base,
            orders=self.orders,
            prefix=self.prefix,
            next=self.following,
            kinds=[kind_to_json(kind) for kind in kinds],
            kind=current,
            segments=segments,
            fieldless=self.fieldless,
            columns_added=self.columns_added,
            columns_widened=self.columns_widened,
        )

    @classmethod
    def from_state(cls, state: dict[str, Any], scratch_dir: Path) -> Committed:
        """The commit of ``state``, its segments checked on disk; ``UsageError`` if anything is off."""
        check_tag(state, "parquet")
        prefix = state.get("prefix")
        if not isinstance(prefix, str) or not prefix.startswith(".") or "/" in prefix or os.sep in prefix:
            raise refuse("parquet", "its state has no valid 'prefix'")
        following = integer(state, "next", "parquet")
        try:
            kinds = [kind_from_json(data) for data in items(state, "kinds", "parquet")]
        except (ValueError, RecursionError) as exc:
            raise refuse("parquet", "its state has no valid 'kinds'") from exc
        structs = [kind for kind in kinds if isinstance(kind, Struct)]
        current = state.get("kind")
        if len(structs) != len(kinds) or not (
            current is None or (type(current) is int and 0 <= current < len(kinds))
        ):
            raise refuse("parquet", "its state has no valid 'kinds'")
        segments = [
            _segment_of(entry, structs, scratch_dir, prefix, following)
            for entry in items(state, "segments", "parquet")
        ]
        for segment in segments:
            check(segment, schema_of(segment.kind))
        committed = cls(
            base=integer(state, "bytes", "parquet"),
            orders=integer(state, "orders", "parquet"),
            prefix=prefix,
            following=following,
            segments=segments,
            kind=structs[current] if current is not None else None,
            fieldless=integer(state, "fieldless", "parquet"),
            columns_added=strings(state, "columns_added", "parquet"),
            columns_widened=strings(state, "columns_widened", "parquet"),
        )
        if sum(segment.rows for segment in segments) + committed.fieldless != committed.orders:
            raise refuse("parquet", "its state's segments do not add up to its orders")
        return committed


def _segment_of(entry: Any, kinds: list[Struct], scratch_dir: Path, prefix: str, following: int) -> Segment:
    """A segment listed in a state (its file is checked by ``check``)."""
    if not isinstance(entry, dict):
        raise refuse("parquet", "its state has no valid 'segments'")
    name, rows, size, kind = (entry.get(key) for key in ("name", "rows", "size", "kind"))
    number = segment_number(prefix, name) if isinstance(name, str) else None
    if (
        number is None
        or not 0 < number < following
        or type(rows) is not int
        or rows <= 0
        or type(size) is not int
        or type(kind) is not int
        or not 0 <= kind < len(kinds)
    ):
        raise refuse("parquet", "its state has no valid 'segments'")
    return Segment(scratch_dir / str(name), kinds[kind], rows, size, synced=True)


def segment_prefix(stream: BinaryIO) -> str:
    """The prefix of the segment names of the output in ``stream``."""
    name = _file_name(stream)
    if name is None:
        return f".orders-export-{secrets.token_hex(6)}.seg-"
    return f"{'' if name.startswith('.') else '.'}{name}.seg-"


def segment_path(scratch_dir: Path, prefix: str, number: int) -> Path:
    return scratch_dir / f"{prefix}{number:04d}{_SUFFIX}"


def segment_number(prefix: str, name: str) -> int | None:
    """The number of the segment file ``name``, or None when it is not one of ``prefix``'s."""
    if not (name.startswith(prefix) and name.endswith(_SUFFIX)):
        return None
    digits = name[len(prefix) : -len(_SUFFIX)]
    return int(digits) if _NUMBER.fullmatch(digits) else None


def sweep(scratch_dir: Path, prefix: str, keep: frozenset[str] = frozenset()) -> list[str]:
    """Delete the segments of ``prefix`` not named in ``keep`` (a killed run's: unfinished, or finished
    after its last commit); the names deleted."""
    gone = []
    with contextlib.suppress(FileNotFoundError), os.scandir(scratch_dir) as entries:
        for entry in entries:
            if entry.name not in keep and segment_number(prefix, entry.name) is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    gone.append(entry.name)
    return gone


def sync(segments: list[Segment], scratch_dir: Path) -> None:
    """fsync the segments not yet synced, then the folder that names them."""
    fresh = [segment for segment in segments if not segment.synced]
    for segment in fresh:
        fd = os.open(segment.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        segment.synced = True
    if fresh:
        with contextlib.suppress(OSError):  # not every file system can sync a folder
            fd = os.open(scratch_dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def check(segment: Segment, schema: Any) -> None:
    """Refuse a committed segment that is missing, or whose size, rows or schema are not the committed."""
    name = segment.path.name
    try:
        size = segment.path.stat().st_size
    except OSError as exc:
        raise refuse("parquet", f"its segment {name} is missing from {segment.path.parent}") from exc
    if size != segment.size:
        raise refuse(
            "parquet", f"its segment {name} holds {size:,} bytes, not the {segment.size:,} committed"
        )
    try:
        metadata = pq.read_metadata(segment.path)
        found = pq.read_schema(segment.path)
    except (OSError, pa.ArrowException) as exc:
        raise refuse("parquet", f"its segment {name} is not a readable Parquet file") from exc
    if metadata.num_rows != segment.rows or not found.equals(schema):
        raise refuse("parquet", f"its segment {name} does not hold the rows or columns committed")


def _file_name(stream: BinaryIO) -> str | None:
    """The name of the regular file behind ``stream``, if it can be found."""
    path = file_behind(stream)
    return None if path is None else Path(path).name
