"""Finding the regular file behind a stream the caller opened (writers may read it back or name files
after it)."""

from __future__ import annotations

import contextlib
import io
import os
import stat
from typing import BinaryIO

_NOT_A_FILE = (OSError, ValueError, AttributeError, io.UnsupportedOperation)


def file_behind(stream: BinaryIO, *, through_proc: bool = False) -> str | None:
    """A path to the regular file behind ``stream``, checked by device and inode: its name, or the one
    /proc keeps for its descriptor; with ``through_proc``, the /proc path itself as a last resort (it
    reads the file even when its name cannot be known)."""
    try:
        fd = stream.fileno()
        here = os.fstat(fd)
    except _NOT_A_FILE:
        return None
    if not stat.S_ISREG(here.st_mode):
        return None
    name = getattr(stream, "name", None)
    candidates = [name] if isinstance(name, str) else []
    with contextlib.suppress(OSError):
        candidates.append(os.readlink(f"/proc/self/fd/{fd}"))
    if through_proc:
        candidates.append(f"/proc/self/fd/{fd}")
    for candidate in candidates:
        try:
            there = os.stat(candidate)
        except OSError:
            continue
        if (there.st_dev, there.st_ino) == (here.st_dev, here.st_ino):
            return candidate
    return None
