"""orders-export: export every order of the Orange Business Ordering API v3, fast and exactly.

The public API::

    report = await export(ExportConfig(credentials=Credentials(...), base_url=..., output="orders.parquet"))

    async with open_orders(config) as orders:
        async for order in orders:
            ...
"""

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
from exporter.export import export, open_orders

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
