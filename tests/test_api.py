"""The Python API: export() returns the report; open_orders() yields every order in API order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter import ExportConfig, IncompleteExport, open_orders
from exporter.sandbox import Sandbox, SandboxConfig
from tests.conftest import export_config


async def test_open_orders_yields_every_order_in_api_order(tmp_path: Path) -> None:
    """Iterating open_orders() gives the sandbox's records, exactly and in order, with no file written."""
    async with Sandbox(SandboxConfig(orders=3_000, seed=4)) as sb:
        async with open_orders(export_config(sb, tmp_path / "unused.jsonl", page_size=200)) as orders:
            got = [order async for order in orders]
        expected = sb.expected_records(sort=None)
    assert got == expected
    assert not list(tmp_path.iterdir())


async def test_leaving_open_orders_early_stops_the_export(tmp_path: Path) -> None:
    """Breaking out after 10 orders ends the block promptly, without an error."""
    async with Sandbox(SandboxConfig(orders=20_000, latency=0.01)) as sb:
        async with open_orders(export_config(sb, tmp_path / "o.jsonl", page_size=100)) as orders:
            taken = []
            async for order in orders:
                taken.append(order["id"])
                if len(taken) == 10:
                    break
        requests = sb.stats()["data_requests"]
        first_ten = sb.expected_ids()[:10]
    assert taken == first_ten
    assert requests < 200, "the export did not run on to the end"


async def test_open_orders_raises_when_it_cannot_prove_completeness(tmp_path: Path) -> None:
    """Errors reach the caller as ExportErrors, not as task-group wrappers."""
    async with Sandbox(SandboxConfig(orders=500, fail_503=1.0)) as sb:
        config = export_config(sb, tmp_path / "o.jsonl")
        config = type(config)(**{**config.__dict__, "retry": type(config.retry)(attempts=2, base_delay=0.01)})
        with pytest.raises(IncompleteExport):
            await drain(config)


async def drain(config: ExportConfig) -> int:
    count = 0
    async with open_orders(config) as orders:
        async for _ in orders:
            count += 1
    return count


def test_jsonl_and_csv_exports_do_not_load_pyarrow(tmp_path: Path) -> None:
    """pyarrow costs about 40 MB of RSS: only Parquet, datasets and object storage may load it."""
    code = """
import sys, anyio
from exporter import Credentials, ExportConfig, export
from exporter.sandbox import SandboxConfig, SandboxThread
with SandboxThread(SandboxConfig(orders=2_000)) as sb:
    for name in ("o.jsonl", "o.csv"):
        credentials = Credentials(sb.client_id, sb.client_secret, sb.api_key)
        config = ExportConfig(credentials=credentials, base_url=sb.base_url, output=sys.argv[1] + "/" + name)
        assert anyio.run(export, config)["complete"]
print(sorted(name for name in sys.modules if name.startswith("pyarrow")))
"""
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
