"""The sandbox: an aiohttp.web simulator of the Ordering API v3 with deterministic data and fault and drift
knobs, for the exporter's tests, its demo and benchmarks, and its users' rehearsals."""

from __future__ import annotations

from exporter.sandbox.config import SandboxConfig
from exporter.sandbox.query import QueryError
from exporter.sandbox.server import Sandbox, SandboxThread, run_sandbox

__all__ = ["QueryError", "Sandbox", "SandboxConfig", "SandboxThread", "run_sandbox"]
