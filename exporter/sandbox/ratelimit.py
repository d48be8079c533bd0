"""A token bucket shared by every client: ``rate`` requests per second, up to ``burst`` at once."""

from __future__ import annotations

from collections.abc import Callable


class TokenBucket:
    """Grants a request when a token is in the bucket; otherwise says how long until one is."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def take(self) -> float:
        """0 if the request may go (and a token is spent), else the seconds until a token frees up."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self._rate

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self._rate}, burst={self._burst:g}, tokens={self._tokens:.2f})"
