"""The command line, run as a user runs it (a subprocess), against a sandbox in a background thread."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from exporter.sandbox import SandboxConfig, SandboxThread
from tests.readback import read_jsonl

SECRET = "cl1ent-s3cret-do-not-show"
API_KEY = "ap1-key-do-not-show"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    with SandboxThread(SandboxConfig(orders=2_000, client_secret=SECRET, api_key=API_KEY)) as sb:
        yield sb


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def creds(sb: Any, **changes: str) -> dict[str, str]:
    env = {
        "ORANGE_BASE_URL": sb.base_url,
        "ORANGE_CLIENT_ID": sb.client_id,
        "ORANGE_CLIENT_SECRET": SECRET,
        "ORANGE_API_KEY": API_KEY,
    }
    env.update(changes)
    return env


def assert_one_clean_line(result: subprocess.CompletedProcess[str]) -> None:
    """One line on stderr, no traceback, no secret anywhere."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for secret in (SECRET, API_KEY):
        assert secret not in result.stderr + result.stdout


def test_export_writes_the_file_and_a_report(sandbox: Any, tmp_path: Path) -> None:
    """`export -o FILE --report R` exits 0, writes every order and a JSON report."""
    out, report = tmp_path / "o.jsonl", tmp_path / "report.json"
    result = run_cli(
        "export", "-o", str(out), "--report", str(report), "--page-size", "300", env=creds(sandbox)
    )
    assert result.returncode == 0, result.stderr
    assert [r["id"] for r in read_jsonl(out)] == sandbox.expected_ids()
    data = orjson.loads(report.read_bytes())
    assert data["complete"] is True
    assert data["orders_written"] == 2_000
    for key in (
        "duplicates_dropped",
        "total_first",
        "total_last",
        "pages",
        "requests",
        "retries",
        "rate_limited",
        "wall_seconds",
        "orders_per_second",
        "output",
        "format",
    ):
        assert key in data
    assert "2,000 orders" in result.stderr


def test_stdout_streams_jsonl(sandbox: Any) -> None:
    """`-o -` writes JSONL to stdout, nothing else."""
    result = run_cli("export", "-o", "-", "-q", env=creds(sandbox))
    assert result.returncode == 0, result.stderr
    ids = [orjson.loads(line)["id"] for line in result.stdout.splitlines()]
    assert ids == sandbox.expected_ids()


def test_wrong_client_secret_exits_3(sandbox: Any, tmp_path: Path) -> None:
    """A refused client secret: exit 3, one line that says so, no secret."""
    result = run_cli(
        "export", "-o", str(tmp_path / "o.csv"), env=creds(sandbox, ORANGE_CLIENT_SECRET="nope-wrong")
    )
    assert result.returncode == 3
    assert "client id/secret" in result.stderr
    assert "nope-wrong" not in result.stderr
    assert_one_clean_line(result)
    assert not (tmp_path / "o.csv").exists()


def test_wrong_api_key_exits_3(sandbox: Any, tmp_path: Path) -> None:
    """A refused API key: exit 3, one line naming the key and the request id."""
    result = run_cli(
        "export", "-o", str(tmp_path / "o.csv"), env=creds(sandbox, ORANGE_API_KEY="bad-key-xyz")
    )
    assert result.returncode == 3
    assert "API key" in result.stderr
    assert "request id" in result.stderr
    assert "bad-key-xyz" not in result.stderr
    assert_one_clean_line(result)


def test_unknown_sort_field_exits_4_with_the_api_message(sandbox: Any, tmp_path: Path) -> None:
    """400 code 28 for an unknown sort field: exit 4 showing the API's own message."""
    result = run_cli("export", "-o", str(tmp_path / "o.jsonl"), "--sort", "noSuchField", env=creds(sandbox))
    assert result.returncode == 4
    assert "noSuchField" in result.stderr
    assert "code 28" in result.stderr
    assert_one_clean_line(result)


