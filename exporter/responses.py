"""Sans-I/O reading of the API's answers: status, headers and body bytes in, a page or one of our errors out.

Strategy: never trust what a gateway sends. Bodies may be HTML, empty, cut short, or JSON of the wrong
shape; headers may be missing or lie (``X-Result-Count``). Everything here is a pure function, so the
client stays a thin loop around I/O and property-based tests can throw anything at the parsing.
"""

from __future__ import annotations

import email.utils
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import simdjson

from exporter import jsoncodec
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

log = logging.getLogger("exporter")
REQUEST_ID = "X-OAPI-Request-Id"
# Larger than any real collection, small enough that offsets stay exact in every writer and in JSON.
MAX_TOTAL = 10**12
_SNIPPET = 160


# A page's orders as decoded: dicts (``decode_page``), or each order's JSON text without a line end (bytes,
# ``decode_lines``). The walk only slices, counts and hands them on: it reads ids from ``Page.ids``.
Items = list[Any]


@dataclass(frozen=True, slots=True)
class Page:
    """One list answer: its orders (objects, or their JSON lines), their ids (see ``order_ids``), the total
    the server claimed, and the request id."""

    offset: int
    items: Items
    ids: list[Any]
    total: int | None
    request_id: str | None
    mended: int = 0  # lone surrogate escapes written as U+FFFD (see ``mend_lone_surrogates``)


@dataclass(frozen=True, slots=True)
class RawPage:
    """One list answer not decoded yet: its body passed a cheap check (a JSON array by its ends), and the
    total it claimed. Decoding waits until the page's turn to be written, so the orders live briefly."""

    offset: int
    body: bytes
    total: int | None
    request_id: str | None


@dataclass(frozen=True, slots=True)
class TokenAnswer:
    """What the token endpoint granted."""

    token_type: str
    access_token: str
    expires_in: float | None


def parse_total(value: str | None, *, request_id: str | None = None, offset: int | None = None) -> int:
    """``X-Total-Count`` as a non-negative integer, or BadResponse naming what came instead."""
    if value is None:
        raise BadResponse("the answer has no X-Total-Count header", request_id=request_id, offset=offset)
    text = value.strip()
    if not text.isdigit() or not text.isascii():
        raise BadResponse(
            f"X-Total-Count is not a non-negative integer: {_clip(text)!r}",
            request_id=request_id,
            offset=offset,
        )
    total = int(text)
    if total > MAX_TOTAL:
        raise BadResponse(
            f"X-Total-Count is implausibly large: {total}", request_id=request_id, offset=offset
        )
    return total


def parse_page(body: bytes, headers: Mapping[str, str], offset: int, *, need_total: bool = True) -> Page:
    """A 2xx list answer: a JSON array of objects, and ``X-Total-Count`` (a BadResponse if it is missing or
    not a count, when ``need_total``; else None then). ``X-Result-Count`` is ignored: the body's length is
    the truth."""
    return decode_page(check_page(body, headers, offset, need_total=need_total))


def check_page(body: bytes, headers: Mapping[str, str], offset: int, *, need_total: bool = True) -> RawPage:
    """The cheap half of ``parse_page``: the total, and a body that looks like a JSON array by its ends
    (catches HTML, empty and most truncated bodies without decoding)."""
    request_id = headers.get(REQUEST_ID)
    total: int | None = None
    try:
        total = parse_total(headers.get("X-Total-Count"), request_id=request_id, offset=offset)
    except BadResponse:
        if need_total:
            raise
    if _blank(body):
        raise BadResponse("the body is empty", request_id=request_id, offset=offset)
    if not (_first_byte(body) == b"[" and _last_byte(body) == b"]"):
        _decode(body, request_id=request_id, offset=offset)  # names the problem if it is not JSON at all
        raise BadResponse(
            f"expected a JSON array of orders, got {_clip(body)!r}", request_id=request_id, offset=offset
        )
    return RawPage(offset=offset, body=body, total=total, request_id=request_id)


