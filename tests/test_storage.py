"""Stores (a local directory, an S3 prefix) and exports to s3://, against moto's S3 server
(tests/s3server.py): the same interface both ways, objects published only whole, refusals in one line
before any API request, and no AWS secret in any message."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow.fs as pafs
import pytest

from exporter import export
from exporter import storage as storage_module
from exporter.cli import _RedactingFormatter, _secrets_of
from exporter.errors import ExportError, UsageError
from exporter.sandbox import SandboxConfig, SandboxThread
from exporter.sinks import ObjectSink, checkpoint_path_for, staging_dir
from exporter.storage import LocalStore, S3Store, Store, is_object_url, open_store
from tests.conftest import export_config
from tests.readback import assert_export_matches, read_jsonl
from tests.s3server import SECRET_KEY, S3Server, free_port, start_moto

ORDERS = 3_000


@pytest.fixture(autouse=True)
def staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Staged S3 outputs go under the test's folder, never into ~/.cache."""
    folder = tmp_path / "staging"
    monkeypatch.setenv("ORDERS_EXPORT_STAGING", str(folder))
    return folder


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    with SandboxThread(SandboxConfig(orders=ORDERS, seed=5)) as sb:
        yield sb


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """The same interface, both ways: a fresh local folder or a fresh bucket's prefix."""
    if request.param == "local":
        return open_store(str(tmp_path / "out") + "/")
    server: S3Server = request.getfixturevalue("s3_server")
    return open_store(f"s3://{server.bucket()}/some/prefix/", s3_endpoint=server.endpoint)


def hidden(names: Any) -> list[str]:
    """Names with a part that starts with '.': temporaries and probes."""
    return [n for n in names if any(part.startswith(".") for part in n.split("/"))]


def one_line_without_secret(message: str) -> None:
    assert "\n" not in message
    assert SECRET_KEY not in message


# -- the interface, both ways ------------------------------------------------------------------------


def test_put_get_list_delete(store: Store, tmp_path: Path) -> None:
    """Bytes and files go in under nested names, come back, list with their sizes, and go."""
    assert store.uri.endswith("/")
    assert store.list() == {}
    assert store.get_bytes("_manifest.json") is None
    store.put_bytes("_manifest.json", b'{"parts": 1}')
    local = tmp_path / "part.parquet"
    local.write_bytes(b"x" * 1000)
    store.put_file(local, "createdAt_month=2026-01/part-00001.parquet")
    store.put_bytes("createdAt_month=2026-02/part-00002.parquet", b"yy")

    assert store.get_bytes("_manifest.json") == b'{"parts": 1}'
    assert store.get_bytes("createdAt_month=2026-01/part-00001.parquet") == b"x" * 1000
    assert store.list() == {
        "_manifest.json": 12,
        "createdAt_month=2026-01/part-00001.parquet": 1000,
        "createdAt_month=2026-02/part-00002.parquet": 2,
    }
    assert store.list("createdAt_month=2026-01/") == {"createdAt_month=2026-01/part-00001.parquet": 1000}
    assert set(store.list("createdAt_month=")) == {
        "createdAt_month=2026-01/part-00001.parquet",
        "createdAt_month=2026-02/part-00002.parquet",
    }
    assert store.list("nothing/here/") == {}
    assert store.uri_of("a/b.parquet") == store.uri + "a/b.parquet"

    store.put_bytes("_manifest.json", b"{}")  # replaced whole
    assert store.get_bytes("_manifest.json") == b"{}"
    store.delete("createdAt_month=2026-02/part-00002.parquet")
    store.delete("never-there.parquet")
    assert set(store.list()) == {"_manifest.json", "createdAt_month=2026-01/part-00001.parquet"}
    assert hidden(store.list()) == [], "no temporary or probe is left"


def test_names_must_be_relative(store: Store) -> None:
    for name in ("", "/abs", "a//b", "../up", "a/./b"):
        with pytest.raises(ValueError, match="relative"):
            store.put_bytes(name, b"")


def test_open_store_picks_by_scheme(tmp_path: Path, s3_server: S3Server) -> None:
    assert is_object_url("S3://bucket/x")
    assert not is_object_url("s3/bucket")
    local = open_store(str(tmp_path))
    assert isinstance(local, LocalStore)
    assert local.local_root == tmp_path.resolve()
    assert local.uri == f"{tmp_path.resolve()}/"
    bucket = s3_server.bucket()
    remote = open_store(f"s3://{bucket}", s3_endpoint=s3_server.endpoint)
    assert isinstance(remote, S3Store)
    assert remote.local_root is None
    assert remote.uri == f"s3://{bucket}/"


