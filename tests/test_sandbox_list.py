"""The sandbox's list and detail endpoints: paging, sorting, filtering, headers, data, detail."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
import pytest
from conftest_sandbox import REQUESTS, ids, serve

from exporter.sandbox import QueryError


async def test_no_limit_gives_the_default_page_size_and_the_totals() -> None:
    """Without limit, a page has default_page_size orders, the first ones in insertion order."""
    async with serve(orders=120, default_page_size=25) as api:
        reply = await api.page()
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("application/json")
        assert ids(reply.json()) == api.sb.expected_ids()[:25] == [f"3-{n:08d}" for n in range(1, 26)]
        assert reply.headers["X-Total-Count"] == "120"
        assert reply.headers["X-Result-Count"] == "25"


async def test_limit_above_the_maximum_is_capped_silently() -> None:
    """limit=1000 with max_page_size=40 answers 40 orders, with status 200; the default is capped too."""
    async with serve(orders=120, max_page_size=40, default_page_size=50) as api:
        reply = await api.page(limit=1000, offset=10)
        assert reply.status == 200
        assert ids(reply.json()) == api.sb.expected_ids()[10:50]
        assert len((await api.page()).json()) == 40


async def test_pages_tile_the_list_and_an_offset_past_the_end_is_empty() -> None:
    """Walking offset by limit gets every order once, in order; past the end is [] with 200."""
    async with serve(orders=100) as api:
        records = await api.walk(limit=7)
        assert ids(records) == api.sb.expected_ids()
        assert len(set(ids(records))) == 100
        assert records == api.sb.expected_records()
        reply = await api.page(offset=100)
        assert (reply.status, reply.json(), reply.headers["X-Total-Count"]) == (200, [], "100")


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ([("offset", "x")], "offset"),
        ([("offset", "-1")], "offset"),
        ([("offset", "1.5")], "offset"),
        ([("limit", "0")], "limit"),
        ([("limit", "-5")], "limit"),
        ([("limit", "ten")], "limit"),
        ([("sort", "-nope")], "nope"),
        ([("sort", "createdAt,customer.nope")], "customer.nope"),
        ([("nope", "1")], "nope"),
        ([("type", "C_GENERIC_S1"), ("type", "R_GENERIC_S1")], "type"),
    ],
)
async def test_bad_parameters_are_400_code_28_naming_the_problem(
    query: list[tuple[str, str]], named: str
) -> None:
    """A bad offset or limit, an unknown sort or filter field, a repeated filter: 400, code 28."""
    async with serve() as api:
        reply = await api.call("GET", api.sb.base_url + REQUESTS, params=query, headers=api.headers())
        assert (reply.status, reply.code) == (400, 28)
        assert named in reply.json()["description"]


def _stable_sorted(records: list[dict[str, Any]], *keys: tuple[str, bool]) -> list[str]:
    """Ids sorted independently of the sandbox's code: one stable pass per key, last key first."""
    result = list(records)
    for name, descending in reversed(keys):
        result.sort(key=lambda record: record[name], reverse=descending)
    return ids(result)


async def test_sorts_match_an_independent_stable_sort() -> None:
    """Ascending, descending and multi-field sorts equal Python's stable sort; ties keep insertion order."""
    async with serve(orders=300) as api:
        records = api.sb.expected_records()
        created = [record["createdAt"] for record in records]
        assert len(set(created)) < len(created)  # the data has exact ties: stability is tested
        for sort, keys in [
            ("createdAt", [("createdAt", False)]),
            ("-createdAt", [("createdAt", True)]),
            ("type,-createdAt", [("type", False), ("createdAt", True)]),
            ("-priority,type,id", [("priority", True), ("type", False), ("id", False)]),
        ]:
            expected = _stable_sorted(records, *keys)
            assert ids(await api.walk(limit=64, sort=sort)) == expected, sort
            assert api.sb.expected_ids(sort=sort) == expected, sort


