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

# Where each public name lives: loaded from there on first use.
_HOMES = {
    "exporter.config": ("Credentials", "ExportConfig", "RetryPolicy", "Timeouts"),
    "exporter.errors": (
        "ApiError",
        "ApiKeyRefused",
        "BadResponse",
        "CredentialsRefused",
        "ExportError",
        "IncompleteExport",
        "Interrupted",
        "RateLimited",
        "RequestRejected",
        "RetryableError",
        "ServerError",
        "TransportError",
        "Unauthorized",
        "UsageError",
    ),
    "exporter.jobs": ("export", "open_orders"),
}
_HOME_OF = {name: home for home, names in _HOMES.items() for name in names}

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
    home = _HOME_OF.get(name)
    if home is None:
        raise AttributeError(f"module 'exporter' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