# -- local -------------------------------------------------------------------------------------------


def test_local_refusals(tmp_path: Path) -> None:
    """A missing parent or a file in the way: one line naming the path and what to do."""
    with pytest.raises(UsageError, match=r"missing does not exist; create it first") as missing:
        open_store(str(tmp_path / "missing" / "out") + "/")
    one_line_without_secret(str(missing.value))
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="a file is in the way"):
        open_store(str(tmp_path / "file"))
    assert open_store(str(tmp_path / "new")).local_root == (tmp_path / "new").resolve()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_local_read_only_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    with pytest.raises(UsageError, match="fix its permissions"):
        open_store(str(folder))


@pytest.mark.skipif(
    not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat(tempfile.gettempdir()).st_dev,
    reason="needs a second filesystem",
)
def test_local_put_file_across_filesystems_copies_under_a_hidden_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From another filesystem the file is copied: a failure mid-copy leaves neither the target nor the
    hidden temporary; a complete copy appears under its name and the source stays."""
    store = open_store(str(tmp_path / "out"))
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        local = Path(other, "part.parquet")
        local.write_bytes(b"z" * 100_000)

        def broken(source: BinaryIO, target: BinaryIO, length: int = 0) -> None:
            target.write(source.read(10))
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(shutil, "copyfileobj", broken)
        with pytest.raises(ExportError, match="Input/output error"):
            store.put_file(local, "a/part.parquet")
        assert store.list() == {}
        monkeypatch.undo()
        store.put_file(local, "a/part.parquet")
        assert store.list() == {"a/part.parquet": 100_000}
        assert local.exists()


# -- S3 ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "endpoint", "expected"),
    [
        ("s3://", None, "not an S3 URL"),
        ("s3:///x", None, "not an S3 URL"),
        ("s3://bucket//x/", None, "empty, '.' or '..' part"),
        ("s3://bucket/", "127.0.0.1:9000", "not an endpoint URL"),
        ("s3://bucket/", "ftp://127.0.0.1", "not an endpoint URL"),
        ("s3://bucket/", f"http://user:{SECRET_KEY}@127.0.0.1:9000", "must not hold credentials"),
    ],
)
def test_malformed_urls_are_refused_without_a_request(url: str, endpoint: str | None, expected: str) -> None:
    with pytest.raises(UsageError, match=expected) as refused:
        open_store(url, s3_endpoint=endpoint)
    one_line_without_secret(str(refused.value))


def test_missing_bucket_and_unreachable_endpoint_are_refused(s3_server: S3Server) -> None:
    with pytest.raises(UsageError, match="the bucket 'no-such-bucket' does not exist at http") as missing:
        open_store("s3://no-such-bucket/x/", s3_endpoint=s3_server.endpoint)
    one_line_without_secret(str(missing.value))
    started = time.monotonic()
    with pytest.raises(UsageError, match=r"cannot reach S3 at http://127\.0\.0\.1:1 ") as unreachable:
        open_store(f"s3://{s3_server.bucket()}/x/", s3_endpoint="http://127.0.0.1:1")
    one_line_without_secret(str(unreachable.value))
    assert "--s3-endpoint" in str(unreachable.value)
    assert time.monotonic() - started < 10


def test_the_endpoint_comes_from_the_environment(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_server.bucket()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint)  # the S3-specific one wins
    open_store(f"s3://{bucket}/x/").put_bytes("a", b"1")
    assert s3_server.objects(bucket) == {"x/a": 1}


@pytest.fixture(scope="module")
def strict_s3() -> Iterator[str]:
    """A second moto server that checks credentials: the dummy ones are unknown to it."""
    port = free_port()
    process = start_moto(port, env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_refused_credentials_are_one_line_without_the_secret(s3_server: S3Server, strict_s3: str) -> None:
    with pytest.raises(UsageError, match="access denied") as refused:
        open_store("s3://bucket/x/", s3_endpoint=strict_s3)
    one_line_without_secret(str(refused.value))
    assert "AWS_ACCESS_KEY_ID" in str(refused.value)


def test_pyarrow_completes_an_upload_cut_short(s3_server: S3Server) -> None:
    """Why uploads go to a temporary key: a stream dropped after an error (as a `with` block or the
    garbage collector drops it) publishes what was written so far. If this fails, pyarrow learned to
    abort an upload, and the temporary key could go."""
    bucket = s3_server.bucket()
    out = s3_server.fs.open_output_stream(f"{bucket}/partial")
    out.write(b"half")
    del out  # no abort() to call
    assert s3_server.objects(bucket) == {"partial": 4}


def test_an_upload_cut_short_publishes_nothing(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read failure mid-upload: the earlier object stays whole under the name, no temporary key is left."""
    bucket = s3_server.bucket()
    store = open_store(f"s3://{bucket}/x/", s3_endpoint=s3_server.endpoint)
    store.put_bytes("orders.parquet", b"version 1")
    local = tmp_path / "orders.parquet"
    local.write_bytes(b"v" * 50_000)

    def broken(source: BinaryIO, target: BinaryIO, length: int = 0) -> None:
        target.write(source.read(1000))
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(shutil, "copyfileobj", broken)
    with pytest.raises(
        ExportError, match=rf"could not upload s3://{bucket}/x/orders\.parquet: .*Input/output"
    ):
        store.put_file(local, "orders.parquet")
    assert s3_server.read(bucket, "x/orders.parquet") == b"version 1"
    assert s3_server.objects(bucket) == {"x/orders.parquet": 9}
    assert hidden(s3_server.paths(bucket)) == []