async def test_sort_by_nested_field_and_nulls_last_ascending() -> None:
    """Dotted names sort on nested fields; missing or null values come last ascending, first descending."""
    async with serve(orders=200) as api:
        by_name = await api.walk(limit=50, sort="customer.name,id")
        names = [record["customer"]["name"] for record in by_name]
        assert names == sorted(names)
        ascending = await api.walk(limit=50, sort="contract")
        contracts = [record["contract"] for record in ascending]
        first_null = contracts.index(None)
        assert all(value is None for value in contracts[first_null:])
        assert contracts[:first_null] == sorted(contracts[:first_null])
        descending = await api.walk(limit=50, sort="-properties.sites")
        sites = [record.get("properties", {}).get("sites") for record in descending]
        last_null = max(n for n, value in enumerate(sites) if value is None)
        assert all(value is None for value in sites[: last_null + 1])
        assert sites[last_null + 1 :] == sorted(sites[last_null + 1 :], reverse=True)


@pytest.mark.parametrize(
    ("filters", "wanted"),
    [
        ({"type": "C_GENERIC_S1"}, lambda r: r["type"] == "C_GENERIC_S1"),
        ({"customer.id": "33-01257037"}, lambda r: r["customer"]["id"] == "33-01257037"),
        ({"properties.managed": "true"}, lambda r: r.get("properties", {}).get("managed") is True),
        ({"contract": "null"}, lambda r: r["contract"] is None),
        (
            {"step": "REQUEST", "priority": "HIGH"},
            lambda r: (r["step"], r["priority"]) == ("REQUEST", "HIGH"),
        ),
    ],
)
async def test_filters_are_equalities_on_attributes_nested_or_not(
    filters: dict[str, str], wanted: Any
) -> None:
    """Each filter keeps exactly the orders whose attribute, as a string, equals the value; totals follow."""
    async with serve(orders=400) as api:
        expected = [record for record in api.sb.expected_records() if wanted(record)]
        assert expected  # the filter selects something...
        assert len(expected) < 400  # ...but not everything
        reply = await api.get(params={**filters, "limit": "1000"})
        assert reply.json() == expected
        assert reply.headers["X-Total-Count"] == str(len(expected))
        assert api.sb.expected_ids(filters=filters) == ids(expected)


async def test_filter_on_a_number_compares_its_text() -> None:
    """properties.sites=N (a JSON number) matches the orders whose sites is N."""
    async with serve(orders=200) as api:
        records = api.sb.expected_records()
        sites = next(r["properties"]["sites"] for r in records if "properties" in r)
        expected = [r for r in records if r.get("properties", {}).get("sites") == sites]
        assert (await api.get(params={"properties.sites": str(sites), "limit": "200"})).json() == expected


async def test_filter_and_sort_combine() -> None:
    """A filtered, sorted walk gets the filtered orders in sorted order."""
    async with serve(orders=300) as api:
        records = [r for r in api.sb.expected_records() if r["type"] == "U_BVPN_S1A"]
        walked = await api.walk(limit=9, type="U_BVPN_S1A", sort="-createdAt")
        assert ids(walked) == _stable_sorted(records, ("createdAt", True))


async def test_total_can_ignore_the_filters() -> None:
    """With total_ignores_filters, X-Total-Count counts all orders and pages past the real end are empty."""
    async with serve(orders=100, total_ignores_filters=True) as api:
        matching = api.sb.expected_ids(filters={"type": "C_GENERIC_S1"})
        reply = await api.page(type="C_GENERIC_S1", limit=len(matching))
        assert reply.headers["X-Total-Count"] == "100"
        assert ids(reply.json()) == matching
        assert (await api.page(type="C_GENERIC_S1", offset=len(matching), limit=10)).json() == []


@pytest.mark.parametrize(("knob", "header"), [("correct", "10"), ("wrong", "27"), ("missing", None)])
async def test_result_count_can_be_wrong_or_missing(knob: str, header: str | None) -> None:
    """X-Result-Count is the page's length, a wrong number, or absent, as the knob says."""
    async with serve(result_count=knob) as api:
        reply = await api.page(limit=10)
        assert len(reply.json()) == 10
        assert reply.headers.get("X-Result-Count") == header


async def test_detail_is_the_list_item_plus_detail_fields() -> None:
    """GET /requests/{id} answers the order's list fields and lines, notes and history."""
    async with serve() as api:
        item = api.sb.expected_records()[41]
        reply = await api.get(f"{REQUESTS}/{item['id']}")
        detail = reply.json()
        assert reply.status == 200
        assert {name: detail[name] for name in item} == item
        assert set(detail) - set(item) == {"lines", "notes", "history"}
        assert detail["lines"]
        assert all(line["lineId"].startswith(item["id"]) for line in detail["lines"])
        assert detail["history"][0]["step"] == "REQUEST"
        assert api.sb.detail(item["id"]) == detail


