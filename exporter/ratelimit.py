"""One rate limiter shared by every fetcher: a token bucket that also listens to the server.

Strategy: requests are *scheduled*, not counted. Each ``acquire()`` reserves the next free start time
(``_next``), ``1/rate`` after the previous one, so N fetchers together never exceed the rate, retries
included, and a burst can only use the credit left idle (``burst`` slots at most). When the server says
"slow down" (429 or 403 code 53) every fetcher pauses until its ``Retry-After`` (or an exponential
backoff when it gave none), and the rate drops to a little under what was really achieved just before:
that is the best estimate of the server's limit, known or not, and it is remembered. After that the
rate grows back quickly (x1.5 a quiet second) to 90% of that remembered limit, then only probes above it
(+1% a second), so an unknown limit is found in a few seconds and then costs few rate-limited answers.
After each pause the server's bucket is full again, and its burst goes through at once: what went
through before the first refusal, at full speed, is taken for that burst and not counted as rate when a
refusal comes within a second of a pause (counted, a burst of 20 on a 50/s limit looked like 400/s and
the rate came down a tenth per one-second pause); and a refusal once a pause is over is a new event,
however soon, since what was sent after the pause was already too much. The rate is never above
``--rate`` when one was given. When the rate changes, every waiting fetcher takes its turn
again at the new spacing (within ``_RECHECK``): turns reserved at a low rate would otherwise keep their
distant starts after the rate has grown. The clock and the sleep are injected so that tests move time by
hand (``tests/test_limiter_sim.py`` runs many fetchers against the sandbox's token bucket in virtual time).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Awaitable, Callable

import anyio

_ESTIMATE_WINDOW = 1.0  # seconds of successes used to estimate the achieved rate
_DECREASE = 0.9  # new rate = achieved rate x this, after a rate-limited answer
_FAST_GROWTH = 1.5  # rate factor per quiet second while well under the limit last seen (or none seen)
_PROBE_GROWTH = 1.01  # rate factor per quiet second once near it
_NEAR = 0.9  # "near": this share of the limit last seen
_TRUSTED_SPAN = 0.75  # seconds of successes before an achieved rate counts as the server's limit
_MIN_RATE = 0.2  # requests/s: never slower than one request every 5 s
_SETTLE = 0.1  # seconds after a pause during which answers still belong to the event that caused it
_RECHECK = 0.1  # seconds: a waiter looks at least this often whether the rate changed
_BACKOFF_BASE = 0.5  # seconds of pause for the first rate-limited answer without Retry-After
_BACKOFF_MAX = 30.0


class RateLimiter:
    """Spaces requests at ``rate`` per second (None: no limit until the server asks for one)."""

    def __init__(
        self,
        rate: float | None = None,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._ceiling = rate
        self._rate = rate
        self._burst = max(1, burst)
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._last_start = 0.0  # when the last request granted was allowed to start
        self._schedule = 0  # bumped at each change of rate: waiters then take their turns again
        self._paused_until = 0.0
        self._strikes = 0
        self._event_until = 0.0
        self._last_growth = 0.0
        self._limit_seen: float | None = None  # what got through when the server last said slow down
        self._successes: collections.deque[float] = collections.deque()
        # Since the last pause ended: its start and the successes counted after it; and the server's
        # burst as the first refusal showed it.
        self._period_start = 0.0
        self._period_first: float | None = None  # when its first success came back
        self._period_successes = 0
        self._burst_seen: int | None = None

    @property
    def rate(self) -> float | None:
        """The rate in force now, in requests per second (None: unlimited)."""
        return self._rate

    def __repr__(self) -> str:
        rate = "unlimited" if self._rate is None else f"{self._rate:.2f}/s"
        paused = max(0.0, self._paused_until - self._clock())
        return (
            f"<RateLimiter rate={rate} ceiling={self._ceiling} paused={paused:.2f}s strikes={self._strikes}>"
        )

    async def acquire(self) -> None:
        """Wait for this request's turn."""
        while True:
            now = self._clock()
            self._grow(now)
            start = max(now, self._paused_until)
            if self._rate is not None:
                interval = 1.0 / self._rate
                # Credit left idle counts for at most `burst` requests; none is saved up over a pause.
                slot = max(self._next, now - (self._burst - 1) * interval, self._paused_until)
                self._next = slot + interval
                start = max(start, slot)
            if start > now and not await self._wait_until(start):
                continue  # the rate changed meanwhile: this turn was given at the old one
            if self._clock() >= self._paused_until:  # or a pause was decided while we waited
                self._last_start = start
                return

    async def _wait_until(self, start: float) -> bool:
        """Sleep until ``start``; False as soon as the rate changes (at most ``_RECHECK`` late): turns
        reserved at a low rate must not keep their distant starts once the rate has grown."""
        schedule = self._schedule
        remaining = start - self._clock()
        while remaining > 0:
            # Through a pause in one sleep; past it, in steps short enough to notice a change of rate.
            step = min(remaining, max(_RECHECK, self._paused_until - self._clock()))
            await self._sleep(step)
            remaining -= step
            if self._schedule != schedule:
                return False
        return True

    def _new_rate(self, rate: float) -> None:
        """Change the rate; every turn reserved so far is reserved again, at the new spacing."""
        if rate == self._rate:
            return
        self._rate = rate
        self._schedule += 1
        self._next = self._last_start + 1.0 / rate

    def on_success(self) -> None:
        """A request went through: remember it for the rate estimate."""
        now = self._clock()
        self._successes.append(now)
        if now >= self._period_start:
            self._period_successes += 1
            if self._period_first is None:
                self._period_first = now
        while self._successes and self._successes[0] < now - _ESTIMATE_WINDOW:
            self._successes.popleft()
        if now >= self._event_until:
            self._strikes = 0

    def on_rate_limited(self, retry_after: float | None) -> float:
        """The server said slow down. Pause everyone and lower the rate; return the pause in seconds."""
        now = self._clock()
        if retry_after is None:
            pause = min(_BACKOFF_MAX, _BACKOFF_BASE * 2.0**self._strikes)
        else:
            pause = min(retry_after, 3600.0)
        # Answers to requests already in flight belong to the same event: lower the rate once for all. A
        # refusal once the pause is over is news, though: what was sent after it was already too much.
        new_event = now >= self._event_until or (self._period_start <= now and self._burst_seen is not None)
        self._paused_until = max(self._paused_until, now + pause)
        if new_event:
            self._strikes += 1
            achieved, span = self._achieved(now)
            if self._burst_seen is None:
                # Sent at full speed (no rate yet), everything before the first refusal was the burst; at
                # a given rate the server's bucket was never emptied at once.
                self._burst_seen = self._period_successes if self._rate is None else 0
            elif self._period_first is not None and now - self._period_first < _ESTIMATE_WINDOW:
                # The window holds the start of this period, when the server's bucket was full again: its
                # burst went through at once and would pass for rate. Count what came after it, over the
                # time since the first answer of the period (its requests left when the pause ended).
                beyond = self._period_successes - self._burst_seen
                achieved = beyond / max(now - self._period_first, 1e-3) if beyond > 0 else 0.0
            self._period_start = self._paused_until
            self._period_first = None
            self._period_successes = 0
            if self._rate is None and achieved <= 0:
                # Too little went through to measure a rate (a server that allows no burst): what did go
                # through, spread over the pause, is a start; without one the next burst is refused too.
                achieved = max(_MIN_RATE, len(self._successes) / max(pause, 1.0))
            if self._rate is not None or achieved > 0:
                current = self._rate if self._rate is not None else achieved
                target = min(current, achieved) if achieved > 0 else current * _DECREASE
                if span >= _TRUSTED_SPAN or self._rate is not None:
                    # A first burst says little of a sustained limit: only then is it remembered.
                    self._limit_seen = target
                self._new_rate(max(_MIN_RATE, target * _DECREASE))
            spacing = 2.0 / self._rate if self._rate is not None else 0.0
            self._event_until = self._paused_until + max(_SETTLE, spacing)
            self._last_growth = self._event_until
        return pause

    def _achieved(self, now: float) -> tuple[float, float]:
        """Requests/s that went through lately, and over how many seconds that was seen."""
        recent = [t for t in self._successes if t >= now - _ESTIMATE_WINDOW]
        if len(recent) < 2:
            return 0.0, 0.0
        # Successes at once (a burst) span nothing: count them over at least the time the pace in force,
        # or one second shared among them when there is none, would have taken.
        floor = 1.0 / len(recent) if self._rate is None else (len(recent) - 1) / self._rate
        span = max(now - recent[0], floor)
        return len(recent) / span, now - recent[0]

    def _grow(self, now: float) -> None:
        if self._rate is None or now < self._event_until or now - self._last_growth < 0.1:
            return
        seconds = min(now - self._last_growth, 60.0)  # a long idle spell must not overflow the power
        self._last_growth = now
        near = _NEAR * self._limit_seen if self._limit_seen is not None else None
        grown: float
        if near is None or self._rate < near:
            grown = self._rate * _FAST_GROWTH**seconds
            if near is not None:
                grown = min(grown, near)
        else:
            grown = self._rate * _PROBE_GROWTH**seconds
        self._new_rate(grown if self._ceiling is None else min(self._ceiling, grown))