def test_unwritable_output_exits_2_before_any_request(sandbox: Any, tmp_path: Path) -> None:
    """An output in a missing folder: exit 2, and the API never heard of it."""
    before = sandbox.stats()
    result = run_cli("export", "-o", str(tmp_path / "missing" / "o.parquet"), env=creds(sandbox))
    assert result.returncode == 2
    assert "does not exist" in result.stderr
    assert_one_clean_line(result)
    after = sandbox.stats()
    assert after["tokens_issued"] == before["tokens_issued"]
    assert after["data_requests"] == before["data_requests"]


def test_unwritable_report_exits_2_before_any_request(sandbox: Any, tmp_path: Path) -> None:
    """A --report in a missing folder: exit 2 before any request, and no output file appears (it used to
    export everything, put the file in place, then fail with exit 5 on the report)."""
    out = tmp_path / "o.jsonl"
    before = sandbox.stats()
    result = run_cli(
        "export", "-o", str(out), "--report", str(tmp_path / "missing" / "r.json"), env=creds(sandbox)
    )
    assert result.returncode == 2
    assert "report" in result.stderr
    assert "does not exist" in result.stderr
    assert_one_clean_line(result)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    after = sandbox.stats()
    assert after["tokens_issued"] == before["tokens_issued"]
    assert after["data_requests"] == before["data_requests"]


def test_missing_credentials_exit_2(sandbox: Any, tmp_path: Path) -> None:
    """No API key anywhere: exit 2 naming the variable to set."""
    env = creds(sandbox)
    env.pop("ORANGE_API_KEY")
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "export", "-o", str(tmp_path / "o.jsonl")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in {**os.environ, **env}.items() if k != "ORANGE_API_KEY"},
    )
    assert result.returncode == 2
    assert "ORANGE_API_KEY" in result.stderr


def test_no_secret_at_verbose_level_even_through_failures(tmp_path: Path) -> None:
    """-vv through retries and a final failure: neither secret nor token in any output or file."""
    cfg = SandboxConfig(
        orders=1_500, client_secret=SECRET, api_key=API_KEY, fail_500=0.2, revoke_every=0.3, latency=0.02
    )
    with SandboxThread(cfg) as sb:
        report = tmp_path / "r.json"
        ok = run_cli(
            "export",
            "-vv",
            "-o",
            str(tmp_path / "o.csv"),
            "--report",
            str(report),
            "--page-size",
            "100",
            env=creds(sb),
        )
        bad = run_cli("export", "-vv", "-o", str(tmp_path / "p.csv"), "--sort", "nope", env=creds(sb))
        secret_file = tmp_path / "secret.txt"
        secret_file.write_text(SECRET)
        filed = run_cli(
            "export",
            "-vv",
            "-o",
            str(tmp_path / "q.jsonl"),
            "--client-secret-file",
            str(secret_file),
            env={**creds(sb), "ORANGE_CLIENT_SECRET": ""},
        )
        refused = [
            run_cli(
                "export",
                "-vv",
                "-o",
                str(tmp_path / "r.csv"),
                env=creds(sb, ORANGE_CLIENT_SECRET=SECRET + "x"),
            ),
            run_cli(
                "export", "-vv", "-o", str(tmp_path / "s.csv"), env=creds(sb, ORANGE_API_KEY=API_KEY + "x")
            ),
        ]
        tokens = sb.issued_tokens()
    assert [r.returncode for r in refused] == [3, 3]
    assert len(tokens) >= 3, "tokens were issued, renewed after revocations"
    assert ok.returncode == 0, ok.stderr
    assert "retrying" in ok.stderr
    assert bad.returncode == 4
    assert filed.returncode == 0, filed.stderr
    texts = [ok.stdout, ok.stderr, bad.stdout, bad.stderr, filed.stderr, report.read_text()]
    texts += [r.stdout + r.stderr for r in refused]
    texts += [p.read_text(encoding="utf-8") for p in tmp_path.iterdir() if p.suffix in (".csv", ".jsonl")]
    for text in texts:
        assert SECRET not in text
        assert API_KEY not in text
        assert "Bearer " not in text
        assert not [token for token in tokens if token in text]