@pytest.mark.parametrize("order_id", ["3-00000101", "3-0000001", "nope", "3-00000000"])
async def test_detail_of_an_unknown_order_is_404_code_60(order_id: str) -> None:
    """An id no order has answers 404 with Orange code 60."""
    async with serve(orders=100) as api:
        reply = await api.get(f"{REQUESTS}/{order_id}")
        assert (reply.status, reply.code) == (404, 60)
        assert api.sb.detail(order_id) is None


async def test_data_is_deterministic_from_seed_and_a_prefix_of_a_larger_set() -> None:
    """Same seed: the same bytes; more orders: the same first ones; another seed: other data."""
    async with serve(orders=60, seed=3) as small, serve(orders=120, seed=3) as large:
        assert (await small.page(limit=60)).body == (await large.page(limit=60)).body
    async with serve(orders=60, seed=3) as small, serve(orders=60, seed=4) as other:
        assert small.sb.expected_records() != other.sb.expected_records()
        assert ids(small.sb.expected_records()) == ids(other.sb.expected_records())


async def test_records_hold_the_awkward_values_exporters_must_survive() -> None:
    """Some orders lack properties, some hold nulls, text has commas, quotes, newlines, tabs and non-ASCII."""
    async with serve(orders=400) as api:
        records = api.sb.expected_records()
        texts = [
            str(value) for record in records for value in (record["comment"], record["customer"]["name"])
        ]
        for needle in (",", '"', "\n", "\t", "é", "回", "🚀"):
            assert any(needle in text for text in texts), needle
        assert any("properties" not in record for record in records)
        assert any(isinstance(record.get("properties", {}).get("options"), list) for record in records)
        assert any(record["contract"] is None for record in records)
        assert any(record["updatedAt"] is None for record in records)
        assert {record["type"][:2] for record in records} == {"C_", "U_", "R_"}
        assert len(set(ids(records))) == 400
        for record in records:
            assert re.fullmatch(r"3-\d{8}", record["id"])
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["createdAt"])
            assert re.fullmatch(r"\d{4}-\d\d-\d\d", record["requestedAt"])
        created = [record["createdAt"] for record in records]
        assert created == sorted(created)


async def test_late_field_appears_only_from_its_index() -> None:
    """With late_field_from=30, orders 0..29 never have "satisfaction", later ones always do."""
    async with serve(orders=60, late_field_from=30) as api:
        records = await api.walk(limit=25)
        assert not any("satisfaction" in record for record in records[:30])
        assert all(set(record["satisfaction"]) == {"score", "channel"} for record in records[30:])
        assert (await api.page(sort="-satisfaction.score")).status == 200
    async with serve(orders=60) as api:
        assert not any("satisfaction" in record for record in api.sb.expected_records())
        assert (await api.page(sort="satisfaction.score")).status == 400


async def test_ground_truth_rejects_bad_queries() -> None:
    """expected_ids raises QueryError for what the API would answer with 400."""
    async with serve() as api:
        with pytest.raises(QueryError):
            api.sb.expected_ids(sort="nope")
        with pytest.raises(QueryError):
            api.sb.expected_ids(filters={"limit": "3"})


async def test_stats_count_requests_statuses_tokens_and_concurrency() -> None:
    """GET /_sandbox/stats counts calls by status, tokens issued and the most calls in flight at once."""
    async with serve(latency=0.1) as api:
        await asyncio.gather(*(api.page() for _ in range(5)))
        await api.page(limit="x")
        await api.get(headers=api.headers(Authorization=None))
        reply = await api.get("/_sandbox/stats")
        stats = orjson.loads(reply.body)
        assert stats["data_requests"] == 7
        assert stats["token_requests"] == stats["tokens_issued"] == 1
        assert stats["requests"] == 8
        assert stats["by_status"] == {"200": 6, "400": 1, "401": 1}
        assert stats["max_in_flight"] == 5
        assert stats["in_flight"] == 0
        assert stats["orders"]["total"] == stats["orders"]["open"] == 100
        assert api.sb.stats() == stats  # the stats call itself is not counted
