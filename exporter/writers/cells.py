"""Text forms of JSON values: the CSV cells of an order (``flatten_record``) and the text of a value that no
typed column can hold (``text_of``). Pure functions; the writers and the tests share them.

Rules of ``flatten_record`` (one cell per leaf, column name = the path of keys joined by ``.``):

- a nested object is flattened (``customer.id``, ``properties.site.city``); an *empty* object is one cell
  ``{}`` under its own name, so it stays apart from an absent or null one;
- a list is its JSON text (``["a",1]``); null is an empty cell (an absent field too: no cell at all);
- ``true``/``false``; a number is its JSON text (orjson's); a string is itself, verbatim;
- a key that itself holds ``.`` or ``\\`` is written with ``\\.`` and ``\\\\``, so that ``{"a.b": 1}`` and
  ``{"a": {"b": 2}}`` can never share a column (ordinary keys are untouched).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson

_KEY_ESCAPES = str.maketrans({"\\": "\\\\", ".": "\\."})


def json_text(value: Any) -> str:
    """The JSON text of a value (orjson's)."""
    return orjson.dumps(value).decode()


def text_of(value: Any) -> str:
    """A non-null value as text: strings verbatim, ``true``/``false``, numbers, objects and lists as JSON."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    return json_text(value)


def flatten_record(record: Mapping[str, Any]) -> dict[str, str]:
    """The CSV cells of one order: ``{column name: cell text}``, in the order of the order's fields."""
    out: dict[str, str] = {}
    keys = "".join(record)
    if "." in keys or "\\" in keys:
        _flatten_nested(record, "", out)
        return out
    # The top level inlined: it is most of the work, and most values are strings.
    for key, value in record.items():
        kind = type(value)
        if kind is str:
            out[key] = value
        elif value is None:
            out[key] = ""
        elif kind is dict:
            if value:
                _flatten_nested(value, key + ".", out)
            else:
                out[key] = "{}"
        elif kind is int:
            out[key] = str(value)
        elif kind is bool:
            out[key] = "true" if value else "false"
        else:
            out[key] = json_text(value)
    return out


def _flatten_nested(record: Mapping[str, Any], prefix: str, out: dict[str, str]) -> None:
    keys = "".join(record)
    escape = "." in keys or "\\" in keys
    for key, value in record.items():
        name = prefix + (key.translate(_KEY_ESCAPES) if escape else key)
        kind = type(value)
        if kind is str:
            out[name] = value
        elif value is None:
            out[name] = ""
        elif kind is dict:
            if value:
                _flatten_nested(value, name + ".", out)
            else:
                out[name] = "{}"
        elif kind is int:
            out[name] = str(value)
        elif kind is bool:
            out[name] = "true" if value else "false"
        else:
            out[name] = json_text(value)


def column_name(path: tuple[str, ...]) -> str:
    """The CSV column of a path of keys: joined by ``.``, a key's own ``.`` and ``\\`` escaped."""
    return ".".join(key.translate(_KEY_ESCAPES) for key in path)


def leaf_cells(
    record: Mapping[str, Any], path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str]]:
    """``(path of keys, cell text)`` of every leaf of ``record``: ``flatten_record`` with raw paths."""
    for key, value in record.items():
        here = (*path, key)
        if type(value) is dict and value:
            yield from leaf_cells(value, here)
        elif type(value) is dict:
            yield here, "{}"
        else:
            yield here, "" if value is None else text_of(value)