def detail_id(order_id: object) -> str | None:
    """The text to ask the detail call for an order whose id is ``order_id``: a string or an integer id;
    None for any other (null, a bool, a number with a fraction, an object), which no URL names."""
    if isinstance(order_id, str | int) and not isinstance(order_id, bool):
        return str(order_id)
    return None


def order_ids(items: list[dict[str, Any]]) -> list[Any]:
    """The ids of ``items``, hashable (an id that is a JSON object or array compares by its text); None
    where an order has none."""
    ids = [item.get("id") for item in items]
    try:
        set(ids)
    except TypeError:
        ids = [i if i is None or isinstance(i, str | int | float) else repr(i) for i in ids]
    return ids


def decode_page(raw: RawPage) -> Page:
    """The orders of a checked page, as dicts; BadResponse if the body is not a JSON array of objects after
    all."""
    request_id, offset = raw.request_id, raw.offset
    items, mended = _decode_mending(raw.body, request_id=request_id, offset=offset)
    if not isinstance(items, list):
        raise BadResponse(
            f"expected a JSON array of orders, got {type(items).__name__}: {_clip(raw.body)!r}",
            request_id=request_id,
            offset=offset,
        )
    # One pass in C for the usual page of plain objects; the slow search only when something else is there.
    odd = (
        None
        if not items or set(map(type, items)) == {dict}
        else next(((i, v) for i, v in enumerate(items) if not isinstance(v, dict)), None)
    )
    if odd is not None:
        raise BadResponse(
            f"item {odd[0]} of the page is {type(odd[1]).__name__}, not an order object",
            request_id=request_id,
            offset=offset,
        )
    return Page(
        offset=offset,
        items=items,
        ids=order_ids(items),
        total=raw.total,
        request_id=request_id,
        mended=mended,
    )


# How a fetcher turns a checked page into orders: ``decode_page`` or ``decode_lines``.
Decode = Callable[[RawPage], Page]
_BOM = b"\xef\xbb\xbf"
_PROXIES = (simdjson.Object, simdjson.Array)


def decode_lines(raw: RawPage) -> Page:
    """The orders of a checked page as JSON lines (for JSONL output), each without a line end, and their ids
    exactly as ``order_ids`` gives them for the same orders decoded by ``decode_page`` (but for an order with
    two "id" keys, see ``_simd_lines``). No Python object is built for an order, and none is encoded again.

    A line is the order's JSON text as the API sent it when the body is on one line (the usual compact
    answer), else simdjson's minified text of it: either way one line holding the same JSON value.

    A body simdjson refuses (it refuses integers beyond 64 bits) is checked by ``decode_page`` instead (the
    ids, and the same BadResponse for a body that is not JSON there either); its lines are still the
    orders' own bytes when it is on one line, else the JSON text of what ``decode_page`` read: either way
    such an integer keeps every digit."""
    # simdjson skips a leading byte order mark that decode_page refuses (check_page refuses it before this).
    if not raw.body.startswith(_BOM):
        try:
            found = _simd_lines(raw.body)
        except (ValueError, RuntimeError):  # simdjson's errors: NUMBER_ERROR, BIGINT_ERROR, UTF8_ERROR...
            found = None
        if found is not None:
            lines, ids = found
            return Page(offset=raw.offset, items=lines, ids=ids, total=raw.total, request_id=raw.request_id)
    # Refused, or not an array of objects: decode_page raises its BadResponse, or decodes the page.
    page = decode_page(raw)
    spans = _spans(raw.body, len(page.items))
    return Page(
        offset=page.offset,
        items=spans if spans is not None else [jsoncodec.encode(item) for item in page.items],
        ids=page.ids,
        total=page.total,
        request_id=page.request_id,
        mended=page.mended,
    )


