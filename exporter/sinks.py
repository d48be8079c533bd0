"""Where the bytes go: a local file written under a temporary name and renamed when complete, or stdout.

A sink is opened before any request, so an output that cannot be written is refused before the export
starts; a failed or interrupted export leaves the previous file (or none) under the final name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from pathlib import Path
from typing import BinaryIO, Protocol

from exporter.errors import ExportError, UsageError


class Sink(Protocol):
    """A destination for one export's bytes."""

    stream: BinaryIO
    scratch_dir: Path | None
    name: str

    def commit(self) -> None: ...

    def sync(self) -> None: ...

    def keep(self) -> None: ...

    def abort(self) -> None: ...


class FileSink:
    """A local file: written as ``.NAME.partial`` beside the target, renamed over it on commit. With
    ``resume``, the partial file of an earlier run is reopened as it is (the writer truncates it to what
    was committed); otherwise it is started afresh. Either way it is locked, so two exports cannot write
    the same file at once."""

    def __init__(self, target: str, *, resume: bool = False) -> None:
        self.path = Path(target)
        self.name = str(self.path)
        parent = self.path.parent
        if self.path.is_dir():
            raise UsageError(f"cannot write to {target}: it is a directory; give a file name with -o")
        if not parent.is_dir():
            raise UsageError(f"cannot write to {target}: the folder {parent} does not exist")
        self.scratch_dir: Path | None = parent
        self._temp = parent / f".{self.path.name}.partial"
        if resume and not self._temp.is_file():
            raise UsageError(
                f"--resume: there is no partial output {self._temp} to continue; run without --resume"
            )
        try:
            # Opened without truncating: the lock below must be ours before anything is cut.
            fd = os.open(self._temp, os.O_RDWR | os.O_CREAT, 0o644)
            self.stream: BinaryIO = os.fdopen(fd, "r+b")
        except OSError as exc:
            raise UsageError(f"cannot write to {target}: {exc.strerror or exc}; choose another -o") from exc
        try:
            fcntl.flock(self.stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self.stream.close()
            raise UsageError(
                f"another export is writing {target} right now; wait for it or choose another -o"
            ) from exc
        if not resume:
            self.stream.truncate(0)
        self.stream.seek(0, os.SEEK_END)
        if self.path.exists() and not os.access(self.path, os.W_OK):
            self.abort()
            raise UsageError(f"cannot replace {target}: it is read-only; choose another -o")

    def commit(self) -> None:
        """Make the complete file appear under its final name, durably."""
        try:
            self.stream.flush()
            os.fsync(self.stream.fileno())
            self.stream.close()
            os.replace(self._temp, self.path)
        except OSError as exc:
            self.abort()
            raise ExportError(f"could not finish writing {self.name}: {exc.strerror or exc}") from exc
        with contextlib.suppress(OSError):
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def sync(self) -> None:
        """Make what was written so far durable (a commit point for --resume)."""
        self.stream.flush()
        os.fsync(self.stream.fileno())

    def keep(self) -> None:
        """Stop, leaving the partial file for --resume."""
        with contextlib.suppress(OSError):
            self.stream.close()

    def abort(self) -> None:
        """Drop the partial file; the final name keeps what it held before."""
        with contextlib.suppress(OSError):
            self.stream.close()
        with contextlib.suppress(FileNotFoundError):
            self._temp.unlink()


class StdoutSink:
    """Standard output: streamed as written, so a failure cannot take back what was sent."""

    name = "stdout"
    scratch_dir: Path | None = None

    def __init__(self) -> None:
        self.stream: BinaryIO = sys.stdout.buffer

    def commit(self) -> None:
        self.stream.flush()

    def sync(self) -> None:
        self.stream.flush()

    def keep(self) -> None:
        self.abort()

    def abort(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.stream.flush()


def open_sink(output: str, *, resume: bool = False) -> Sink:
    """The sink for ``-o``: ``-`` is stdout, anything else a local file."""
    if output == "-":
        if resume:
            raise UsageError("--resume needs an output file: stdout cannot be taken back or continued")
        return StdoutSink()
    return FileSink(output, resume=resume)
