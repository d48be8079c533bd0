"""The sandbox's pure parts, with fake clocks: config checks, query parsing, the token bucket, token
expiry and revocation, drift's arithmetic, data determinism."""

from __future__ import annotations

import random

import orjson
import pytest

from exporter.sandbox import QueryError, SandboxConfig
from exporter.sandbox.answers import retry_after
from exporter.sandbox.data import OrderFactory, id_of, index_of
from exporter.sandbox.drift import Drift
from exporter.sandbox.query import SortField, parse_page, parse_selection, sort_key, sorted_positions
from exporter.sandbox.ratelimit import TokenBucket
from exporter.sandbox.store import OrderStore
from exporter.sandbox.tokens import TokenIssuer, TokenState


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    "knobs",
    [
        {"fail_500": 0.6, "fail_503": 0.6},
        {"max_page_size": 0},
        {"orders": -1},
        {"drop_rate": 1.5},
        {"rate_limit_style": "418"},
        {"rate_limit": 0},
    ],
)
def test_config_refuses_what_cannot_work(knobs: dict[str, object]) -> None:
    """Contradictory or out-of-range knobs raise ValueError when the config is built."""
    with pytest.raises(ValueError, match="invalid sandbox configuration"):
        SandboxConfig(**knobs)  # type: ignore[arg-type]


def test_parse_page_defaults_caps_and_refuses() -> None:
    """Absent offset is 0, absent limit the default, a large limit the maximum; junk raises QueryError."""
    assert parse_page(None, None, 20, 100) == (0, 20)
    assert parse_page("5", "500", 20, 100) == (5, 100)
    for offset, limit in [("-1", None), (None, "0"), ("1e3", None), (None, " 5"), ("٣", None)]:
        with pytest.raises(QueryError):
            parse_page(offset, limit, 20, 100)


def test_parse_selection_reads_directions_and_dotted_names() -> None:
    """ "-a,b.c" is a descending a then an ascending nested b.c; filters are normalised."""
    known = frozenset({"a", "b.c", "d"})
    selection = parse_selection("-a, b.c", [("d", "x"), ("b.c", "y")], known)
    assert selection.sort == (SortField(("a",), True), SortField(("b", "c"), False))
    assert selection.filters == ((("b", "c"), "y"), (("d",), "x"))
    assert selection == parse_selection("-a,b.c", [("b.c", "y"), ("d", "x")], known)


def test_sort_keys_order_types_and_put_nulls_last() -> None:
    """Numbers before strings before objects; null and missing compare equal and after everything."""
    values = [{"v": "b"}, {"v": None}, {"v": 3}, {}, {"v": {"x": 1}}, {"v": "a"}, {"v": 1.5}]
    positions = sorted(range(len(values)), key=lambda n: sort_key(values[n], ("v",)))
    assert [values[n].get("v", "missing") for n in positions] == [1.5, 3, "a", "b", {"x": 1}, None, "missing"]


def test_sorted_positions_are_stable_in_both_directions() -> None:
    """Ties keep their original order whether the field is ascending or descending."""
    column = [sort_key({"v": v}, ("v",)) for v in [2, 1, 2, 1]]
    assert sorted_positions([column], (SortField(("v",), False),), 4) == [1, 3, 0, 2]
    assert sorted_positions([column], (SortField(("v",), True),), 4) == [0, 2, 1, 3]


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    """burst calls pass at once; then one per 1/rate seconds, and the refusal says how long to wait."""
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0, 0, 0]
    assert bucket.take() == pytest.approx(0.5)
    clock.now += 0.25
    assert bucket.take() == pytest.approx(0.25)
    clock.now += 0.25
    assert bucket.take() == 0
    clock.now += 100
    assert [bucket.take() for _ in range(4)][-1] > 0  # refilled to the burst, not beyond


def test_retry_after_is_whole_seconds_rounded_up_or_a_date() -> None:
    """A wait of 1.2 s is "2"; a tiny wait is still "1"; as a date it is that many seconds from now."""
    assert retry_after("seconds", 1.2, 0) == {"Retry-After": "2"}
    assert retry_after("seconds", 0.01, 0) == {"Retry-After": "1"}
    assert retry_after("date", 1.2, 1_700_000_000) == {"Retry-After": "Tue, 14 Nov 2023 22:13:22 GMT"}
    assert retry_after("none", 1.2, 0) == {}


def test_tokens_expire_and_are_revoked_by_window() -> None:
    """A token is valid for its lifetime, unless its revocation window ends first."""
    clock = FakeClock()
    issuer = TokenIssuer(lifetime=10, revoke_every=4, clock=clock)
    token = issuer.issue()
    assert issuer.check(token) is TokenState.VALID
    assert issuer.check("other") is TokenState.UNKNOWN
    clock.now += 3.9
    assert issuer.check(token) is TokenState.VALID
    clock.now += 0.2
    assert issuer.check(token) is TokenState.REVOKED
    fresh = issuer.issue()
    clock.now += 3.8
    assert issuer.check(fresh) is TokenState.VALID
    lasting = TokenIssuer(lifetime=10, revoke_every=None, clock=clock)
    token = lasting.issue()
    clock.now += 10
    assert lasting.check(token) is TokenState.EXPIRED
    assert (issuer.issued, lasting.issued) == (2, 1)


def test_drift_makes_and_closes_what_is_due() -> None:
    """After t seconds, floor(rate * t) orders were created and closed; created ones are stamped when due."""
    config = SandboxConfig(orders=50, drift_create_per_s=10, drift_close_per_s=4)
    store = OrderStore(config.seed, config.orders, None, growing=True)
    drift = Drift(config, store)
    drift.catch_up(1000.0)
    assert len(store) == 50  # not started: nothing happens
    drift.start(1000.0)
    drift.catch_up(1001.25)
    assert (len(store.created), len(store.closed), store.open_count) == (12, 5, 57)
    view = store.view(parse_selection(None, [], store.known_fields))
    assert len(store.existed_since(view, 1000.55)) == len([i for i in view.open if i < 55])
    drift.catch_up(1001.25)
    assert len(store.created) == 12


def test_closing_everything_stops_quietly() -> None:
    """Drift stops closing when no order is left open."""
    config = SandboxConfig(orders=3, drift_close_per_s=100)
    store = OrderStore(config.seed, config.orders, None)
    drift = Drift(config, store)
    drift.start(0.0)
    drift.catch_up(1.0)
    assert store.open_count == 0
    assert store.pick_open(random.Random(1)) is None


def test_store_that_does_not_grow_refuses_to_create() -> None:
    """Only a growing store (drift creates orders) can take new orders."""
    with pytest.raises(RuntimeError):
        OrderStore(1, 2, None).create(0.0)


def test_orders_depend_only_on_seed_and_index() -> None:
    """The order at index i is the same whoever makes it; ids and indices map both ways."""
    first, second = OrderFactory(5, None), OrderFactory(5, None)
    made = [orjson.dumps(first.make(i)) for i in range(20)]
    assert made == [orjson.dumps(second.make(i)) for i in range(20)]
    with pytest.raises(ValueError, match="in sequence"):
        first.make(99)
    assert [index_of(id_of(i)) for i in (0, 41, 99_999_999)] == [0, 41, 99_999_999]
    assert [index_of(bad) for bad in ("3-0000001", "4-00000001", "3-00000000", "3-١٢٣٤٥٦٧٨")] == [None] * 4
