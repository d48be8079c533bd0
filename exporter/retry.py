"""Backoff policy: how long to wait before the next try, and whether to try at all. Pure functions."""

from __future__ import annotations

from exporter.config import RetryPolicy
from exporter.errors import RetryableError


def backoff_delay(policy: RetryPolicy, failures: int, rand: float, retry_after: float | None = None) -> float:
    """Seconds to wait after the ``failures``-th failure (1-based): full jitter, ``rand`` in [0, 1).

    A server's ``Retry-After`` wins over the computed delay, within ``max_delay``'s reach of sanity."""
    if retry_after is not None:
        return min(retry_after, max(policy.max_delay, policy.deadline))
    ceiling: float = min(policy.max_delay, policy.base_delay * 2.0 ** max(0, failures - 1))
    return rand * ceiling


def should_retry(policy: RetryPolicy, error: Exception, failures: int, elapsed: float, delay: float) -> bool:
    """True when ``error`` is transient and the attempts and the deadline allow one more try after
    ``delay`` seconds."""
    if not isinstance(error, RetryableError):
        return False
    return failures < policy.attempts and elapsed + delay < policy.deadline
