"""Reading the API's answers: whatever a gateway sends becomes a page or one of our errors."""

from __future__ import annotations

import email.utils
import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.errors import (
    ApiError,
    ApiKeyRefused,
    BadResponse,
    CredentialsRefused,
    RateLimited,
    RequestRejected,
    ServerError,
    Unauthorized,
)
from exporter.responses import (
    REQUEST_ID,
    RawPage,
    _simd_lines,
    check_page,
    decode_lines,
    decode_page,
    error_for,
    mend_lone_surrogates,
    order_ids,
    parse_page,
    parse_retry_after,
    parse_token,
    parse_total,
)
from exporter.sandbox.data import OrderFactory

HEADERS = {"X-Total-Count": "2", "X-OAPI-Request-Id": "req-1"}


def test_a_page_is_its_body_whatever_x_result_count_says() -> None:
    """Items come from the body; a lying X-Result-Count is ignored."""
    page = parse_page(b'[{"id":"a"},{"id":"b"}]', {**HEADERS, "X-Result-Count": "106"}, 0)
    assert [o["id"] for o in page.items] == ["a", "b"]
    assert page.total == 2
    assert page.request_id == "req-1"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"<html><body>502 Bad Gateway</body></html>",
        b'[{"id":"a"},{"id"',
        b'{"id":"a"}',
        b"[1,2]",
    ],
)
def test_a_body_that_is_not_an_array_of_objects_is_a_bad_response(body: bytes) -> None:
    """HTML, empty, truncated, an object, or non-object items: BadResponse with the request id."""
    with pytest.raises(BadResponse) as caught:
        parse_page(body, HEADERS, 300)
    assert "req-1" in str(caught.value)
    assert "offset 300" in str(caught.value)


@pytest.mark.parametrize("value", [None, "", "-5", "abc", "1e3", "12.5", "99999999999999999999", "٣"])
def test_a_total_that_is_not_a_count_is_refused(value: str | None) -> None:
    """Missing, negative, huge, or not a number: a clear BadResponse."""
    with pytest.raises(BadResponse):
        parse_total(value)


@given(st.binary(max_size=300))
def test_any_body_gives_a_page_or_a_bad_response(body: bytes) -> None:
    """Property: parse_page never raises anything but BadResponse."""
    try:
        page = parse_page(body, HEADERS, 0)
    except BadResponse:
        return
    assert all(isinstance(item, dict) for item in page.items)


@given(st.one_of(st.none(), st.text(max_size=30)))
def test_any_total_header_gives_a_count_or_a_bad_response(value: str | None) -> None:
    """Property: the total is a non-negative int or the header is refused."""
    try:
        total = parse_total(value)
    except BadResponse:
        return
    assert total >= 0


@given(
    st.integers(100, 599),
    st.binary(max_size=200),
    st.dictionaries(
        st.sampled_from(["Retry-After", "X-OAPI-Request-Id", "Content-Type"]), st.text(max_size=40)
    ),
)
def test_any_error_answer_maps_to_an_api_error(status: int, body: bytes, headers: dict[str, str]) -> None:
    """Property: error_for always returns one of our errors, whatever the body and headers."""
    assert isinstance(error_for(status, body, headers), ApiError)


def _orange(code: int, message: str) -> bytes:
    return orjson.dumps({"code": code, "message": message, "description": f"{message} (details)"})


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (400, _orange(28, "Invalid query-string parameter value"), RequestRejected),
        (404, _orange(60, "Resource not found"), RequestRejected),
        (401, _orange(42, "Expired credentials"), Unauthorized),
        (403, _orange(50, "Access denied"), ApiKeyRefused),
        (403, _orange(52, "Forbidden"), ApiKeyRefused),
        (403, _orange(53, "Too many requests"), RateLimited),
        (429, b"", RateLimited),
        (500, _orange(1, "Internal error"), ServerError),
        (502, b"<html>Bad gateway</html>", ServerError),
        (503, _orange(5, "Service unavailable"), ServerError),
    ],
)
def test_the_api_table_maps_to_the_error_tree(status: int, body: bytes, kind: type[ApiError]) -> None:
    """Each row of API.md's error table becomes its class, keeping status, code and request id."""
    error = error_for(status, body, {"X-OAPI-Request-Id": "rid-9"}, offset=40)
    assert type(error) is kind
    assert error.status == status
    assert error.request_id == "rid-9"
    assert "rid-9" in str(error)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_refused_at_once_and_names_where_it_points(status: int) -> None:
    """Redirects are not followed (the key and the token would go along): exit 4, not a retry, and the
    line says where the answer pointed and which option to check."""
    error = error_for(status, b"<html>Moved</html>", {"Location": "https://api.example/x", REQUEST_ID: "r1"})
    assert type(error) is RequestRejected
    assert error.exit_code == 4
    message = str(error)
    assert f"redirect (HTTP {status}) to 'https://api.example/x'" in message
    assert "--base-url" in message
    assert "r1" in message
    assert "without a Location" in str(error_for(status, b"", {}))


