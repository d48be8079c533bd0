"""Shared fixtures: a sandbox config builder and the export config that points at a sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exporter import responses
from exporter.config import Credentials, ExportConfig, RetryPolicy, Timeouts
from tests.s3server import s3_server  # noqa: F401 -- the fixture, for every test module

FORMATS = ("jsonl", "csv", "parquet")
SUFFIX = {"jsonl": ".jsonl", "csv": ".csv", "parquet": ".parquet"}


def export_config(sandbox: Any, output: Path | str, **overrides: Any) -> ExportConfig:
    """An ExportConfig aimed at ``sandbox``, with test-friendly timeouts."""
    settings: dict[str, Any] = {
        "credentials": Credentials(sandbox.client_id, sandbox.client_secret, sandbox.api_key),
        "base_url": sandbox.base_url,
        "output": str(output),
        "timeouts": Timeouts(connect=2.0, read=5.0, total=15.0),
        "retry": RetryPolicy(attempts=10, deadline=60.0, base_delay=0.05, max_delay=1.0),
    }
    settings.update(overrides)
    return ExportConfig(**settings)


@pytest.fixture
def simd_pages(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many orders each page simdjson decoded held (``responses._simd_lines``, spied on)."""
    decoded: list[int] = []
    real = responses._simd_lines

    def spy(body: bytes) -> tuple[list[bytes], list[Any]] | None:
        found = real(body)
        if found is not None:
            decoded.append(len(found[0]))
        return found

    monkeypatch.setattr(responses, "_simd_lines", spy)
    return decoded
