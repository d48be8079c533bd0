"""The states writers hand the checkpoint at a commit, and the checks before ``resume_writer`` trusts one.

A state is plain JSON (str, int, float, bool, None, lists, dicts): ``format`` and ``version`` tag it, the
rest is the writer's own. Each reader here raises ``UsageError`` (one line, ending with what to do) when a
field is missing or of the wrong type, so a hand-edited or truncated checkpoint is refused, not trusted.
"""

from __future__ import annotations

import io
import os
from typing import Any, BinaryIO

from exporter.errors import UsageError

VERSION = 1


def new_state(fmt: str, **fields: Any) -> dict[str, Any]:
    """A state of ``fmt``, tagged with its format and this version."""
    return {"format": fmt, "version": VERSION, **fields}


def refuse(fmt: str, why: str) -> UsageError:
    """The error of a state that cannot be continued."""
    return UsageError(f"--resume: cannot continue the partial {fmt} output: {why}; run without --resume")


def check_tag(state: dict[str, Any], fmt: str) -> None:
    """Refuse a state of another format or version."""
    if state.get("format") != fmt:
        raise refuse(fmt, f"the checkpoint holds a state of {state.get('format')!r} output")
    if state.get("version") != VERSION:
        raise refuse(fmt, f"its state has version {state.get('version')!r}, this exporter writes {VERSION}")


def integer(state: dict[str, Any], key: str, fmt: str) -> int:
    """A non-negative int field."""
    value = state.get(key)
    if type(value) is not int or value < 0:
        raise refuse(fmt, f"its state has no valid {key!r}")
    return value


def strings(state: dict[str, Any], key: str, fmt: str) -> list[str]:
    """A list of str field."""
    value = state.get(key)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise refuse(fmt, f"its state has no valid {key!r}")
    return list(value)


def items(state: dict[str, Any], key: str, fmt: str) -> list[Any]:
    """A list field (its items checked by the caller)."""
    value = state.get(key)
    if not isinstance(value, list):
        raise refuse(fmt, f"its state has no valid {key!r}")
    return value


def stream_size(stream: BinaryIO, fmt: str) -> int:
    """The size of the partial output (the stream is left at its end)."""
    try:
        return stream.seek(0, os.SEEK_END)
    except (OSError, ValueError, io.UnsupportedOperation) as exc:
        raise refuse(fmt, "the partial output cannot be read back") from exc


def cut(stream: BinaryIO, committed: int, fmt: str) -> None:
    """Drop what the stream holds after the committed bytes and go on from there."""
    size = stream_size(stream, fmt)
    if size < committed:
        raise refuse(fmt, f"the partial output holds {size:,} bytes, fewer than the {committed:,} committed")
    try:
        stream.truncate(committed)
        stream.seek(committed)
    except (OSError, ValueError, io.UnsupportedOperation) as exc:
        raise refuse(fmt, f"the partial output cannot be cut back to the last commit ({exc})") from exc


def read_at(stream: BinaryIO, offset: int, size: int, fmt: str) -> bytes:
    """``size`` bytes of the partial output from ``offset`` (fewer at its end)."""
    try:
        stream.seek(offset)
        return stream.read(size)
    except (OSError, ValueError, io.UnsupportedOperation) as exc:
        raise refuse(fmt, "the partial output cannot be read back") from exc
