"""Deterministic orders: the same (seed, index) gives the same order, byte for byte, whatever the total.

Strategy: order ``i`` is built from its index and the ``i``-th 64-bit draw of one generator seeded with the
seed; every field is picked from that draw with shifts and modulos, from small pools built once. That keeps
a million orders to one cheap pass (the server then only ever joins their pre-encoded bytes) and lets orders
created later by drift continue the very same sequence. Detail-only fields come from a generator seeded
with (seed, index), so they can be made on demand.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
from typing import Any

JSONObject = dict[str, Any]

LATE_FIELD = "satisfaction"

_EPOCH = dt.datetime(2019, 1, 1, tzinfo=dt.UTC)
_STEP_SECONDS = 150  # time between two consecutive orders
_TIE_EVERY = 97  # every 97th order has exactly the createdAt of the one before: stable sorting matters

_TYPES = (
    "C_GENERIC_S1",
    "C_BVPN_S1",
    "C_INTERNET_S2",
    "U_BVPN_S1A",
    "U_GENERIC_S1",
    "R_BVPN_S1A",
    "R_GENERIC_S1",
)
_CATEGORIES = ("R_BVPN_S1A", "C_IPVPN_S2", "U_LAN_S1", "C_VOICE_S3", "R_INTERNET_S1")
_STEPS = ("REQUEST", "VALIDATION", "DELIVERY", "COMPLETED", "CANCELLED")
_PRIORITIES = ("LOW", "MEDIUM", "MEDIUM", "HIGH", "CRITICAL")
# Text meant to hurt CSV writers and encoders: commas, quotes, newlines, tabs, accents, CJK, emoji.
_COMMENTS = (
    "New order",
    None,
    "",
    'Move to site "Nord", floor 2, room B',
    "Ligne interrompue\ndepuis hier,\tmerci de rappeler",
    "Déménagement à Besançon — coût estimé 1 200 €",
    "回線の増速をお願いします",
    "Upgrade 🚀 to 1 Gb/s, ASAP",
    'She said "yes", then\r\n"no"',
    "Routine change",
    None,
    "Ümlaut-Prüfung; Straße 5",
    "Комментарий клиента",
    "tab\tseparated\tvalues",
    "New order",
    "Zażółć gęślą jaźń 👍🏽",
)
_CUSTOMER_NAMES = (
    "demo.gcompte",
    'Société Générale, agence "Nord"',
    "Müller & Söhne GmbH",
    "株式会社サンプル",
    "O'Brien; Sons",
    "Café\tdu Commerce",
    "Ørsted A/S",
    "Łódź Telecom",
    "Émile Zola 🚚",
    "ACME Corp",
    "Line\nBreak Ltd",
    "Banco São João",
)
_CUSTOMER_COUNT = 48
_BANDWIDTHS = ("2M", "10M", "100M", "1G", "10G")
_OPTIONS = ("ipv6", "qos", "backup", "managed-router", "4G-fallback")
_CHANNELS = ("email", "phone", "web", "sms")
_PRODUCTS = ("BVPN Access", "Internet Pro", "LAN Switch", "Voice Trunk", "SD-WAN Edge", "Firewall Pack")
_NOTES = (None, 'Call before 9:00, gate code "4521"', "Accès par la cour,\nsonner deux fois", "無し")

# Every field path an order can have; sort and filter names are checked against these.
BASE_FIELDS = (
    "id",
    "customerReference",
    "type",
    "category",
    "step",
    "priority",
    "customer",
    "customer.id",
    "customer.name",
    "comment",
    "createdAt",
    "updatedAt",
    "requestedAt",
    "contract",
    "properties",
    "properties.bandwidth",
    "properties.sites",
    "properties.options",
    "properties.billing",
    "properties.billing.code",
    "properties.billing.vat",
    "properties.managed",
)
LATE_FIELDS = (LATE_FIELD, f"{LATE_FIELD}.score", f"{LATE_FIELD}.channel")
LINES_FIELD = "orderLines"  # only with order_lines > 0: wide orders, for memory checks


def id_of(index: int) -> str:
    """The order id of the order at ``index``."""
    return f"3-{index + 1:08d}"


def index_of(order_id: str) -> int | None:
    """The index of the order with id ``order_id``, or None if no index gives that id."""
    digits = order_id[2:]
    if not order_id.startswith("3-") or not digits.isdigit() or not digits.isascii():
        return None
    index = int(digits) - 1
    return index if index >= 0 and id_of(index) == order_id else None


def created_seconds(index: int) -> int:
    """Seconds from 2019-01-01 to the order's createdAt: increasing with the index, with a few exact ties."""
    return (index - index // _TIE_EVERY) * _STEP_SECONDS


class OrderFactory:
    """Makes orders in index order; ``make(i)`` must be called for i = 0, 1, 2, ... exactly once each."""

    def __init__(self, seed: int, late_field_from: int | None, order_lines: int = 0) -> None:
        self._draws = random.Random(seed)
        self._next = 0
        self._late_from = late_field_from
        self._lines = order_lines
        pools = random.Random(f"{seed}:pools")
        self._customers = [
            {"id": f"33-{1_257_000 + 37 * k:08d}", "name": _CUSTOMER_NAMES[k % len(_CUSTOMER_NAMES)]}
            for k in range(_CUSTOMER_COUNT)
        ]
        self._properties = [_properties(pools, k) for k in range(32)]
        self._days: dict[int, str] = {}
        self._clock = _clock_table()

    def make(self, index: int) -> JSONObject:
        """The order at ``index``, the next one in sequence."""
        if index != self._next:
            raise ValueError(f"orders are made in sequence: expected index {self._next}, got {index}")
        self._next += 1
        r = self._draws.getrandbits(64)
        created = created_seconds(index)
        reference_kind = (r >> 22) % 16
        if reference_kind == 0:
            reference: str | None = None
        elif reference_kind == 1:
            reference = "#DEMO#"
        elif reference_kind == 2:
            reference = f'REF "A{index % 7}", lot 3'
        else:
            reference = f"PO-{2019 + created // 31_536_000}-{index % 1_000_000:06d}"
        order: JSONObject = {
            "id": id_of(index),
            "customerReference": reference,
            "type": _TYPES[r % 7],
            "category": _CATEGORIES[(r >> 3) % 5],
            "step": _STEPS[(r >> 6) % 5],
            "priority": _PRIORITIES[(r >> 9) % 5],
            "customer": self._customers[(r >> 12) % _CUSTOMER_COUNT],
            "comment": _COMMENTS[(r >> 18) % 16],
            "createdAt": self._stamp(created),
            "updatedAt": None if (r >> 48) % 12 == 0 else self._stamp(created + (r >> 26) % 2_592_000),
            "requestedAt": self._day(created // 86_400 + (r >> 54) % 90),
            "contract": None if (r >> 52) % 4 == 0 else f"CTR-{(r >> 40) % 5_000:06d}",
        }
        if r >> 60 < 12:  # three orders in four have properties, the rest lack the field entirely
            order["properties"] = self._properties[(r >> 30) % 32]
        if self._late_from is not None and index >= self._late_from:
            order[LATE_FIELD] = {"score": 1 + (r >> 5) % 5, "channel": _CHANNELS[(r >> 7) % 4]}
        if self._lines:
            order[LINES_FIELD] = [
                {
                    "lineId": f"{order['id']}-L{n + 1}",
                    "product": _PRODUCTS[(r >> n % 48) % len(_PRODUCTS)],
                    "quantity": 1 + (r >> (n + 7) % 48) % 10,
                    "unitPrice": ((r >> (n + 13) % 48) % 200_000) / 100,
                    "note": _NOTES[(r >> (n + 3) % 48) % len(_NOTES)],
                }
                for n in range(self._lines)
            ]
        return order

    def _stamp(self, seconds: int) -> str:
        day, second = divmod(seconds, 86_400)
        return f"{self._day(day)}T{self._clock[second]}"

    def _day(self, day: int) -> str:
        text = self._days.get(day)
        if text is None:
            text = self._days[day] = (_EPOCH + dt.timedelta(days=day)).date().isoformat()
        return text


@functools.cache
def _clock_table() -> list[str]:
    """``"HH:MM:SSZ"`` for every second of a day: a lookup is much cheaper than formatting."""
    return [f"{h:02d}:{m:02d}:{s:02d}Z" for h in range(24) for m in range(60) for s in range(60)]


def _properties(pools: random.Random, k: int) -> JSONObject:
    """One of the free-form ``properties`` objects: mixed types, a nested object and a nested list."""
    properties: JSONObject = {
        "bandwidth": pools.choice(_BANDWIDTHS),
        "sites": pools.randint(1, 40),
        "options": pools.sample(_OPTIONS, pools.randint(0, 3)),
        "billing": {"code": f"BIL-{pools.randint(0, 99_999):05d}", "vat": pools.choice((0.2, 0.055, None))},
        "managed": pools.choice((True, False, None)),
    }
    if k % 5 == 0:  # some objects lack keys that others have
        del properties["billing"]
    return properties


def detail_extras(seed: int, index: int, order: JSONObject) -> JSONObject:
    """The fields only the detail call has for ``order``, the order at ``index``: lines, notes, history."""
    rng = random.Random(f"{seed}:detail:{index}")
    created = _EPOCH + dt.timedelta(seconds=created_seconds(index))
    action = {"C": "ADD", "U": "MODIFY", "R": "REMOVE"}[str(order["type"])[0]]
    lines = [
        {
            "lineId": f"{order['id']}-L{n + 1}",
            "product": rng.choice(_PRODUCTS),
            "action": action,
            "quantity": rng.randint(1, 10),
            "unitPrice": round(rng.uniform(5, 2_000), 2),
        }
        for n in range(rng.randint(1, 4))
    ]
    step = str(order["step"])
    steps = ("REQUEST", step) if step == "CANCELLED" else _STEPS[: _STEPS.index(step) + 1]
    history = [
        {
            "at": (created + dt.timedelta(hours=6 * n)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "step": step,
            "by": rng.choice(("system", "agent", None)),
        }
        for n, step in enumerate(steps)
    ]
    return {"lines": lines, "notes": rng.choice(_NOTES), "history": history}
