"""JSON Lines: one order per line, the JSON object the API sent, UTF-8, ending in ``\\n``.

Nothing to infer and nothing that can arrive late: every field of every order is in its line. Zero orders
give an empty file. A commit is a flush: its state is the bytes committed (always whole lines) and the
orders count; a resume cuts the stream back to those bytes.

An export without ``--details`` hands the writer lines (``write_lines``), taken from the list page without
building Python objects (``responses.decode_lines``): each order's bytes as the API sent them when the page
is on one line, else simdjson's minified text of the order (escapes such as ``\\u00e9`` or ``\\/`` come
out as the characters; a number may be spelled otherwise, ``1e+15`` for ``1000000000000000.0``). Either way
the same JSON value orjson would write, with one difference: an order with a key twice keeps both, as the
API sent them, where a decoder keeps the last one only. A page simdjson refuses (an integer beyond 64
bits) is decoded by ``responses.decode_page``; on one line its lines are still the orders' bytes, on
several they are the JSON text of what was decoded (``jsoncodec``: such an integer keeps every digit).
``write`` (dicts, ``jsoncodec.encode_line``) serves ``--details``.
"""

from __future__ import annotations

import io
from typing import Any, BinaryIO

from exporter.errors import ExportError
from exporter.jsoncodec import encode_line
from exporter.writers.state import check_tag, cut, integer, new_state, read_at, refuse

_BUFFER = 1 << 18


class _Forward(io.RawIOBase):
    """The caller's stream as the raw end of our own, larger buffer; never closes it."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream: BinaryIO | None = stream

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._stream is not None:  # after abort() the buffer's last flush goes nowhere
            self._stream.write(data)
        return len(data)

    def drop(self) -> None:
        self._stream = None

    @property
    def dropped(self) -> bool:
        return self._stream is None


class JsonlWriter:
    """Writes each order as one line of JSON."""

    def __init__(self, stream: BinaryIO) -> None:
        self.columns_added: list[str] = []
        self.orders = 0
        self._stream = stream
        self._raw = _Forward(stream)
        # Lines go through a 256 KiB buffer of our own: the caller's (8 KiB by default) would make a
        # system call every ~20 orders, which costs about as much as orjson itself.
        self._buffer = io.BufferedWriter(self._raw, buffer_size=_BUFFER)

    def write(self, records: list[dict[str, Any]]) -> None:
        # writelines() takes each line as soon as orjson makes it: no list of byte strings to hold, which
        # on this kind of VM (fresh pages are expensive) is several times faster than b"".join(...).
        try:
            self._buffer.writelines(map(encode_line, records))
        except OSError as exc:
            raise self._failed(exc) from exc
        self.orders += len(records)

    def write_lines(self, lines: list[bytes]) -> None:
        """Write orders given as their JSON text, each without its line end (``responses.decode_lines``)."""
        if not lines:
            return
        # One join per page (~1 µs for 100 orders): a write() per line costs ~10 µs more a page.
        try:
            self._buffer.write(b"\n".join(lines))
            self._buffer.write(b"\n")
        except OSError as exc:
            raise self._failed(exc) from exc
        self.orders += len(lines)

    @classmethod
    def resume(cls, stream: BinaryIO, state: dict[str, Any]) -> JsonlWriter:
        """The writer of a commit's ``state``, after cutting ``stream`` back to the committed bytes."""
        check_tag(state, "jsonl")
        committed = integer(state, "bytes", "jsonl")
        orders = integer(state, "orders", "jsonl")
        if committed and read_at(stream, committed - 1, 1, "jsonl") not in (b"\n", b""):
            raise refuse("jsonl", f"the partial output has no line end at the {committed:,} bytes committed")
        cut(stream, committed, "jsonl")
        writer = cls(stream)
        writer.orders = orders
        return writer

    def commit(self, *, force: bool = False) -> dict[str, Any] | None:
        """Flush into the stream; the state is the bytes committed and the orders count (None when the
        stream cannot tell its position: it cannot be continued; or after abort/suspend)."""
        if self._raw.dropped:
            return None
        self._flush()
        try:
            committed = self._stream.tell()
        except (OSError, ValueError, io.UnsupportedOperation):
            return None  # a pipe: nothing could take it back or continue it
        return new_state("jsonl", bytes=committed, orders=self.orders)

    def close(self) -> None:
        self._flush()

    def _flush(self) -> None:
        """Our buffer into the stream, the stream's into the file."""
        try:
            self._buffer.flush()
            self._stream.flush()
        except OSError as exc:
            raise self._failed(exc) from exc

    def _failed(self, exc: OSError) -> ExportError:
        """The error to raise for a failed write; what is buffered is dropped, or the buffer would try
        again when it is collected."""
        self._raw.drop()
        return ExportError(f"cannot write the JSONL output: {exc.strerror or exc}")

    def abort(self) -> None:
        """Drop what is buffered; the stream is left alone."""
        self._raw.drop()

    def suspend(self) -> None:
        """Stop: what the last commit flushed stays, anything written after it is dropped."""
        self._raw.drop()
