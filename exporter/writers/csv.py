"""CSV: a header row, then one row per order; the cells are those of ``flatten_record`` (see ``cells``).

RFC 4180: ``,`` between cells, CRLF after each row, UTF-8 without BOM; a cell holding ``"``, ``,``, CR or LF
is quoted with its quotes doubled (newlines stay inside the quotes), other cells are written bare. Columns
come in first-seen order; null and absent fields are empty cells. Zero orders give an empty output (no
header: there is no column to name), and so do orders that have no field at all.

Strategy, a column first seen late (the header is decided after the first ``header_rows`` orders):

- **file** (``scratch_dir`` given): rows are written straight to the stream; from the batch where a new
  column appears, rows carry the extra cells (so they are longer than the header). At ``close()``, if that
  happened, the file is rewritten once with the full header: rows already at the final width are copied
  as bytes, earlier ones get empty cells added before their CRLF (found by counting quotes, see
  ``pad_pieces``: no parsing); streamed in 1 MiB chunks, so memory stays bounded. The earlier bytes are
  read back through the stream's own name (or ``/proc/self/fd``) after a copy to ``scratch_dir``; when
  the stream cannot be read back, rows are spooled to a scratch file instead and copied at ``close()``.
- **stream** (``-o -``, nothing can be rewritten): the header is the columns of the first ``header_rows``
  orders plus a last column ``_extra``, always present. A field that is not in the header goes into
  ``_extra`` as a JSON object ``{"column": "cell text"}`` (empty when there is none), so the row still holds
  every field: header cells + ``_extra`` == ``flatten_record(order)``. A field of the data that is itself
  named ``_extra`` is always put into that JSON object.

Commit and resume (file mode with rows written straight to the stream; in stream and spool modes
``commit`` returns None: there is nothing another run could continue): a commit is a flush, and its state
is what the rewrite at close needs: the bytes committed, the columns (as raw key paths), the runs of row
widths, and the count of field-less orders still waiting for a first column. While the header waits for
its ``header_rows`` orders, only a forced commit is one, and it decides the header from the orders held so
far: the columns of the next orders are then late columns, appended in first-seen order and padded at
close like any other, so the finished file is the same (``columns_added`` just names more of them). A
resume cuts the file back to the committed bytes, after checking that it still starts with the committed
header (a kill during the rewrite at close would have changed it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from itertools import repeat
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from exporter.errors import ExportError
from exporter.writers.cells import column_name, flatten_record, leaf_cells
from exporter.writers.files import file_behind
from exporter.writers.rows import Layout, encode_rows
from exporter.writers.state import check_tag, cut, integer, items, new_state, read_at, refuse, strings

__all__ = ["EXTRA_COLUMN", "CsvWriter", "encode_rows", "flatten_record"]

EXTRA_COLUMN = "_extra"
_COPY_CHUNK = 1 << 20
_ROWS_PER_TEXT = 200


def pad_pieces(pieces: list[bytes], pad: bytes, quoted: bool, lone: bool = False) -> tuple[bytes, bool]:
    """Rows split on CRLF, joined again with ``pad`` before each CRLF that ends a row (not one inside a
    quoted cell); ``quoted``: whether the first piece starts inside a quoted cell. Returns the bytes and
    whether the text after them is still inside a quoted cell. ``lone``: the rows have a single cell, where
    an empty one is written ``""`` (a bare one would be a blank line); padded, it becomes a bare empty cell,
    as ``encode_rows`` writes it in a wider row.

    A CRLF ends a row when the quotes before it in the row are even in number (a doubled quote counts
    two), so counting quotes per piece is enough: no CSV parsing, and a C-speed join when no piece has an
    odd count, which is all of them unless a cell holds a CRLF.
    """
    counts = list(map(bytes.count, pieces, repeat(b'"')))
    end = pad + b"\r\n"
    if not quoted and not any(map((1).__and__, counts)):
        if lone:
            pieces = [b"" if piece == b'""' else piece for piece in pieces]
        return end.join(pieces) + end if pieces else b"", False
    out: list[bytes] = []
    for piece, count in zip(pieces, counts, strict=True):
        if lone and not quoted and piece == b'""':
            piece = b""  # the lone empty cell of a row, not text inside a quoted cell
        if count & 1:
            quoted = not quoted
        out.append(piece)
        out.append(b"\r\n" if quoted else end)
    return b"".join(out), quoted


def _readable_path(stream: BinaryIO) -> str | None:
    """A path that reads back the regular, seekable file behind ``stream``, if there is one."""
    try:
        if not stream.seekable():
            return None
    except (OSError, ValueError, AttributeError):
        return None
    return file_behind(stream, through_proc=True)


class CsvWriter:
    """Writes orders as CSV rows; see the module docstring for how late columns are kept."""

    def __init__(self, stream: BinaryIO, *, scratch_dir: Path | None, header_rows: int = 1_000) -> None:
        self.columns_added: list[str] = []
        self.orders = 0
        self._stream = stream
        self._scratch_dir = scratch_dir
        self._header_rows = max(1, header_rows)
        self._held: list[dict[str, Any]] = []  # orders waiting for the header to be decided
        self._layout = Layout()
        self._started = False
        self._closed = False
        self._scratch: list[Path] = []
        self._files: list[BinaryIO] = []
        self._extra_seen: set[str] = set()
        # File mode: where rows go (the stream, or a spool file when the stream cannot be read back),
        # and (byte offset, width) of each run of rows of one width, to pad them at close().
        self._out: BinaryIO = stream
        self._readback: str | None = None
        self._base = 0
        self._written = 0
        self._runs: list[tuple[int, int]] = []
        self._blank = 0  # file mode: orders without any field, seen before the first column
        if scratch_dir is not None:
            self._readback = _readable_path(stream)
            if self._readback is None:
                self._out = self._new_scratch(".csv")
            else:
                self._base = stream.tell()

    @property
    def columns(self) -> list[str]:
        """The columns so far, in order (stream mode: with ``_extra`` last)."""
        return list(self._layout.names)

    # -- the protocol -----------------------------------------------------------------------------

    def write(self, records: list[dict[str, Any]]) -> None:
        self.orders += len(records)
        if not self._started:
            self._held.extend(records)
            if len(self._held) >= self._header_rows:
                self._start()
            return
        self._write(records)

    @classmethod
    def resume(cls, stream: BinaryIO, *, scratch_dir: Path | None, state: dict[str, Any]) -> CsvWriter:
        """The writer of a commit's ``state``, after cutting ``stream`` back to the committed bytes."""
        check_tag(state, "csv")
        if scratch_dir is None:
            raise refuse("csv", "a CSV written to stdout cannot be continued")
        committed = integer(state, "bytes", "csv")
        base = integer(state, "base", "csv")
        writer = cls(stream, scratch_dir=scratch_dir)
        writer._base = base
        try:
            if writer._out is not stream:
                raise refuse("csv", "the partial output cannot be read back")
            writer._restore(state, committed - base)
            if writer._runs:  # the first run starts right after the header
                header = encode_rows([writer._layout.names[: writer._runs[0][1]]]).encode("utf-8")
                if len(header) != writer._runs[0][0] or read_at(stream, base, len(header), "csv") != header:
                    raise refuse("csv", "the partial output does not start with the committed header")
            cut(stream, committed, "csv")
        except BaseException:
            writer.abort()
            raise
        return writer

    def _restore(self, state: dict[str, Any], written: int) -> None:
        """Columns, runs and counters from a commit's state, checked against each other."""
        for path in items(state, "columns", "csv"):
            if not (isinstance(path, list) and path and all(isinstance(key, str) for key in path)):
                raise refuse("csv", "its state has no valid 'columns'")
            if not self._layout.add(tuple(path)):
                raise refuse("csv", f"its state names the column {column_name(tuple(path))!r} twice")
        runs = []
        for run in items(state, "runs", "csv"):
            if not (isinstance(run, list) and len(run) == 2 and all(type(n) is int for n in run)):
                raise refuse("csv", "its state has no valid 'runs'")
            runs.append((run[0], run[1]))
        offsets, widths = [run[0] for run in runs], [run[1] for run in runs]
        if runs:  # each run starts later and is wider than the one before; the last has every column
            ordered = offsets == sorted(set(offsets)) and widths == sorted(set(widths))
            agree = ordered and offsets[-1] <= written and widths[-1] == len(self._layout)
        else:  # nothing written yet, not even a header
            agree = written == 0 and not len(self._layout)
        if not agree:
            raise refuse("csv", "its state's columns, runs and bytes do not agree")
        self._runs = runs
        self._written = written
        self._started = True
        self._blank = integer(state, "blank", "csv")
        self.orders = integer(state, "orders", "csv")
        self.columns_added = strings(state, "columns_added", "csv")

    def commit(self, *, force: bool = False) -> dict[str, Any] | None:
        """Flush; the state of this commit point (see the module docstring), or None when there is none."""
        if self._closed or self._scratch_dir is None or self._out is not self._stream:
            return None
        if not self._started:
            if not force:
                return None
            self._start()
        try:
            self._stream.flush()
        except OSError as exc:
            raise ExportError(f"cannot write the CSV output: {exc.strerror or exc}") from exc
        return new_state(
            "csv",
            bytes=self._base + self._written,
            base=self._base,
            orders=self.orders,
            columns=[list(path) for path in self._layout.paths],
            runs=[list(run) for run in self._runs],
            blank=self._blank,
            columns_added=list(self.columns_added),
        )

    def suspend(self) -> None:
        """Stop; only scratch files go (none is part of a commit), the stream is left as committed."""
        self.abort()

    def close(self) -> None:
        """Write what is held, then (file mode) rewrite with the full header if columns came late."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self._started:
                self._start()
            if self._scratch_dir is not None and len(self._runs) > 1:
                self._rewrite()
            elif self._out is not self._stream:
                self._out.flush()
                self._out.seek(0)
                shutil.copyfileobj(self._out, self._stream, _COPY_CHUNK)
            self._stream.flush()
        except OSError as exc:
            raise ExportError(f"cannot write the CSV output: {exc.strerror or exc}") from exc
        finally:
            self._cleanup()

    def abort(self) -> None:
        """Remove our scratch files; the stream is left alone."""
        self._closed = True
        self._cleanup()

    # -- writing ----------------------------------------------------------------------------------

    def _start(self) -> None:
        """Decide the header from the orders held so far, write it, then write them."""
        held, self._held = self._held, []
        self._started = True
        stream_mode = self._scratch_dir is None
        if stream_mode and not held:
            return
        layout = self._layout
        for record in held:
            for path, _ in leaf_cells(record):
                if not (stream_mode and path == (EXTRA_COLUMN,)):
                    layout.add(path)
        if stream_mode:
            layout.add_unreachable(EXTRA_COLUMN)
            self._emit(encode_rows([layout.names]))
        elif len(layout):
            self._emit(encode_rows([layout.names]))
            self._runs.append((self._written, len(layout)))
        self._write(held)

    def _write(self, records: list[dict[str, Any]]) -> None:
        # A few pages at most per encode: bigger texts cost more per row here (fresh memory is slow).
        write = self._write_stream if self._scratch_dir is None else self._write_file
        if len(records) <= _ROWS_PER_TEXT:
            write(records)
            return
        for start in range(0, len(records), _ROWS_PER_TEXT):
            write(records[start : start + _ROWS_PER_TEXT])

    def _write_stream(self, records: list[dict[str, Any]]) -> None:
        try:
            rows = list(map(self._layout.row, records))
        except KeyError:
            rows = list(map(self._row_with_extra, records))
        self._emit(encode_rows(rows))

    def _row_with_extra(self, record: dict[str, Any]) -> list[str]:
        """Stream mode: the cells of the header's columns, and the other fields as JSON in ``_extra``."""
        try:
            return self._layout.row(record)
        except KeyError:
            pass
        row = [""] * len(self._layout)
        extra: dict[str, str] = {}
        for path, cell in leaf_cells(record):
            index = self._layout.index(path) if path != (EXTRA_COLUMN,) else None
            if index is None:
                name = column_name(path)
                extra[name] = cell
                if name not in self._extra_seen:
                    self._extra_seen.add(name)
                    self.columns_added.append(name)
            else:
                row[index] = cell
        row[-1] = orjson.dumps(extra).decode() if extra else ""
        return row

    def _write_file(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        layout = self._layout
        try:
            rows = list(map(layout.row, records))
        except KeyError:
            width = len(layout)
            for record in records:
                for path, _ in leaf_cells(record):
                    layout.add(path)
            if not len(layout):
                self._blank += len(records)
                return
            if not self._runs:  # the first columns: the header
                self._emit(encode_rows([layout.names]))
                self._runs.append((self._written, len(layout)))
            elif len(layout) > width:  # rows get longer from here: a new run
                self.columns_added.extend(layout.names[width:])
                self._runs.append((self._written, len(layout)))
            rows = list(map(layout.row, records))
            if self._blank:
                rows[:0] = [[""] * len(layout)] * self._blank
                self._blank = 0
        if not self._runs:  # no column yet: only orders without any field so far
            self._blank += len(records)
            return
        self._emit(encode_rows(rows))

    def _emit(self, text: str) -> None:
        data = text.encode("utf-8")
        try:
            self._out.write(data)
        except OSError as exc:
            raise ExportError(f"cannot write the CSV output: {exc.strerror or exc}") from exc
        self._written += len(data)

    # -- the rewrite at close ---------------------------------------------------------------------

    def _rewrite(self) -> None:
        """Header with every column, then each earlier run padded to the final width, into the stream."""
        if self._out is self._stream:
            # Move what was written aside, then write the file again from its start.
            self._stream.flush()
            source = self._new_scratch(".csv")
            assert self._readback is not None
            with open(self._readback, "rb") as back:
                back.seek(self._base)
                shutil.copyfileobj(back, source, _COPY_CHUNK)
            self._stream.seek(self._base)
            self._stream.truncate()
        else:
            source = self._out
        source.flush()
        width = len(self._layout)
        self._stream.write(encode_rows([self._layout.names]).encode("utf-8"))
        ends = [run[0] for run in self._runs[1:]] + [self._written]
        for (start, run_width), end in zip(self._runs, ends, strict=True):
            source.seek(start)
            if run_width == width:
                self._copy_bytes(source, end - start)
            else:
                self._pad_rows(source, end - start, b"," * (width - run_width), lone=run_width == 1)

    def _read_run(self, source: BinaryIO, size: int) -> Iterator[bytes]:
        while size > 0:
            chunk = source.read(min(size, _COPY_CHUNK))
            if not chunk:
                raise ExportError("the CSV output was cut short while it was being rewritten")
            size -= len(chunk)
            yield chunk

    def _copy_bytes(self, source: BinaryIO, size: int) -> None:
        for chunk in self._read_run(source, size):
            self._stream.write(chunk)

    def _pad_rows(self, source: BinaryIO, size: int, pad: bytes, *, lone: bool) -> None:
        """Copy ``size`` bytes of rows, adding ``pad`` (empty cells) before the CRLF that ends each row."""
        carry = b""
        quoted = False  # inside a quoted cell where the previous piece ended
        for chunk in self._read_run(source, size):
            pieces = (carry + chunk).split(b"\r\n")
            carry = pieces.pop()
            data, quoted = pad_pieces(pieces, pad, quoted, lone)
            self._stream.write(data)
        if carry or quoted:
            raise ExportError("the CSV output was cut short while it was being rewritten")

    # -- scratch files ----------------------------------------------------------------------------

    def _new_scratch(self, suffix: str) -> BinaryIO:
        assert self._scratch_dir is not None
        fd, name = tempfile.mkstemp(prefix=".orders-export-", suffix=suffix, dir=self._scratch_dir)
        self._scratch.append(Path(name))
        handle = os.fdopen(fd, "w+b")
        self._files.append(handle)
        return handle

    def _cleanup(self) -> None:
        for handle in self._files:
            with contextlib.suppress(OSError):
                handle.close()
        self._files.clear()
        for path in self._scratch:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._scratch.clear()
