"""Where finished files are published: a local directory or an S3 prefix, behind one small interface.

A store holds objects under relative, '/'-separated names (``createdAt_month=2026-01/part-00001.parquet``)
and publishes each one whole: a reader never sees half an object under its final name.

- **Local** (``LocalStore``): a file is written under a hidden temporary name in its target folder
  (``.NAME.tmp``, which ``*.parquet`` globs and pyarrow.dataset skip), fsynced, renamed over the target,
  and the folder fsynced. ``put_file`` renames the local file itself when it is on the same filesystem.
- **S3** (``S3Store``, through ``pyarrow.fs.S3FileSystem``): pyarrow's S3 output stream cannot be aborted;
  closing it, even after an error (its destructor too), *completes* the multipart upload, so an upload
  cut short leaves a partial object. Files are therefore uploaded to a hidden temporary key beside the
  target (``.NAME.<random>.tmp``), then moved into place with a server-side copy: the object appears only
  complete. On failure the temporary key is deleted (best effort); a process killed mid-upload completes
  nothing and leaves only an incomplete multipart upload, which a bucket lifecycle rule
  (AbortIncompleteMultipartUpload) clears. pyarrow's move is one CopyObject request, which S3 limits to
  5 GiB: a larger file is refused before its upload. Small objects (``put_bytes`` under 5 MiB, S3's
  smallest part) go straight to their key: the stream sends its one part only at close, when every byte
  is in hand, so they too appear only complete. pyarrow leaves a zero-byte ``folder/`` marker object after
  a move or a delete in a folder; ``list`` shows files only.

Credentials and region come from the usual AWS environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_PROFILE``
and its files), found by pyarrow and the AWS SDK; the endpoint from ``--s3-endpoint``, else
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (pyarrow's constructor reads neither). ``open_store``
refuses a store it cannot write (bad URL, missing bucket, refused credentials, unreachable endpoint) with
one ``UsageError`` line, before the export makes any request; failures later are ``ExportError`` lines.
No message carries the secret key or the session token.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol
from urllib.parse import urlsplit

from exporter.errors import ExportError, UsageError

if TYPE_CHECKING:
    import pyarrow.fs as pafs

_COPY_LIMIT = 5 * 1024**3  # the largest object one CopyObject request can copy (pyarrow's move)
_ONE_PART = 5 * 1024**2  # S3's smallest part: a stream sends anything below as one part, at close
_CHUNK = 8 * 1024**2
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# The AWS SDK's names for a request the credentials or the bucket's policy refused, as pyarrow shows them
# ("AWS Error ACCESS_DENIED during ..."), and S3's own codes, which its messages may quote.
_DENIED = (
    "ACCESS_DENIED",
    "INVALID_ACCESS_KEY_ID",
    "SIGNATURE_DOES_NOT_MATCH",
    "MISSING_AUTHENTICATION_TOKEN",
    "REQUEST_EXPIRED",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
)


class Store(Protocol):
    """A local directory or an S3 prefix holding objects under relative '/'-separated names."""

    uri: str  # "s3://bucket/prefix/" or "/abs/dir/": always ends with '/'
    local_root: Path | None  # the directory of a local store; None for S3

    def put_file(self, local: Path, name: str) -> None:
        """Publish the complete ``local`` file under ``name``. It may be moved away on success (do not use
        it afterwards); on failure it is left as it was."""

    def put_bytes(self, name: str, data: bytes) -> None:
        """Publish a small object whole (a manifest, a checkpoint), replacing any earlier one."""

    def get_bytes(self, name: str) -> bytes | None:
        """The object's bytes; None when there is none."""

    def delete(self, name: str) -> None:
        """Remove the object; one that is not there is fine."""

    def list(self, prefix: str = "") -> dict[str, int]:
        """Every object whose name starts with ``prefix``, at any depth: name -> size in bytes. Names with
        a part starting with '.' are temporaries of unfinished puts."""

    def uri_of(self, name: str) -> str: ...


def is_object_url(output: str) -> bool:
    """Whether ``-o`` names object storage (``s3://``, any case) rather than a local path."""
    return output[:5].lower() == "s3://"


def open_store(output: str, *, s3_endpoint: str | None = None) -> Store:
    """The store for ``output``: ``s3://bucket/prefix/`` or a local directory, checked writable."""
    if is_object_url(output):
        return S3Store(output, s3_endpoint=s3_endpoint)
    return LocalStore(Path(output))


