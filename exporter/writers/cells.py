"""Text forms of JSON values: the CSV cells of an order (``flatten_record``) and the text of a value that no
typed column can hold (``text_of``). Pure functions; the writers and the tests share them.

Rules of ``flatten_record`` (one cell per leaf, column name = the path of keys joined by ``.``):

- a nested object is flattened (``customer.id``, ``properties.site.city``); an *empty* object is one cell
  ``{}`` under its own name, so it stays apart from an absent or null one;
- a list is its JSON text (``["a",1]``); null is an empty cell (an absent field too: no cell at all);
- ``true``/``false``; a number is its JSON text (orjson's, every digit of a big integer kept); a string
  is itself, verbatim;
- a key that itself holds ``.`` or ``\\`` is written with ``\\.`` and ``\\\\``, so that ``{"a.b": 1}`` and
  ``{"a": {"b": 2}}`` can never share a column (ordinary keys are untouched).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from exporter.jsoncodec import encode

_KEY_ESCAPES = str.maketrans({"\\": "\\\\", ".": "\\."})


def json_text(value: Any) -> str:
    """The JSON text of a value (``jsoncodec.encode``: orjson's, any integer exact)."""
    return encode(value).decode()


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
    return {column_name(path): cell for path, cell in leaf_cells(record)}


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