def _simd_lines(body: bytes) -> tuple[list[bytes], list[Any]] | None:
    """``body``'s orders as one-line JSON texts and their ids, or None when it is not a JSON array of
    objects. simdjson validates the whole body (UTF-8, numbers, structure) and gives the ids.

    The texts: when the body holds no line break, each order's own bytes, cut out by msgspec (``Raw``),
    whose parse of a body simdjson took finds the same elements; about twice as fast as having simdjson
    print each element (``mini``), which is what a body with line breaks gets, since an order's bytes may
    then span lines.

    Everything happens between ``parse`` and the return: a ``simdjson.Parser`` refuses a new document while
    proxies into the last one live, so none outlives this call, and each call has a parser of its own (as
    cheap as reusing one: it allocates at ``parse`` either way), so even a proxy kept by a traceback cannot
    block the next page.

    An order with two "id" keys gets the first one's value here, where decode_page keeps the last (its line
    keeps both keys, as the API sent them): finding a second top-level "id" means looking at every key of
    every order, which costs about as much as simdjson saves."""
    one_line = _one_line(body)  # else _spans gives nothing: the elements' texts are printed in the loop
    parser = simdjson.Parser()
    doc = parser.parse(body)
    if type(doc) is not simdjson.Array:
        del doc
        return None
    minis: list[bytes] = []
    ids: list[Any] = []
    element: Any = None
    order_id: Any = None
    for element in doc:
        if type(element) is not simdjson.Object:
            del element, doc
            return None
        order_id = element.get("id")
        if isinstance(order_id, _PROXIES):
            order_id = _id_text(order_id)
        ids.append(order_id)
        if not one_line:
            minis.append(element.mini)  # type: ignore[arg-type]  # bytes, whatever pysimdjson's stub says
    if one_line:
        spans = _spans(body, len(ids))
        if spans is not None:
            del order_id, element, doc
            return spans, ids
        for element in doc:  # every one an object: checked above
            minis.append(element.mini)
    del order_id, element, doc
    return minis, ids


def _one_line(body: bytes) -> bool:
    """Whether ``body`` holds no line break: then none of its elements' bytes does either."""
    return b"\n" not in body and b"\r" not in body


def _spans(body: bytes, count: int) -> list[bytes] | None:
    """The bytes of each of the ``count`` elements of the JSON array ``body``: one line each, as JSON
    lines must be; None when the body has line breaks (an element's bytes could span them) or when msgspec
    does not find the elements (it stops at a depth simdjson allows, for one)."""
    if not _one_line(body):
        return None
    try:
        spans = jsoncodec.elements(body)
    except jsoncodec.DECODE_ERRORS:
        return None
    return spans if len(spans) == count else None


def _id_text(value: simdjson.Object | simdjson.Array) -> str:
    """An id that is a JSON object or array, hashable as ``order_ids`` makes it: the repr of its value."""
    return repr(value.as_dict() if isinstance(value, simdjson.Object) else value.as_list())


