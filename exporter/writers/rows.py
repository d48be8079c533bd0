"""CSV rows: where each leaf of an order goes (``Layout``) and the RFC 4180 text of rows (``encode_rows``).

Strategy: ``flatten_record`` builds a dict per order that then has to be laid out in column order, which
costs about as much again. ``Layout.row`` does both in one walk: a tree of dicts, one per nesting level,
maps each *raw* key straight to its column index, and the cell text goes into a pre-sized list. A key
without a column raises ``KeyError`` and the caller takes its slow path (``cells.leaf_cells``, then
``Layout.add``). Raw keys per level also mean a key holding a dot can never land in a nested column.
"""

from __future__ import annotations

from typing import Any

from exporter.writers.cells import column_name, json_text

# A level of the tree: raw key -> column index of its leaf; raw key -> the level below it.
_Level = tuple[dict[str, int], dict[str, Any]]


class Layout:
    """The columns of a CSV output, in order, and the tree that places an order's leaves in them."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.paths: list[tuple[str, ...]] = []  # the raw keys of each column given by add()
        self._root: _Level = ({}, {})
        self._blank: list[str] = []

    def __len__(self) -> int:
        return len(self.names)

    def add(self, path: tuple[str, ...]) -> bool:
        """Give ``path`` a column (at the end) unless it has one; whether it was new."""
        leaf, child = self._root
        for key in path[:-1]:
            level = child.get(key)
            if level is None:
                level = child[key] = ({}, {})
            leaf, child = level
        if path[-1] in leaf:
            return False
        leaf[path[-1]] = len(self.names)
        self.names.append(column_name(path))
        self.paths.append(path)
        self._blank.append("")
        return True

    def add_unreachable(self, name: str) -> None:
        """A last column that no leaf of an order can go to (``_extra``)."""
        self.names.append(name)
        self._blank.append("")

    def index(self, path: tuple[str, ...]) -> int | None:
        """The column of ``path``, or None."""
        leaf, child = self._root
        for key in path[:-1]:
            level = child.get(key)
            if level is None:
                return None
            leaf, child = level
        return leaf.get(path[-1])

    def row(self, record: dict[str, Any]) -> list[str]:
        """The cells of ``record`` in column order; ``KeyError`` when one of its leaves has no column."""
        cells = self._blank.copy()
        _fill(record, self._root, cells)
        return cells


def _fill(record: dict[str, Any], level: _Level, cells: list[str]) -> None:
    # cells.text_of written out: a call less per leaf, on the hot path of every CSV row.
    leaf, child = level
    for key, value in record.items():
        kind = type(value)
        if kind is str:
            cells[leaf[key]] = value
        elif value is None:
            if key not in leaf:
                raise KeyError(key)
        elif kind is dict:
            if value:
                _fill(value, child[key], cells)
            else:
                cells[leaf[key]] = "{}"
        elif kind is int:
            cells[leaf[key]] = str(value)
        elif kind is bool:
            cells[leaf[key]] = "true" if value else "false"
        else:
            cells[leaf[key]] = json_text(value)


def _quote(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"'


def encode_rows(rows: list[list[str]]) -> str:
    """RFC 4180 text of rows of equal width, each ending in CRLF; only the cells that need it are quoted."""
    if not rows:
        return ""
    if not rows[0]:
        return "\r\n" * len(rows)
    # Column by column: one join and four C scans tell whether a whole column is clean, as most are;
    # only the cells of a dirty column are looked at one by one.
    columns: list[Any] = list(zip(*rows, strict=True))
    single = len(columns) == 1  # a lone empty cell must be "" or the row would read as a blank line
    dirty = False
    for index, column in enumerate(columns):
        joined = "".join(column)
        if single or '"' in joined or "," in joined or "\n" in joined or "\r" in joined:
            columns[index] = [
                _quote(c) if ('"' in c or "," in c or "\n" in c or "\r" in c or (single and not c)) else c
                for c in column
            ]
            dirty = True
    lines = zip(*columns, strict=True) if dirty else rows
    return "\r\n".join(map(",".join, lines)) + "\r\n"
