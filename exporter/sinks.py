"""Where the bytes go: a local file written under a temporary name and renamed when complete, an S3
object staged as a local file and uploaded whole at the end, or stdout.

A sink is opened before any request, so an output that cannot be written is refused before the export
starts; a failed or interrupted export leaves the previous file or object (or none) under the final name.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import BinaryIO, Protocol

from exporter.checkpoint import checkpoint_path
from exporter.errors import ExportError, UsageError
from exporter.storage import S3Store, is_object_url, parse_s3_url, s3_endpoint_of


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

    @property
    def partial(self) -> Path:
        """The file being written: ``.NAME.partial`` beside the target."""
        return self._temp

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


class ObjectSink:
    """An S3 object (``s3://bucket/key``): staged as a local file, uploaded whole at ``commit()``.

    The writers need a local file they can seek in, cut back (``--resume``) and rewrite (CSV, Parquet), so
    the bytes go to a ``FileSink`` in this output's staging folder (``staging_dir``), which outlives a
    crash: its partial file and the checkpoint beside it are what ``--resume`` continues. ``commit()``
    uploads the staged file through the store (a temporary key moved into place, so the object appears
    only complete) and then drops the staging folder. A failed upload keeps the complete file in the
    staging folder under the object's name, and the error names it: it outlives ``abort()``."""

    def __init__(self, url: str, *, resume: bool = False, s3_endpoint: str | None = None) -> None:
        self.name = url
        folder, _, self._key = url.rpartition("/")
        if not self._key or not parse_s3_url(url)[1]:
            raise UsageError(f"{url}: name the object to write, e.g. -o s3://BUCKET/orders.parquet")
        # Before any request, and before the staged file is touched: a store we cannot write is refused.
        self._store = S3Store(folder + "/", s3_endpoint=s3_endpoint)
        self._staging = staging_dir(url, s3_endpoint)
        try:
            self._staging.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"cannot create the staging folder {self._staging} for {url}: {exc.strerror or exc}; "
                "set ORDERS_EXPORT_STAGING to a writable folder"
            ) from exc
        staged = str(self._staging / self._key)
        self._file = FileSink(staged, resume=resume)
        self._checkpoint = checkpoint_path(staged)
        self.stream: BinaryIO = self._file.stream
        self.scratch_dir: Path | None = self._staging

    def commit(self) -> None:
        """Upload the complete staged file to its key; then the staging folder goes."""
        try:
            self._file.sync()  # the stream stays open: after a failed upload it is kept as it is
        except OSError as exc:
            raise ExportError(
                f"could not finish writing {self._file.partial}: {exc.strerror or exc}"
            ) from exc
        try:
            self._store.put_file(self._file.partial, self._key)
        except ExportError as exc:
            kept = self._keep_complete()
            if kept is not None:
                exc.message = f"{exc.message}; the complete file is kept at {kept}"
            raise
        self._remove_staged(published=True)

    def _keep_complete(self) -> Path | None:
        """A copy of the complete staged file under the object's name, which ``abort()`` leaves (the
        partial file stays as it is for --resume); None when it cannot be made (no room)."""
        kept = self._staging / self._key
        try:
            shutil.copyfile(self._file.partial, kept)
        except OSError:
            with contextlib.suppress(OSError):
                kept.unlink(missing_ok=True)
            return None
        return kept

    def sync(self) -> None:
        self._file.sync()

    def keep(self) -> None:
        """Stop, leaving the staged partial file (and its checkpoint) for --resume."""
        self._file.keep()

    def abort(self) -> None:
        """Drop the staged partial file; the object under the key keeps what it held before."""
        self._remove_staged(published=False)

    def _remove_staged(self, *, published: bool) -> None:
        """The partial file and its checkpoint go; once published, a complete file that a failed upload
        kept goes too, and with it the staging folder."""
        self._file.abort()
        for path in (self._checkpoint, self._staging / self._key) if published else (self._checkpoint,):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self._staging.rmdir()  # stays while it holds a complete file a failed upload kept


def staging_dir(url: str, s3_endpoint: str | None = None) -> Path:
    """The local folder where the object ``url`` is staged until it is uploaded: kept across runs, so
    --resume finds it. ``$ORDERS_EXPORT_STAGING``, else ``$XDG_CACHE_HOME/orders-export``, else
    ``~/.cache/orders-export``; in it one folder per URL and endpoint (``BUCKET-HASH``)."""
    base = os.environ.get("ORDERS_EXPORT_STAGING") or ""
    if not base:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(cache, "orders-export")
    bucket = parse_s3_url(url)[0]
    target = f"{s3_endpoint_of(s3_endpoint) or ''} {url}"
    return Path(base) / f"{bucket}-{hashlib.sha256(target.encode()).hexdigest()[:16]}"


def checkpoint_path_for(output: str, *, s3_endpoint: str | None = None) -> Path | None:
    """Where the checkpoint of ``-o output`` lives: beside a local file, in the staging folder of an S3
    object, nowhere for stdout."""
    if output == "-":
        return None
    if is_object_url(output):
        name = output.rpartition("/")[2]
        return checkpoint_path(str(staging_dir(output, s3_endpoint) / name))
    return checkpoint_path(output)


def open_sink(output: str, *, resume: bool = False, s3_endpoint: str | None = None) -> Sink:
    """The sink for ``-o``: ``-`` is stdout, ``s3://bucket/key`` an object, anything else a local file."""
    if output == "-":
        if resume:
            raise UsageError("--resume needs an output file: stdout cannot be taken back or continued")
        return StdoutSink()
    if is_object_url(output):
        return ObjectSink(output, resume=resume, s3_endpoint=s3_endpoint)
    return FileSink(output, resume=resume)
