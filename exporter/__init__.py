"""orders-export: export every order of the Orange Business Ordering API v3, fast and exactly.

The public API::

    report = await export(ExportConfig(credentials=Credentials(...), base_url=..., output="orders.parquet"))

    async with open_orders(config) as orders:
        async for order in orders:
            ...

The names below are loaded on first use: importing the package itself loads nothing heavy, so that the
command (``exporter.__main__``) can take a Ctrl-C while aiohttp and the rest load and still end with one
line instead of a traceback.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exporter.config import Credentials, ExportConfig, RetryPolicy, Timeouts
    from exporter.errors import (
        ApiError,
        ApiKeyRefused,
        BadResponse,
        CredentialsRefused,
        ExportError,
        IncompleteExport,
        Interrupted,
        RateLimited,
        RequestRejected,
        RetryableError,
        ServerError,
        TransportError,
        Unauthorized,
        UsageError,
    )
    from exporter.jobs import export, open_orders

# Where the public names live, the lightest first: a name is loaded from the first of them that has it.
_HOMES = ("exporter.config", "exporter.errors", "exporter.jobs")

__all__ = [
    "ApiError",
    "ApiKeyRefused",
    "BadResponse",
    "Credentials",
    "CredentialsRefused",
    "ExportConfig",
    "ExportError",
    "IncompleteExport",
    "Interrupted",
    "RateLimited",
    "RequestRejected",
    "RetryPolicy",
    "RetryableError",
    "ServerError",
    "Timeouts",
    "TransportError",
    "Unauthorized",
    "UsageError",
    "export",
    "open_orders",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        for home in _HOMES:
            module = importlib.import_module(home)
            if hasattr(module, name):
                value = getattr(module, name)
                globals()[name] = value  # once loaded, a plain attribute
                return value
    raise AttributeError(f"module 'exporter' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