def aws_secrets() -> list[str]:
    """The AWS secrets of the environment, for redaction: they must never reach a message or a log."""
    return [v for v in (os.environ.get(k) for k in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")) if v]


def check_name(name: str) -> str:
    """``name`` if it is a relative '/'-separated name without empty, '.' or '..' parts."""
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or any(part in ("", ".", "..") for part in name.split("/"))
    ):
        raise ValueError(f"not a relative object name: {name!r}")
    return name


# -- local -------------------------------------------------------------------------------------------


class LocalStore:
    """A local directory: each file written under ``.NAME.tmp`` in its folder, fsynced and renamed."""

    local_root: Path | None

    def __init__(self, root: Path) -> None:
        root = root.expanduser().resolve()
        self.root = root
        self.local_root = root
        self.uri = str(root).rstrip("/") + "/"
        if root.exists() and not root.is_dir():
            raise UsageError(f"cannot write to {root}: a file is in the way; remove it or choose another -o")
        if not root.exists():
            if not root.parent.is_dir():
                raise UsageError(
                    f"cannot write to {root}: the folder {root.parent} does not exist; create it first"
                )
            try:
                root.mkdir(exist_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot create {root}: {exc.strerror or exc}; choose another -o") from exc
        try:  # os.access is wrong for root, ACLs and read-only mounts: try it
            fd, probe = tempfile.mkstemp(prefix=".orders-export-probe-", dir=root)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise UsageError(
                f"cannot write to {root}: {exc.strerror or exc}; fix its permissions or choose another -o"
            ) from exc

    def uri_of(self, name: str) -> str:
        return self.uri + check_name(name)

    def put_file(self, local: Path, name: str) -> None:
        target = self.root / check_name(name)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if os.stat(local).st_dev == os.stat(target.parent).st_dev:
                _fsync_path(local)
                os.replace(local, target)
                _fsync_path(target.parent)
            else:
                with open(local, "rb") as source:
                    self._write(target, lambda out: shutil.copyfileobj(source, out, _CHUNK))
        except OSError as exc:
            raise ExportError(f"could not write {target}: {exc.strerror or exc}") from exc

    def put_bytes(self, name: str, data: bytes) -> None:
        target = self.root / check_name(name)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._write(target, lambda out: out.write(data))
        except OSError as exc:
            raise ExportError(f"could not write {target}: {exc.strerror or exc}") from exc

    def get_bytes(self, name: str) -> bytes | None:
        path = self.root / check_name(name)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ExportError(f"could not read {path}: {exc.strerror or exc}") from exc

    def delete(self, name: str) -> None:
        path = self.root / check_name(name)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise ExportError(f"could not delete {path}: {exc.strerror or exc}") from exc

    def list(self, prefix: str = "") -> dict[str, int]:
        found: dict[str, int] = {}
        folder = self.root / prefix.rpartition("/")[0]
        try:
            for parent, _, files in os.walk(folder):
                for file in files:
                    path = Path(parent, file)
                    name = path.relative_to(self.root).as_posix()
                    if name.startswith(prefix):
                        found[name] = path.stat().st_size
        except OSError as exc:
            raise ExportError(f"could not list {folder}: {exc.strerror or exc}") from exc
        return found

    @staticmethod
    def _write(target: Path, fill: Callable[[BinaryIO], Any]) -> None:
        """``fill`` a hidden temporary beside ``target``, fsync it, rename it over ``target``."""
        temp = target.with_name(f".{target.name}.tmp")
        try:
            with open(temp, "wb") as out:
                fill(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_path(target.parent)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- S3 ----------------------------------------------------------------------------------------------


def s3_endpoint_of(s3_endpoint: str | None) -> str | None:
    """The endpoint in force: ``--s3-endpoint``, else ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``,
    as ``scheme://host[:port]``; None for AWS itself."""
    source, raw = "--s3-endpoint", s3_endpoint
    for variable in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        if not raw:
            source, raw = variable, os.environ.get(variable)
    if not raw:
        return None
    try:
        parts = urlsplit(raw)
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        parts = None
    if parts is not None and "@" in parts.netloc:
        raise UsageError(
            f"{source} must not hold credentials: give them as AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        )
    if (
        parts is None
        or parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise UsageError(
            f"{source} {raw!r} is not an endpoint URL like http://127.0.0.1:9000 or https://host"
        )
    return f"{parts.scheme.lower()}://{parts.netloc}"


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` as (bucket, "some/key"); the key may be empty or end with '/'."""
    rest = url[5:] if is_object_url(url) else ""
    bucket, _, key = rest.partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise UsageError(
            f"{url!r} is not an S3 URL: write s3://BUCKET/KEY, e.g. s3://my-bucket/orders.parquet"
        )
    if key and any(part in ("", ".", "..") for part in key.rstrip("/").split("/")):
        raise UsageError(f"{url!r}: the key has an empty, '.' or '..' part; write s3://BUCKET/folder/name")
    return bucket, key


def s3_filesystem(url: str, s3_endpoint: str | None) -> tuple[pafs.S3FileSystem, str]:
    """The pyarrow filesystem for an ``s3://`` URL and the URL's path in it (``bucket/key``, no trailing
    '/'). Credentials and region are left to pyarrow and the AWS SDK."""
    import pyarrow.fs as pafs  # only for object storage: a local export does not load pyarrow

    bucket, key = parse_s3_url(url)
    endpoint = s3_endpoint_of(s3_endpoint)
    options: dict[str, Any] = {}
    if endpoint is not None:
        scheme, _, host = endpoint.partition("://")
        options.update(scheme=scheme, endpoint_override=host)
    return pafs.S3FileSystem(**options), f"{bucket}/{key}".rstrip("/")


def short_cause(exc: BaseException) -> str:
    """pyarrow's error in one short line, without the secrets: the AWS code and message when it has one
    ("AWS Error NO_SUCH_BUCKET during ...: The specified bucket does not exist ...")."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    text = text[text.find("AWS Error ") :] if "AWS Error " in text else text
    for secret in aws_secrets():
        text = text.replace(secret, "***")
    return text if len(text) <= 300 else text[:297] + "..."


class S3Store:
    """An S3 prefix: uploads go to a hidden temporary key and are moved into place (see the module
    docstring). ``fs`` is the pyarrow filesystem, for callers that read or write with pyarrow themselves."""

    local_root: Path | None = None

    def __init__(self, url: str, *, s3_endpoint: str | None = None) -> None:
        self.fs, self._root = s3_filesystem(url, s3_endpoint)
        self.uri = f"s3://{self._root}/"
        self.endpoint = s3_endpoint_of(s3_endpoint)
        self._probe()

    def _probe(self) -> None:
        """Put and delete a tiny object: the bucket exists, the credentials work, we may write here."""
        name = f".orders-export-probe-{secrets.token_hex(6)}"
        try:
            with self.fs.open_output_stream(self._path(name)) as out:
                out.write(b"orders-export: can we write here?\n")
            self.fs.delete_file(self._path(name))
        except OSError as exc:
            raise UsageError(self._refusal(exc)) from exc

    def _refusal(self, exc: OSError) -> str:
        cause = short_cause(exc)
        where = f" at {self.endpoint}" if self.endpoint else ""
        if "NO_SUCH_BUCKET" in cause or "NoSuchBucket" in cause:
            bucket = self._root.partition("/")[0]
            return (
                f"cannot write to {self.uri}: the bucket {bucket!r} does not exist{where}; "
                "create it or fix -o"
            )
        if "NETWORK_CONNECTION" in cause:
            return (
                f"cannot reach S3{where} for {self.uri} ({cause}); "
                "check --s3-endpoint (or AWS_ENDPOINT_URL_S3) and the network"
            )
        if any(code in cause for code in _DENIED):
            return (
                f"cannot write to {self.uri}: access denied ({cause}); check the AWS credentials "
                "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE) and the bucket's policy"
            )
        return (
            f"cannot write to {self.uri}: {cause}; "
            "check the URL, the AWS credentials and region, and --s3-endpoint"
        )

    def _path(self, name: str) -> str:
        return f"{self._root}/{check_name(name)}"

    def uri_of(self, name: str) -> str:
        return self.uri + check_name(name)

    def put_file(self, local: Path, name: str) -> None:
        path = self._path(name)
        try:
            size = os.stat(local).st_size
            if size > _COPY_LIMIT:
                raise ExportError(
                    f"cannot publish {self.uri_of(name)}: the file is {size / 1024**3:.1f} GiB and S3 copies "
                    "at most 5 GiB in one request (how a finished upload is moved into place); "
                    "export a dataset (-o s3://BUCKET/PREFIX/) or upload the file with `aws s3 cp`"
                )
            with open(local, "rb") as source:
                self._upload(path, lambda out: shutil.copyfileobj(source, out, _CHUNK))
        except OSError as exc:
            raise ExportError(f"could not upload {self.uri_of(name)}: {short_cause(exc)}") from exc

    def put_bytes(self, name: str, data: bytes) -> None:
        path = self._path(name)
        try:
            if len(data) < _ONE_PART:
                with self.fs.open_output_stream(path) as out:
                    out.write(data)
            else:
                self._upload(path, lambda out: out.write(data))
        except OSError as exc:
            raise ExportError(f"could not upload {self.uri_of(name)}: {short_cause(exc)}") from exc

    def _upload(self, path: str, fill: Callable[[Any], Any]) -> None:
        """``fill`` a temporary key beside ``path`` and move it there: the object appears only complete."""
        folder, _, base = path.rpartition("/")
        temp = f"{folder}/.{base}.{secrets.token_hex(6)}.tmp"
        published = False
        try:
            with self.fs.open_output_stream(temp) as out:
                fill(out)
            self.fs.move(temp, path)
            published = True
        finally:
            if not published:
                # The failed stream completed what it had: a partial object under the temporary key.
                with contextlib.suppress(OSError):
                    self.fs.delete_file(temp)

    def get_bytes(self, name: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(self._path(name)) as source:
                data: bytes = source.read()
                return data
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ExportError(f"could not read {self.uri_of(name)}: {short_cause(exc)}") from exc

    def delete(self, name: str) -> None:
        try:
            self.fs.delete_file(self._path(name))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ExportError(f"could not delete {self.uri_of(name)}: {short_cause(exc)}") from exc

    def list(self, prefix: str = "") -> dict[str, int]:
        folder = "/".join(part for part in (self._root, prefix.rpartition("/")[0]) if part)
        try:
            import pyarrow.fs as pafs

            infos = self.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True, recursive=True))
        except OSError as exc:
            raise ExportError(f"could not list {self.uri}{prefix}: {short_cause(exc)}") from exc
        found: dict[str, int] = {}
        for info in infos:
            name = info.path[len(self._root) + 1 :]
            if info.type == pafs.FileType.File and name.startswith(prefix):
                found[name] = info.size
        return found
