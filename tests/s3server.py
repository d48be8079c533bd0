"""A real S3-compatible server for the tests: moto's standalone server in a subprocess (its own process, so
it does not share the GIL with the exporter), one per session, on a free port of 127.0.0.1.

``s3_server`` also sets dummy AWS credentials and the region for the session (and clears any endpoint or
profile of the environment), so pyarrow and the exporter's subprocesses all talk to it alone.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.fs as pafs
import pytest

ACCESS_KEY = "testing"
SECRET_KEY = "testing-secret-value"
_ENV = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1"}
_CLEARED = (
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)


@dataclass
class S3Server:
    """A running moto server: its endpoint, and helpers to make buckets and look at what they hold."""

    endpoint: str
    fs: pafs.S3FileSystem
    _names: Iterator[int] = field(default_factory=itertools.count)

    def bucket(self) -> str:
        """A new, empty bucket."""
        name = f"test-{os.getpid()}-{next(self._names)}"
        self.fs.create_dir(name)
        return name

    def objects(self, bucket: str) -> dict[str, int]:
        """Every object of ``bucket``, key -> size; directory markers (``folder/``) left out."""
        infos = self.fs.get_file_info(pafs.FileSelector(bucket, recursive=True))
        return {i.path.split("/", 1)[1]: i.size for i in infos if i.type == pafs.FileType.File}

    def paths(self, bucket: str) -> list[str]:
        """Every key of ``bucket``, markers and folders included, for checks that nothing else is there."""
        infos = self.fs.get_file_info(pafs.FileSelector(bucket, recursive=True))
        return sorted(i.path.split("/", 1)[1] for i in infos)

    def read(self, bucket: str, key: str) -> bytes:
        with self.fs.open_input_stream(f"{bucket}/{key}") as source:
            data: bytes = source.read()
            return data

    def download(self, bucket: str, key: str, path: Path) -> Path:
        path.write_bytes(self.read(bucket, key))
        return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_moto(port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """moto's server on 127.0.0.1:``port``, once it answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1):
                return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"moto's server did not start on port {port}") from None
            time.sleep(0.05)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with pytest.MonkeyPatch.context() as mp:
        for name in _CLEARED:
            mp.delenv(name, raising=False)
        for name, value in _ENV.items():
            mp.setenv(name, value)
        port = free_port()
        process = start_moto(port)
        try:
            fs = pafs.S3FileSystem(
                endpoint_override=f"127.0.0.1:{port}",
                scheme="http",
                allow_bucket_creation=True,
                allow_bucket_deletion=True,
            )
            yield S3Server(f"http://127.0.0.1:{port}", fs)
        finally:
            process.terminate()
            process.wait(timeout=10)