def parse_object(body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
    """A 2xx answer that must be one JSON object (an order's details)."""
    request_id = headers.get(REQUEST_ID)
    value = _decode(body, request_id=request_id, offset=None)
    if not isinstance(value, dict):
        raise BadResponse(f"expected a JSON object, got {type(value).__name__}", request_id=request_id)
    return value


def parse_token(body: bytes, headers: Mapping[str, str]) -> TokenAnswer:
    """A 2xx token answer; ``expires_in`` may be an integer or a string."""
    request_id = headers.get(REQUEST_ID)
    try:
        value = _decode(body, request_id=request_id, offset=None)
    except BadResponse as exc:
        if '_token"' in _clip(body):
            # Cut short after its token key: the quote _decode makes would show the token. Say what is
            # wrong, not what was in it; anything else (an HTML page from a proxy) is still quoted.
            exc.message = (
                "the token endpoint's answer is not a usable token answer (its body is not shown: "
                "it may hold a token)"
            )
        raise
    token = value.get("access_token") if isinstance(value, dict) else None
    if not isinstance(token, str) or not token:
        raise BadResponse("the token endpoint answered without an access_token", request_id=request_id)
    assert isinstance(value, dict)
    token_type = value.get("token_type")
    expires_in: float | None
    try:
        expires_in = float(value["expires_in"])
    except (KeyError, TypeError, ValueError):
        expires_in = None
    if expires_in is not None and not expires_in > 0:
        expires_in = None
    return TokenAnswer(
        token_type=token_type if isinstance(token_type, str) and token_type else "Bearer",
        access_token=token,
        expires_in=expires_in,
    )


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date (``now`` is a Unix time)."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


def error_for(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    offset: int | None = None,
    now: float = 0.0,
    token_call: bool = False,
) -> ApiError:
    """The error a non-2xx answer means, following API.md's table. Bodies may be anything."""
    request_id = headers.get(REQUEST_ID)
    code, message, description = _orange_fields(body)
    if message is None:
        message = f"HTTP {status}" + (f": {_clip(body)!r}" if not _blank(body) else " with an empty body")
    common: dict[str, Any] = {
        "status": status,
        "code": code,
        "description": description,
        "request_id": request_id,
        "offset": offset,
    }
    retry_after = parse_retry_after(headers.get("Retry-After"), now)
    if status == 429 or (status == 403 and code == 53):
        limited = RateLimited(f"rate limited: {message}", **common)
        limited.retry_after = retry_after
        return limited
    if token_call and status in (400, 401, 403):
        return CredentialsRefused(f"the token endpoint refused the client id/secret: {message}", **common)
    if status == 401:
        return Unauthorized(f"access token refused: {message}", **common)
    if status == 403:
        return ApiKeyRefused(f"the API key was refused (renew it through Orange): {message}", **common)
    if status >= 500:
        error = ServerError(f"server error: {message}", **common)
        error.retry_after = retry_after
        return error
    if status in (400, 404, 405, 406, 409, 410, 413, 414, 415, 422):
        return RequestRejected(f"the API rejected the request: {message}", **common)
    if 300 <= status < 400 and status != 304:
        # Not followed: the API key and the token would go wherever it points. Trying again changes nothing.
        target = headers.get("Location")
        where = f"to {_clip(target)!r}" if target else "without a Location"
        return RequestRejected(
            f"the API answered with a redirect (HTTP {status}) {where}, which is not followed so that the "
            "credentials go nowhere else: check --base-url and --token-url (https?)",
            **common,
        )
    return BadResponse(f"unexpected answer: {message}", **common)


def _blank(body: bytes) -> bool:
    # No strip(): a page is tens of kilobytes, and a copy of it per look adds up.
    return not body or body.isspace()


def _first_byte(body: bytes) -> bytes:
    """The first byte that is not whitespace (only a short head is looked at unless it is all blank)."""
    head = body[:64].lstrip()
    return head[:1] if head or len(body) <= 64 else body.lstrip()[:1]


def _last_byte(body: bytes) -> bytes:
    tail = body[-64:].rstrip()
    return tail[-1:] if tail or len(body) <= 64 else body.rstrip()[-1:]


def _decode(body: bytes, *, request_id: str | None, offset: int | None) -> Any:
    return _decode_mending(body, request_id=request_id, offset=offset)[0]


def _decode_mending(body: bytes, *, request_id: str | None, offset: int | None) -> tuple[Any, int]:
    """The JSON value of ``body``, and how many lone surrogate escapes it held (each decoded as U+FFFD);
    BadResponse naming the fault of a body that is not JSON."""
    if _blank(body):
        raise BadResponse("the body is empty", request_id=request_id, offset=offset)
    try:
        return jsoncodec.decode(body), 0
    except jsoncodec.DECODE_ERRORS as exc:
        mended, count = mend_lone_surrogates(body) if b"\\u" in body else (body, 0)
        if count:
            try:
                value = jsoncodec.decode(mended)
            except jsoncodec.DECODE_ERRORS:
                pass  # broken in another way too: named below by its first fault
            else:
                where = "the answer" if offset is None else f"the page at offset {offset}"
                log.warning(
                    "%s held %d lone surrogate escape(s) (half of a UTF-16 pair, not Unicode text): written "
                    "as U+FFFD%s",
                    where,
                    count,
                    f" [request id {request_id}]" if request_id else "",
                )
                return value, count
        why = _why_not_json(mended, exc)  # lone surrogates mended: the fault that remains
        if why.startswith("unexpected end of data"):
            hint = ": it may be cut short"
        elif _first_byte(body) == b"<":
            hint = ": it may be an HTML page from a proxy"
        else:
            hint = ""
        raise BadResponse(
            f"the body is not JSON ({why}; {len(body)} bytes, starts {_clip(body)!r}){hint}",
            request_id=request_id,
            offset=offset,
        ) from exc


# A JSON escape, read from its backslash so that an escaped backslash is never taken for the start of
# one: a high surrogate with its low one (kept), a high or a low surrogate alone, or any other escape.
_ESCAPE = re.compile(
    rb"\\(?:u[dD][89abAB][0-9a-fA-F]{2}(?:\\u[dD][c-fC-F][0-9a-fA-F]{2})?|u[dD][c-fC-F][0-9a-fA-F]{2}|.)",
    re.DOTALL,
)
_REPLACEMENT = rb"\ufffd"


def mend_lone_surrogates(body: bytes) -> tuple[bytes, int]:
    """``body`` with every lone surrogate escape (``\\ud83d`` without its low half, as a string cut in the
    middle of an emoji by a UTF-16 program gives) replaced by ``\\ufffd``, and how many there were.

    JSON's grammar allows such an escape, but it stands for no Unicode character: every fast decoder here
    refuses the whole body, and neither UTF-8 text nor Parquet can hold it. The replacement character is
    what a UTF-8 decoder puts for bytes that are not text; everything else is kept byte for byte."""
    count = 0

    def mend(match: re.Match[bytes]) -> bytes:
        nonlocal count
        escape = match.group()
        if len(escape) == 6 and escape[1:2] == b"u":  # only a surrogate alone matches as six bytes
            count += 1
            return _REPLACEMENT
        return escape

    return _ESCAPE.sub(mend, body), count


def _why_not_json(body: bytes, exc: BaseException) -> str:
    """What is wrong with a body the decoder refused, and where: orjson's words, which name the fault and
    its line and column (msgspec calls a lone surrogate escape "truncated"); the decoder's own otherwise.
    Bytes that are not UTF-8 (a server writing Latin-1, say) are named by their place in the body."""
    try:
        body.decode()
    except UnicodeDecodeError as bad:
        return f"not UTF-8: byte {body[bad.start]:#04x} at byte {bad.start}"
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as refused:
        return str(refused)
    except RecursionError:
        pass
    return str(exc) or type(exc).__name__


def _orange_fields(body: bytes) -> tuple[int | None, str | None, str | None]:
    """``code``, ``message``, ``description`` of an Orange or RFC 6749 error body, where there is one."""
    try:
        value = orjson.loads(body) if not _blank(body) else None
    except orjson.JSONDecodeError:
        return None, None, None
    if not isinstance(value, dict):
        return None, None, None
    code = value.get("code")
    message = value.get("message") or value.get("error")
    description = value.get("description") or value.get("error_description")
    return (
        code if isinstance(code, int) and not isinstance(code, bool) else _int_or_none(code),
        str(message) if message is not None else None,
        str(description) if description is not None else None,
    )


def _int_or_none(value: object) -> int | None:
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _clip(data: bytes | str) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = " ".join(text.split())
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "…"
