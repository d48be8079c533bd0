"""What the sandbox has seen, for GET /_sandbox/stats and for tests: plain counters, no I/O."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stats:
    """Counters of the API calls (the stats endpoint itself is not counted)."""

    requests: int = 0  # every API call: token and data
    data_requests: int = 0  # calls to /ordering/...
    token_requests: int = 0
    tokens_issued: int = 0
    rate_limited: int = 0  # answers 429 or 403 code 53
    in_flight: int = 0
    max_in_flight: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)

    def started(self) -> None:
        """An API call came in."""
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def finished(self) -> None:
        """An API call is over, answered or not."""
        self.in_flight -= 1

    def as_json(self) -> dict[str, Any]:
        """The counters as a JSON-ready dict (status codes as string keys)."""
        return {
            "requests": self.requests,
            "data_requests": self.data_requests,
            "token_requests": self.token_requests,
            "tokens_issued": self.tokens_issued,
            "rate_limited": self.rate_limited,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "by_status": {str(status): n for status, n in sorted(self.by_status.items())},
            "faults": dict(sorted(self.faults.items())),
        }
