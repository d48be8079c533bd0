"""Drift: orders created and closed at steady rates while the sandbox runs, as a function of time.

Strategy: no background task. Drift starts with the first data call; before every answer and every
ground-truth read, ``catch_up(now)`` makes and closes whatever was due by ``now``. The outside world sees
the same thing as with a ticking task (every call sees all that was due), runs are deterministic for a
given sequence of calls, and each created order is stamped with the time it was due, not the time it was
noticed, so "did this order exist at time t" has an exact answer.
"""

from __future__ import annotations

import random

from exporter.sandbox.config import SandboxConfig
from exporter.sandbox.store import OrderStore


class Drift:
    """Creates ``create_per_s`` orders and closes ``close_per_s`` random open orders per second."""

    def __init__(self, cfg: SandboxConfig, store: OrderStore) -> None:
        self._create_per_s = cfg.drift_create_per_s
        self._close_per_s = cfg.drift_close_per_s
        self._store = store
        self._rng = random.Random(f"{cfg.seed}:drift")
        self.started_at: float | None = None
        self._created = 0
        self._closed = 0

    def start(self, now: float) -> None:
        """Start the clock of the drift (once: later calls do nothing)."""
        if self.started_at is None:
            self.started_at = now

    def catch_up(self, now: float) -> None:
        """Make and close every order that was due by ``now``."""
        if self.started_at is None:
            return
        elapsed = now - self.started_at
        while self._created < int(elapsed * self._create_per_s):
            self._created += 1
            self._store.create(self.started_at + self._created / self._create_per_s)
        while self._closed < int(elapsed * self._close_per_s):
            index = self._store.pick_open(self._rng)
            if index is None:
                break  # nothing left to close
            self._closed += 1
            self._store.close(index)
