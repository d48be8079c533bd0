"""Read an export back in each format and compare it with the sandbox's own records."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq

from exporter.writers.csv import flatten_record


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def read_parquet(path: Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist()  # type: ignore[no-any-return]


def ids_of(path: Path, fmt: str) -> list[str]:
    if fmt == "jsonl":
        return [r["id"] for r in read_jsonl(path)]
    if fmt == "csv":
        return [r["id"] for r in read_csv(path)[1]]
    return [r["id"] for r in read_parquet(path)]


def same_value(stored: Any, original: Any) -> bool:
    """Whether a value read back from Parquet stands for the JSON value the API sent."""
    if original is None:
        return (
            stored is None
            or stored == {}
            or (isinstance(stored, dict) and all(v is None for v in stored.values()))
        )
    if isinstance(stored, dt.datetime) and isinstance(original, str):
        return stored == dt.datetime.fromisoformat(original.replace("Z", "+00:00"))
    if isinstance(stored, dt.date) and isinstance(original, str):
        return stored.isoformat() == original
    if isinstance(stored, str) and isinstance(original, dict | list):
        return bool(orjson.loads(stored) == original)
    if isinstance(stored, str) and not isinstance(original, str):
        return stored == orjson.dumps(original).decode()
    if isinstance(stored, dict) and isinstance(original, dict):
        return all(same_value(stored.get(k), v) for k, v in original.items()) and all(
            stored[k] is None for k in stored.keys() - original.keys()
        )
    if isinstance(stored, list) and isinstance(original, list):
        return len(stored) == len(original) and all(
            same_value(s, o) for s, o in zip(stored, original, strict=True)
        )
    if isinstance(original, float) or isinstance(stored, float):
        return bool(float(stored) == float(original))
    return bool(stored == original)


def assert_export_matches(path: Path, fmt: str, expected: list[dict[str, Any]]) -> None:
    """The exact ids in the exact order, and every field value equal, read back in ``fmt``."""
    if fmt == "jsonl":
        got = read_jsonl(path)
        assert [r.get("id") for r in got] == [r.get("id") for r in expected]
        assert got == expected
    elif fmt == "csv":
        header, rows = read_csv(path)
        assert [r.get("id", "") for r in rows] == [flatten_record(r).get("id", "") for r in expected]
        for row, record in zip(rows, expected, strict=True):
            flat = flatten_record(record)
            assert {k: row[k] for k in flat} == flat, record.get("id")
            assert all(row[k] == "" for k in row.keys() - flat.keys()), record.get("id")
        assert len(header) == len(set(header))
    else:
        got = read_parquet(path)
        assert [r.get("id") for r in got] == [r.get("id") for r in expected]
        for row, record in zip(got, expected, strict=True):
            for key, value in record.items():
                assert key in row, f"field {key!r} of {record.get('id')} is missing from the Parquet file"
                assert same_value(row[key], value), (record.get("id"), key, row[key], value)
            for key in row.keys() - record.keys():
                assert same_value(row[key], None), (record.get("id"), key, row[key])
