"""Backoff and the shared rate limiter, with a fake clock: no real sleeps."""

from __future__ import annotations

from exporter.config import RetryPolicy
from exporter.errors import RequestRejected, ServerError
from exporter.ratelimit import RateLimiter
from exporter.retry import backoff_delay, should_retry
from tests.fakes import FakeClock


def test_backoff_grows_exponentially_with_full_jitter() -> None:
    """The ceiling doubles per failure up to max_delay; the jitter scales it."""
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    assert [backoff_delay(policy, n, 1.0) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert backoff_delay(policy, 3, 0.25) == 0.5
    assert backoff_delay(policy, 3, 0.0) == 0.0


def test_retry_after_overrides_the_backoff() -> None:
    """A server's Retry-After wins over the computed delay."""
    assert backoff_delay(RetryPolicy(max_delay=4.0), 1, 0.1, retry_after=7.0) == 7.0


def test_retries_stop_at_attempts_and_deadline_and_never_for_refusals() -> None:
    """Transient errors retry within attempts and deadline; a 400 never does."""
    policy = RetryPolicy(attempts=3, deadline=10.0)
    transient = ServerError("boom", status=503)
    assert should_retry(policy, transient, 2, 1.0, 1.0)
    assert not should_retry(policy, transient, 3, 1.0, 1.0)
    assert not should_retry(policy, transient, 1, 9.5, 1.0)
    assert not should_retry(policy, RequestRejected("bad sort", status=400), 1, 0.0, 0.0)


async def test_limiter_spaces_requests_at_the_rate() -> None:
    """Ten requests at 5/s take 1.8 s of schedule: one every 0.2 s."""
    clock = FakeClock()
    limiter = RateLimiter(5.0, clock=clock, sleep=clock.sleep)
    start = clock.now
    starts = []
    for _ in range(10):
        await limiter.acquire()
        starts.append(round(clock.now - start, 6))
    assert starts == [round(0.2 * i, 6) for i in range(10)]


async def test_limiter_burst_uses_only_idle_credit() -> None:
    """After idling, `burst` requests go at once, then the spacing resumes."""
    clock = FakeClock()
    limiter = RateLimiter(10.0, burst=3, clock=clock, sleep=clock.sleep)
    clock.now += 100
    t0 = clock.now
    for _ in range(3):
        await limiter.acquire()
    assert clock.now == t0
    await limiter.acquire()
    assert clock.now > t0


async def test_rate_limited_answer_pauses_everyone_for_retry_after() -> None:
    """After a 429 with Retry-After 2, the next request starts no sooner than 2 s later."""
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    t0 = clock.now
    limiter.on_rate_limited(2.0)
    await limiter.acquire()
    assert clock.now - t0 >= 2.0


async def test_rate_limited_without_retry_after_backs_off_exponentially() -> None:
    """Consecutive rate-limit events without Retry-After pause longer each time."""
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    first = limiter.on_rate_limited(None)
    await limiter.acquire()
    clock.now += 5  # past the event, still no success in between
    second = limiter.on_rate_limited(None)
    assert second > first


async def test_unknown_rate_is_learned_from_what_went_through() -> None:
    """With no --rate, a 429 after a steady 20 req/s sets the rate a little under 20."""
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    for _ in range(60):
        await limiter.acquire()
        limiter.on_success()
        clock.now += 0.05
    limiter.on_rate_limited(1.0)
    assert limiter.rate is not None
    assert 15.0 <= limiter.rate < 20.0


async def test_rate_recovers_gradually_up_to_the_ceiling() -> None:
    """After a slowdown the rate grows back, but never past --rate."""
    clock = FakeClock()
    limiter = RateLimiter(10.0, clock=clock, sleep=clock.sleep)
    for _ in range(30):
        await limiter.acquire()
        limiter.on_success()
    limiter.on_rate_limited(1.0)
    lowered = limiter.rate
    assert lowered is not None
    assert lowered < 10.0
    clock.now += 5
    await limiter.acquire()
    middle = limiter.rate
    assert middle is not None
    assert lowered < middle <= 10.0
    clock.now += 600
    await limiter.acquire()
    assert limiter.rate == 10.0


async def test_in_flight_answers_of_one_event_lower_the_rate_once() -> None:
    """Several 429s at the same moment are one event: the rate drops once."""
    clock = FakeClock()
    limiter = RateLimiter(10.0, clock=clock, sleep=clock.sleep)
    limiter.on_rate_limited(1.0)
    once = limiter.rate
    limiter.on_rate_limited(1.0)
    limiter.on_rate_limited(1.0)
    assert limiter.rate == once


def test_repr_shows_state_not_secrets() -> None:
    """The repr names the rate and the pause."""
    assert "rate=5.00/s" in repr(RateLimiter(5.0))


async def test_a_first_burst_is_not_taken_for_the_limit() -> None:
    """Refused right after a burst: the rate starts low but grows fast, since no sustained limit is known."""
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        await limiter.acquire()
        limiter.on_success()
        clock.now += 0.01
    limiter.on_rate_limited(1.0)
    start = limiter.rate
    assert start is not None
    clock.now += 4.0  # 1 s of pause, half a second for the answers in flight, then growth
    await limiter.acquire()
    assert limiter.rate is not None
    assert limiter.rate > 2 * start


async def test_once_a_sustained_limit_is_seen_the_rate_only_probes_above_it() -> None:
    """After a 429 at a steady 40/s, the rate sits near 90% of 40 and creeps up by about 1% a second."""
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    for _ in range(80):
        await limiter.acquire()
        limiter.on_success()
        clock.now += 0.025
    limiter.on_rate_limited(1.0)
    assert limiter.rate is not None
    assert 34.0 <= limiter.rate <= 38.0
    clock.now += 11.0
    await limiter.acquire()
    assert limiter.rate < 40.5