def test_the_api_message_and_description_are_shown() -> None:
    """A 400 shows the API's own message and description."""
    error = error_for(400, _orange(28, "Invalid sort field: foo"), {})
    assert "Invalid sort field: foo" in str(error)
    assert "(Invalid sort field: foo (details))" in str(error)
    assert error.code == 28


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    """Retry-After: delta-seconds, an HTTP date relative to now, or nothing usable."""
    now = 1_800_000_000.0
    assert parse_retry_after("3", now) == 3.0
    assert parse_retry_after(email.utils.formatdate(now + 7, usegmt=True), now) == pytest.approx(7.0, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 60, usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_rate_limited_403_53_carries_an_http_date_retry_after() -> None:
    """403 code 53 with an HTTP-date Retry-After: RateLimited with the delay in seconds."""
    now = 1_800_000_000.0
    error = error_for(
        403,
        _orange(53, "Too many requests"),
        {"Retry-After": email.utils.formatdate(now + 4, usegmt=True)},
        now=now,
    )
    assert isinstance(error, RateLimited)
    assert error.retry_after == pytest.approx(4.0, abs=1)


def test_token_answers_accept_expires_in_as_int_or_string() -> None:
    """expires_in may be 3600 or "3600"; token_type defaults to Bearer."""
    assert (
        parse_token(b'{"access_token":"t","expires_in":"3600","token_type":"Bearer"}', {}).expires_in == 3600
    )
    answer = parse_token(b'{"access_token":"t","expires_in":120}', {})
    assert answer.expires_in == 120
    assert answer.token_type == "Bearer"
    with pytest.raises(BadResponse):
        parse_token(b'{"error":"nope"}', {})


def test_a_refused_token_request_is_a_credentials_error() -> None:
    """401 invalid_client from the token endpoint: CredentialsRefused showing the RFC 6749 words."""
    error = error_for(
        401, b'{"error":"invalid_client","error_description":"Bad client"}', {}, token_call=True
    )
    assert isinstance(error, CredentialsRefused)
    assert "invalid_client" in str(error)
    assert error.exit_code == 3


@given(st.binary(max_size=200), st.sampled_from([b"", b" ", b"\n\t ", b" " * 100]))
def test_the_cheap_check_agrees_with_stripping(body: bytes, pad: bytes) -> None:
    """Property: check_page's look at the body's ends is what stripping it whole would say."""
    padded = pad + body + pad
    stripped = padded.strip()
    looks_like_array = bool(stripped) and stripped[:1] == b"[" and stripped[-1:] == b"]"
    try:
        check_page(padded, HEADERS, 0)
    except BadResponse:
        assert not looks_like_array
    else:
        assert looks_like_array


# decode_lines: a page straight into JSON lines (simdjson), for JSONL exports. Whatever it gives must be what
# decode_page gives: the same ids, lines that read back as the same orders, the same BadResponse.

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
_ORDER = st.builds(
    lambda order_id, fields, has_id: ({"id": order_id} if has_id else {}) | fields,
    _JSON,
    st.dictionaries(st.text(max_size=8).filter(lambda key: key != "id"), _JSON, max_size=5),
    st.booleans(),
)


def _raw(body: bytes, offset: int = 0) -> RawPage:
    return RawPage(offset=offset, body=body, total=None, request_id="req-1")


@given(st.lists(_ORDER, max_size=12), st.booleans())
def test_lines_and_ids_are_those_of_the_dict_decoding(orders: list[dict[str, Any]], indent: bool) -> None:
    """Property: for any page of objects (ids missing, null, numbers, strings, objects, arrays), simdjson
    gives the ids order_ids gives on orjson's decoding, and lines that read back as the same orders."""
    body = orjson.dumps(orders, option=orjson.OPT_INDENT_2 if indent else 0)
    assert _simd_lines(body) is not None, "simdjson decodes this page: no fallback"
    reference = decode_page(_raw(body))
    page = decode_lines(_raw(body))
    assert page.ids == reference.ids == order_ids(orders)
    assert all(isinstance(line, bytes) and b"\n" not in line for line in page.items)
    assert [orjson.loads(line) for line in page.items] == reference.items
    assert (page.offset, page.total, page.request_id) == (0, None, "req-1")


def test_ids_that_are_objects_or_arrays_compare_by_their_text() -> None:
    """An object or array id: the same hashable text as order_ids makes, nested keys in their order; the
    page after it still goes through simdjson (no proxy of the last page keeps the parser)."""
    body = b'[{"id":{"b":[1,2.5,null],"a":{"c":true}}},{"id":["x",{"y":1}]},{"id":null},{"n":1},{"id":-7}]'
    page = decode_lines(_raw(body))
    assert page.ids == order_ids(orjson.loads(body))
    assert page.ids == ["{'b': [1, 2.5, None], 'a': {'c': True}}", "['x', {'y': 1}]", None, None, -7]
    assert _simd_lines(b'[{"id":"next"}]') == ([b'{"id":"next"}'], ["next"])


def test_a_one_line_body_gives_each_order_as_sent() -> None:
    """A body on one line: each line is the order's own bytes, escapes, spaces and numbers as sent; they
    read back as orjson reads them."""
    body = (
        rb'[ {"id" : "\u00e9\/\ud83d\ude80", "n": [1.0, 1E5, -0.0, 0.1e1, 18446744073709551615, -1.5e-7]} ,'
        rb'{"id":"b","s":"},{\"id\":\"c\"}"}]'
    )
    page = decode_lines(_raw(body))
    assert page.items == [
        rb'{"id" : "\u00e9\/\ud83d\ude80", "n": [1.0, 1E5, -0.0, 0.1e1, 18446744073709551615, -1.5e-7]}',
        rb'{"id":"b","s":"},{\"id\":\"c\"}"}',
    ]
    assert page.ids == ["\u00e9/\U0001f680", "b"]
    assert [orjson.loads(line) for line in page.items] == orjson.loads(body)


def test_a_body_on_several_lines_gives_each_order_minified() -> None:
    """A body with line breaks (an order's bytes may span lines): simdjson's minified text of each order,
    escaped characters as characters, numbers as the same values."""
    body = (
        b'[\r\n {"id" : "\\u00e9\\/\\ud83d\\ude80",\n'
        b'  "n": [1.0, 1E5, -0.0, 0.1e1, 18446744073709551615, -1.5e-7]}\n]'
    )
    page = decode_lines(_raw(body))
    minified = '{"id":"\u00e9/\U0001f680","n":[1.0,100000.0,-0.0,1.0,18446744073709551615,-1.5e-07]}'
    assert page.items == [minified.encode()]
    assert [orjson.loads(line) for line in page.items] == orjson.loads(body)


def test_nesting_too_deep_to_cut_out_is_minified() -> None:
    """An order nested deeper than msgspec goes but within simdjson's limit: its line is simdjson's text."""
    nested = b"[" * 1000 + b"]" * 1000
    body = b'[{"id":"a","x":' + nested + b'},{"id":"b"}]'
    page = decode_lines(_raw(body))
    assert page.items == [b'{"id":"a","x":' + nested + b"}", b'{"id":"b"}']
    assert page.ids == ["a", "b"]


@pytest.mark.parametrize(
    "body",
    [
        b'[{"id":1,"n":18446744073709551616},{"id":2}]',  # beyond 64 bits: orjson makes it a float
        b'[{"id":-9223372036854775809}]',
        b'[{"id":"a","n":123456789012345678901234567890}]',
    ],
)
def test_a_page_simdjson_refuses_keeps_every_digit(body: bytes) -> None:
    """Integers beyond 64 bits, which simdjson refuses: decode_page checks the page, reads them exactly
    and gives the ids; on one line, each line is the order's own text; on several, the JSON text of what
    decode_page read: the same digits either way."""
    with pytest.raises((ValueError, RuntimeError)):
        _simd_lines(body)
    reference = decode_page(_raw(body))
    page = decode_lines(_raw(body))
    assert page.items == body[1:-1].replace(b"},{", b"}\n{").split(b"\n")
    assert page.ids == reference.ids
    assert decode_lines(_raw(b"[\n" + body[1:])).items == page.items
    assert [json.loads(line) for line in page.items] == json.loads(body)


@pytest.mark.parametrize(
    ("body", "mended", "count"),
    [
        (rb'"x\ud83d"', rb'"x\ufffd"', 1),
        (rb'"\ud83d\ude00"', rb'"\ud83d\ude00"', 0),  # a pair: one character
        (rb'"\ude00\ud83d"', rb'"\ufffd\ufffd"', 2),  # low then high: two halves
        (rb'"\\ud83d"', rb'"\\ud83d"', 0),  # an escaped backslash, then text
        (rb'"\\\uDBFF"', rb'"\\\ufffd"', 1),
        (rb'"\u0041\n\"\ud7ff\ue000"', rb'"\u0041\n\"\ud7ff\ue000"', 0),
    ],
)
def test_lone_surrogate_escapes_are_mended_and_nothing_else(body: bytes, mended: bytes, count: int) -> None:
    assert mend_lone_surrogates(body) == (mended, count)


@given(st.text(st.characters(codec=None, exclude_categories=())))
def test_mended_text_reads_as_a_utf16_decoder_replacing_what_is_not_text(text: str) -> None:
    """Property: any string, surrogates alone or in pairs among other characters, sent with every
    non-ASCII character escaped (as a UTF-16 program does): the mended body decodes to the string whose
    UTF-16 units a decoder reads with replacement, and a string without a lone half is left alone."""
    body = json.dumps([{"id": "a", "c": text}]).encode()
    mended, count = mend_lone_surrogates(body)
    expected = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    assert orjson.loads(mended) == [{"id": "a", "c": expected}]
    assert (count == 0) == (mended == body)
    page = decode_page(RawPage(offset=0, body=body, total=1, request_id=None))
    assert page.items == [{"id": "a", "c": expected}]


@pytest.mark.parametrize(
    ("body", "words", "hint"),
    [
        (b'[{"id": "a", "v": nan}]', "invalid literal, expected 'null': line 1 column 19", None),
        (b'[{"id": "a", "c": "x\\ud800y"}, {"id"', "unexpected end of data", "it may be cut short"),
        (b'[{"id": "a", "c": "caf\xe9"}]', "not UTF-8: byte 0xe9 at byte 22", None),
        (b'[{"id": "a"}, {"id": "b"', "unexpected end of data", "it may be cut short"),
        (b'[{"id": "a"}, {"id": "b"}}]', "unexpected character", None),
        (b"<html><body>Bad gateway</body></html>", "unexpected character", "an HTML page from a proxy"),
    ],
)
@pytest.mark.parametrize("decode", [decode_page, decode_lines])
def test_a_body_that_is_not_json_is_named_by_its_fault_and_place(
    body: bytes, words: str, hint: str | None, decode: Any
) -> None:
    """The line says what the decoder found wrong and where (past lone surrogates, which are mended), and
    guesses a cause only where the bytes show one: a byte that is not UTF-8 or a literal that JSON does not
    have is neither a cut body nor a proxy's page."""
    with pytest.raises(BadResponse) as caught:
        decode(check_page(body, HEADERS, 0))  # the HTML page: check_page's own decode names it
    message = str(caught.value)
    assert f"the body is not JSON ({words}" in message
    assert "req-1" in message
    for guess in ("cut short", "proxy"):
        assert (guess in message) == (hint is not None and guess in hint), message


@pytest.mark.parametrize(
    "body",
    [
        b"[1,2]",
        b'[{"id":1},[{"id":2}]]',
        b'[{"id":1},null]',
        b'[{"id":1},"x",{"id":3}]',
        b'[{"id":1},1.5]',
        b'[{"id":1},true]',
        b'{"id":"a"}',
        b'"orders"',
        b'[{"id":"a"},{"id"',  # cut short
        b'[{"id":"a"},{"id":"b"]',
        b'[{"id":"a"}] [',
        b"\xef\xbb\xbf[]",  # a byte order mark: simdjson skips it, orjson refuses it
        b'[{"id":"\xff"}]',
        b'[{"id":1e400}]',
        b"",
    ],
)
def test_what_is_not_an_array_of_objects_is_the_same_bad_response(body: bytes) -> None:
    """Non-object items, other documents, cut or invalid bodies: the very BadResponse decode_page raises."""
    with pytest.raises(BadResponse) as expected:
        decode_page(_raw(body, 300))
    with pytest.raises(BadResponse) as caught:
        decode_lines(_raw(body, 300))
    assert str(caught.value) == str(expected.value)
    assert "offset 300" in str(caught.value)


def test_an_order_with_two_ids_keeps_both_and_links_by_the_first() -> None:
    """The documented difference: the line keeps a duplicated key as the API sent it; the id is the first
    one's (orjson keeps the last)."""
    page = decode_lines(_raw(b'[{"id":1,"x":2,"id":3}]'))
    assert page.items == [b'{"id":1,"x":2,"id":3}']
    assert page.ids == [1]
    assert decode_page(_raw(b'[{"id":1,"x":2,"id":3}]')).ids == [3]


def test_the_sandbox_pages_come_out_byte_for_byte_as_orjson_wrote_them() -> None:
    """Sandbox orders (quotes, tabs, newlines, accents, CJK, emoji, nested objects): each line is exactly
    orjson.dumps of the order, as JSONL exports wrote them before."""
    factory = OrderFactory(4, None)
    orders = [factory.make(i) for i in range(300)]
    body = orjson.dumps(orders)
    page = decode_lines(_raw(body))
    assert page.items == [orjson.dumps(order) for order in orders]
    assert page.ids == [order["id"] for order in orders]