class _MoveFails:
    """A filesystem whose move (the server-side copy into place) fails."""

    def __init__(self, fs: pafs.S3FileSystem) -> None:
        self._fs = fs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fs, name)

    def move(self, src: str, dest: str) -> None:
        raise OSError("AWS Error SLOW_DOWN during CopyObject operation: injected")


def test_a_failed_move_publishes_nothing(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.bucket()
    store = open_store(f"s3://{bucket}/x/", s3_endpoint=s3_server.endpoint)
    assert isinstance(store, S3Store)
    store.fs = _MoveFails(store.fs)  # type: ignore[assignment]
    local = tmp_path / "orders.jsonl"
    local.write_bytes(b"{}\n" * 10_000)
    with pytest.raises(ExportError, match="SLOW_DOWN during CopyObject"):
        store.put_file(local, "orders.jsonl")
    assert s3_server.objects(bucket) == {}
    assert hidden(s3_server.paths(bucket)) == []
    assert local.exists(), "the local file is left as it was"


def test_a_file_s3_cannot_copy_whole_is_refused_before_its_upload(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_server.bucket()
    store = open_store(f"s3://{bucket}/", s3_endpoint=s3_server.endpoint)
    monkeypatch.setattr(storage_module, "_COPY_LIMIT", 100)
    local = tmp_path / "big.parquet"
    local.write_bytes(b"b" * 101)
    with pytest.raises(ExportError, match=r"at most 5 GiB in one request.*export a dataset"):
        store.put_file(local, "big.parquet")
    assert s3_server.paths(bucket) == []


# -- exports to s3:// --------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
async def test_export_to_s3_is_exact(
    sandbox: Any, s3_server: S3Server, tmp_path: Path, staging: Path, suffix: str
) -> None:
    """Every order, read back from the object exactly; the staging folder is gone afterwards."""
    bucket = s3_server.bucket()
    url = f"s3://{bucket}/x/orders{suffix}"
    report = await export(export_config(sandbox, url, s3_endpoint=s3_server.endpoint, page_size=250))
    assert report["complete"]
    assert report["orders_written"] == ORDERS
    assert report["output"] == url
    assert set(s3_server.objects(bucket)) == {f"x/orders{suffix}"}
    got = s3_server.download(bucket, f"x/orders{suffix}", tmp_path / f"got{suffix}")
    assert_export_matches(got, suffix[1:], sandbox.expected_records())
    assert list(staging.iterdir()) == []


def test_the_staging_folder_and_checkpoint_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ORDERS_EXPORT_STAGING, else XDG_CACHE_HOME, else ~/.cache; one folder per URL and endpoint."""
    url = "s3://bucket/x/orders.parquet"
    first = staging_dir(url)
    assert first.parent == tmp_path / "staging"
    assert first.name.startswith("bucket-")
    assert staging_dir(url, "http://127.0.0.1:9000") != first
    assert staging_dir("s3://bucket/x/other.parquet") != first
    assert checkpoint_path_for(url) == first / ".orders.parquet.checkpoint.json"
    assert checkpoint_path_for(str(tmp_path / "o.csv")) == tmp_path / ".o.csv.checkpoint.json"
    assert checkpoint_path_for("-") is None
    monkeypatch.delenv("ORDERS_EXPORT_STAGING")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert staging_dir(url).parent == tmp_path / "cache" / "orders-export"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert staging_dir(url).parent == tmp_path / "home" / ".cache" / "orders-export"


def test_a_failed_upload_keeps_the_staged_file(s3_server: S3Server) -> None:
    """The bucket vanishes before the end: one line naming the cause and the complete file, kept."""
    bucket = s3_server.bucket()
    sink = ObjectSink(f"s3://{bucket}/orders.jsonl", s3_endpoint=s3_server.endpoint)
    sink.stream.write(b'{"id": "1"}\n')
    s3_server.fs.delete_dir(bucket)
    with pytest.raises(ExportError, match=r"NO_SUCH_BUCKET.*the complete file is kept at") as failed:
        sink.commit()
    one_line_without_secret(str(failed.value))
    kept = Path(str(failed.value).rpartition(" kept at ")[2])
    assert kept.read_bytes() == b'{"id": "1"}\n'
    sink.abort()  # as a failed export does: the partial file goes, the complete one stays
    assert [p.name for p in kept.parent.iterdir()] == ["orders.jsonl"]


def test_object_sink_needs_an_object_name(s3_server: S3Server) -> None:
    with pytest.raises(UsageError, match="name the object"):
        ObjectSink("s3://bucket", s3_endpoint=s3_server.endpoint)


# -- the command line --------------------------------------------------------------------------------


def run_cli(sb: Any, *args: str, **popen: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "export", "--no-progress", *args],
        env={
            **os.environ,
            "ORANGE_BASE_URL": sb.base_url,
            "ORANGE_CLIENT_ID": sb.client_id,
            "ORANGE_CLIENT_SECRET": sb.client_secret,
            "ORANGE_API_KEY": sb.api_key,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **popen,
    )


def test_cli_exports_to_s3(sandbox: Any, s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.bucket()
    result = run_cli(sandbox, "-o", f"s3://{bucket}/o.jsonl", "--s3-endpoint", s3_server.endpoint)
    assert result.returncode == 0, result.stderr
    assert SECRET_KEY not in result.stderr + result.stdout
    got = s3_server.download(bucket, "o.jsonl", tmp_path / "o.jsonl")
    assert [r["id"] for r in read_jsonl(got)] == sandbox.expected_ids()


def test_cli_refuses_a_missing_bucket_before_any_request(sandbox: Any, s3_server: S3Server) -> None:
    before = sandbox.stats()
    result = run_cli(sandbox, "-o", "s3://no-such-bucket/o.parquet", "--s3-endpoint", s3_server.endpoint)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "the bucket 'no-such-bucket' does not exist" in lines[0]
    assert SECRET_KEY not in result.stderr + result.stdout
    after = sandbox.stats()
    assert after["tokens_issued"] == before["tokens_issued"]
    assert after["data_requests"] == before["data_requests"]


def test_sigterm_then_resume_through_the_staging_folder(s3_server: S3Server, tmp_path: Path) -> None:
    """Stopped after a commit: nothing under the key, the partial file and checkpoint wait in the staging
    folder; --resume finishes the same object, equal to an uninterrupted export."""
    bucket = s3_server.bucket()
    url = f"s3://{bucket}/x/orders.jsonl"
    args = ["-o", url, "--s3-endpoint", s3_server.endpoint, "--page-size", "100", "--concurrency", "2", "-q"]
    with SandboxThread(SandboxConfig(orders=10_000, latency=0.05, seed=9)) as sb:
        checkpoint = checkpoint_path_for(url, s3_endpoint=s3_server.endpoint)
        assert checkpoint is not None
        env = {**os.environ, "ORANGE_CLIENT_SECRET": sb.client_secret, "ORANGE_API_KEY": sb.api_key}
        command = [sys.executable, "-m", "exporter", "export", "--no-progress", *args]
        command += ["--base-url", sb.base_url, "--client-id", sb.client_id]
        proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not checkpoint.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
        assert proc.returncode == 130, stderr
        assert "--resume" in stderr
        assert s3_server.objects(bucket) == {}
        resumed = subprocess.run(
            [*command, "--resume"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert resumed.returncode == 0, resumed.stderr
        got = s3_server.download(bucket, "x/orders.jsonl", tmp_path / "got.jsonl")
        assert [r["id"] for r in read_jsonl(got)] == sb.expected_ids()
    assert not checkpoint.exists()
    assert not checkpoint.parent.exists(), "the staging folder goes once the object is published"


def test_logs_hide_the_aws_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-key-value")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "aws-session-token-value")
    formatter = _RedactingFormatter("%(message)s", _secrets_of({}))
    record = logging.LogRecord(
        "s3", logging.INFO, __file__, 1, "aws-secret-key-value and aws-session-token-value", None, None
    )
    assert formatter.format(record) == "*** and ***"
