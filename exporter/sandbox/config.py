"""The sandbox's knobs: one frozen dataclass, checked once when it is built, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RateLimitStyle = Literal["429", "403"]
RetryAfterStyle = Literal["seconds", "date", "none"]
ResultCountStyle = Literal["correct", "wrong", "missing"]

RATE_LIMIT_STYLES: tuple[RateLimitStyle, ...] = ("429", "403")
RETRY_AFTER_STYLES: tuple[RetryAfterStyle, ...] = ("seconds", "date", "none")
RESULT_COUNT_STYLES: tuple[ResultCountStyle, ...] = ("correct", "wrong", "missing")

FAULT_RATE_FIELDS = ("fail_500", "fail_503", "fail_502_html", "drop_rate", "truncate_rate", "stall_rate")


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Everything the sandbox can be told. Times are in seconds, rates per second unless named otherwise.

    Fault rates are probabilities per data call; at most one fault hits a call, so they must sum to <= 1.
    ``None`` switches a limit off.
    """

    # The data: deterministic from (seed, orders).
    orders: int = 1_000
    seed: int = 7
    late_field_from: int | None = None  # orders from this index on carry the "satisfaction" field
    order_lines: int = 0  # each order carries this many objects in "orderLines" (about 120 bytes each)

    # Where and how fast it serves.
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port
    default_page_size: int = 50
    max_page_size: int = 1_000  # caps the default page size too
    latency: float = 0.0
    jitter: float = 0.0  # uniform 0..jitter added to latency

    # Credentials and tokens.
    client_id: str = "sandbox-client"
    client_secret: str = "sandbox-secret"
    api_key: str = "sandbox-key"
    token_lifetime: float = 3600.0
    revoke_every: float | None = None  # every N seconds, all tokens issued so far become invalid
    expires_in_string: bool = False
    token_rate_limit: float | None = None  # token requests per *minute* (the real one allows about 50)

    # The data calls' rate limit: one token bucket across all clients.
    rate_limit: float | None = None
    burst: int = 10
    rate_limit_style: RateLimitStyle = "429"
    retry_after: RetryAfterStyle = "seconds"

    # Faults.
    fail_500: float = 0.0
    fail_503: float = 0.0
    fail_502_html: float = 0.0
    drop_rate: float = 0.0
    truncate_rate: float = 0.0
    stall_rate: float = 0.0
    stall_seconds: float = 10.0

    # Headers that lie.
    result_count: ResultCountStyle = "correct"
    total_ignores_filters: bool = False

    # Drift: orders created and closed while the sandbox runs (from the first data call on).
    drift_create_per_s: float = 0.0
    drift_close_per_s: float = 0.0

    def __post_init__(self) -> None:
        problems = list(_problems(self))
        if problems:
            raise ValueError("invalid sandbox configuration: " + "; ".join(problems))


def _problems(cfg: SandboxConfig) -> list[str]:
    """Every reason ``cfg`` cannot work, as short phrases."""
    problems: list[str] = []

    def need(ok: bool, problem: str) -> None:
        if not ok:
            problems.append(problem)

    need(cfg.orders >= 0, "orders must be >= 0")
    need(cfg.late_field_from is None or cfg.late_field_from >= 0, "late_field_from must be >= 0")
    need(cfg.order_lines >= 0, "order_lines must be >= 0")
    need(0 <= cfg.port <= 65535, "port must be 0..65535")
    need(cfg.default_page_size >= 1, "default_page_size must be >= 1")
    need(cfg.max_page_size >= 1, "max_page_size must be >= 1")
    need(cfg.latency >= 0 and cfg.jitter >= 0, "latency and jitter must be >= 0")
    need(cfg.token_lifetime > 0, "token_lifetime must be > 0")
    need(cfg.revoke_every is None or cfg.revoke_every > 0, "revoke_every must be > 0")
    need(cfg.token_rate_limit is None or cfg.token_rate_limit > 0, "token_rate_limit must be > 0")
    need(cfg.rate_limit is None or cfg.rate_limit > 0, "rate_limit must be > 0")
    need(cfg.burst >= 1, "burst must be >= 1")
    need(cfg.rate_limit_style in RATE_LIMIT_STYLES, f"rate_limit_style must be one of {RATE_LIMIT_STYLES}")
    need(cfg.retry_after in RETRY_AFTER_STYLES, f"retry_after must be one of {RETRY_AFTER_STYLES}")
    need(cfg.result_count in RESULT_COUNT_STYLES, f"result_count must be one of {RESULT_COUNT_STYLES}")
    rates = [getattr(cfg, name) for name in FAULT_RATE_FIELDS]
    need(all(0 <= rate <= 1 for rate in rates), "fault rates must be within 0..1")
    need(sum(rates) <= 1 + 1e-9, "fault rates must sum to at most 1 (one fault per call at most)")
    need(cfg.stall_seconds >= 0, "stall_seconds must be >= 0")
    need(cfg.drift_create_per_s >= 0 and cfg.drift_close_per_s >= 0, "drift rates must be >= 0")
    return problems