def test_count_prints_total_pages_and_time_at_rate(sandbox: Any) -> None:
    """`count --rate 10 --json`: total, real page size, pages and seconds at that rate."""
    result = run_cli("count", "--json", "--rate", "10", "--page-size", "300", env=creds(sandbox))
    assert result.returncode == 0, result.stderr
    figures = orjson.loads(result.stdout)
    assert figures["total"] == 2_000
    assert figures["pages"] == 7
    assert figures["seconds_at_rate"] == pytest.approx(0.7)


def test_get_prints_detail_records_and_flags_unknown_ids(sandbox: Any) -> None:
    """`get ID...`: one JSON line per known order, exit 4 naming the unknown one."""
    ids = sandbox.expected_ids()[:2]
    result = run_cli("get", *ids, "3-99999999", env=creds(sandbox))
    assert result.returncode == 4
    records = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in records] == ids
    assert records[0] == sandbox.detail(ids[0])
    assert "3-99999999" in result.stderr


def test_demo_exports_the_sandbox_to_parquet(tmp_path: Path) -> None:
    """`demo` starts the sandbox, exports to Parquet and prints the summary."""
    out = tmp_path / "demo.parquet"
    result = run_cli("demo", "--orders", "3000", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "3,000 orders" in result.stderr
    assert "complete" in result.stderr
    assert out.stat().st_size > 0


@pytest.mark.parametrize(
    "args",
    [
        ["export", "-o", "x.jsonl", "--page-size", "0"],
        ["export"],
        ["nosuch"],
        ["export", "-o", "x.txt", "-q"],
        ["export", "-o", "x.jsonl", "--sort", "createdAt,,id"],
        ["export", "-o", "x.jsonl", "--sort", "--createdAt"],
        ["export", "-o", "x.jsonl", "--sort=-"],
        ["count", "--sort", "created At"],
    ],
)
def test_bad_usage_is_one_line_and_exit_2(sandbox: Any, args: list[str], tmp_path: Path) -> None:
    """A bad option, a missing one, an unknown command, an unknown suffix: exit 2, one line on stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env={**os.environ, **creds(sandbox)},
    )
    assert result.returncode == 2
    assert_one_clean_line(result)


def test_log_lines_and_tracebacks_are_redacted() -> None:
    """The log formatter removes the secrets from messages and from the tracebacks it prints."""
    import logging

    from exporter.cli import _RedactingFormatter

    formatter = _RedactingFormatter("%(message)s", [SECRET, API_KEY])
    try:
        raise ValueError(f"boom {API_KEY}")
    except ValueError:
        import sys as _sys

        record = logging.LogRecord("t", logging.DEBUG, __file__, 1, "key=%s", (SECRET,), _sys.exc_info())
    text = formatter.format(record)
    assert "ValueError" in text
    assert SECRET not in text
    assert API_KEY not in text


# Ctrl-C (or SIGTERM) while the command still loads its modules, delivered by the process to itself when
# the import reaches aiohttp: deterministic, unlike a signal sent after a guessed delay.
_SIGNAL_WHILE_LOADING = """
import signal, sys

number = getattr(signal, sys.argv[1])

class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == "aiohttp":
            signal.raise_signal(number)
        return None

sys.meta_path.insert(0, Interrupt())
from exporter.__main__ import main
sys.argv[1:] = ["count"]
main()
"""


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_a_signal_while_the_command_loads_ends_in_one_line(signal_name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _SIGNAL_WHILE_LOADING, signal_name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 130, result.stderr
    assert_one_clean_line(result)
    assert "interrupted" in result.stderr


def test_importing_the_package_loads_nothing_heavy() -> None:
    # What lets the command above catch a Ctrl-C while it loads; the public names still resolve.
    code = """
import sys
import exporter
roots = {"aiohttp", "anyio", "click", "pyarrow"}
heavy = sorted(name for name in sys.modules if name.split(".")[0] in roots or name == "exporter.jobs")
from exporter import ExportConfig, IncompleteExport, export
import exporter.jobs
assert exporter.export is exporter.jobs.export and callable(export), exporter.export
assert set(exporter.__all__) <= set(dir(exporter))
try:
    exporter.no_such_name
except AttributeError:
    print(heavy)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stderr
