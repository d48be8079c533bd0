"""What every benchmark needs: a sandbox in its own process, child processes measured for wall time and
peak RSS, and the RESULTS.md section writer."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
CLIENT = ("sandbox-client", "sandbox-secret", "sandbox-key")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Sandbox:
    base_url: str

    def stats(self) -> dict[str, object]:
        with urllib.request.urlopen(self.base_url + "/_sandbox/stats", timeout=10) as resp:
            return orjson.loads(resp.read())  # type: ignore[no-any-return]


@contextlib.contextmanager
def sandbox_process(*options: str, cpu: int | None = 0) -> Iterator[Sandbox]:
    """``orders-export sandbox`` in its own process (pinned to ``cpu`` where possible)."""
    port = free_port()
    cmd = [sys.executable, "-m", "exporter", "sandbox", "--port", str(port), *options]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(proc.pid, {cpu})
    sandbox = Sandbox(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                sandbox.stats()
                break
            except OSError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    why = proc.stderr.read() if proc.stderr else ""
                    raise RuntimeError(f"the sandbox did not start: {why}") from exc
                time.sleep(0.1)
        yield sandbox
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class Measured:
    wall: float
    peak_rss_mb: float
    returncode: int
    stderr: str
    stdout: str


def measure(cmd: list[str], env: dict[str, str] | None = None, cpus: set[int] | None = None) -> Measured:
    """Run ``cmd`` to its end (on ``cpus`` where given); its wall time, peak RSS (from wait4's rusage, in
    MB) and output."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, **(env or {})})
        if cpus is not None and hasattr(os, "sched_setaffinity"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(proc.pid, cpus)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(
            wall,
            usage.ru_maxrss / 1024,
            proc.returncode,
            err.read().decode("utf-8", "replace"),
            out.read().decode(),
        )


def credentials_env(sandbox: Sandbox) -> dict[str, str]:
    client_id, secret, key = CLIENT
    return {
        "ORANGE_BASE_URL": sandbox.base_url,
        "ORANGE_CLIENT_ID": client_id,
        "ORANGE_CLIENT_SECRET": secret,
        "ORANGE_API_KEY": key,
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()}"


def write_section(name: str, body: str) -> None:
    """Replace (or add) the section between ``<!-- name -->`` markers in RESULTS.md."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    )
    RESULTS.write_text(text, encoding="utf-8")
