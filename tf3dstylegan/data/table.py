"""Covariate tables (BIDS participants.tsv style) and how their rows are matched to input files.

A table is UTF-8 CSV (`.csv`) or TSV (`.tsv`; other names: tab-separated if the header has a tab),
with a header row. The id column is `participant_id` when there is one, else the first column; ids
are unique. Every other column is a covariate. Empty cells, `n/a`, `na`, `nan` and `null` (any case) are
missing values. Line endings may be LF, CRLF or CR; a cell may hold up to MAX_CELL characters.

Matching rule: an input file matches the row whose id equals its stem (the name without .nii.gz,
.nii or .npz); failing that, the row whose id appears in the stem as whole `_`-separated parts
(`sub-01` matches `sub-01_ses-2_T1w.nii.gz`, not `sub-010_T1w.nii.gz`). Several files may share one
row (sessions of one subject); a file matching no row, or two rows, is an error.

Kinds: a column is categorical when declared (`name` or `name=A|B|C` with its categories) or when
none of its values is a number; otherwise it is continuous and every value must be a finite number.
"""
import csv
import dataclasses
import io
import math
import re
from pathlib import Path
from typing import Dict, List, Tuple

from tf3dstylegan.data.volumes import DataError, volume_suffix

MISSING = ("", "n/a", "na", "nan", "null")
MAX_TABLE_BYTES = 64 << 20
MAX_CELL = 4096  # characters; longer cells (or a quote left open) are refused
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")  # plain decimal numbers (no 1_000, 0x10)
CONTINUOUS, CATEGORICAL = "continuous", "categorical"


@dataclasses.dataclass(frozen=True)
class Table:
    """A covariate table: its id column, covariate columns and rows of stripped strings."""

    path: Path
    id_column: str
    columns: Tuple[str, ...]  # covariates, in file order
    rows: Tuple[Dict[str, str], ...]
    lines: Tuple[int, ...]  # the file line of each row (the header is line 1)

    def where(self, index) -> str:
        """'<table>, line N (id X)': where a row is, for messages."""
        return f"{self.path}, line {self.lines[index]} (id {self.rows[index][self.id_column]!r})"


def read_table(path) -> Table:
    """Read and check a covariate table; DataError naming the file (and line) when it is bad."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_TABLE_BYTES:
            raise DataError(path, f"{size} bytes is too large for a covariate table (limit {MAX_TABLE_BYTES})")
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(path, "not UTF-8 text: expected a CSV or TSV covariate table") from None
    except OSError as err:
        raise DataError(path, f"cannot read the covariate table ({err.strerror or err})") from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise DataError(path, "empty covariate table: expected a header row")
    name = path.name.lower()
    delimiter = "\t" if name.endswith(".tsv") or (not name.endswith(".csv") and "\t" in lines[0]) else ","
    records = _records(path, text, delimiter)
    header = [h.strip() for h in records[0][1]]
    if len(header) < 2:
        raise DataError(path, f"needs an id column and at least one covariate column, has {header}")
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates or "" in header:
        raise DataError(path, f"column names must be unique and not empty, got {header}")
    id_column = "participant_id" if "participant_id" in header else header[0]
    rows, numbers, first_line = [], [], {}
    for line, record in records[1:]:
        if len(record) != len(header):
            raise DataError(path, f"line {line}: {len(record)} fields, expected {len(header)} like the header "
                                  f"(separator {'tab' if delimiter == chr(9) else 'comma'})")
        row = {h: v.strip() for h, v in zip(header, record)}
        ident = row[id_column]
        if ident.lower() in MISSING:
            raise DataError(path, f"line {line}: missing id in column {id_column!r}")
        if ident in first_line:
            raise DataError(path, f"line {line}: duplicate id {ident!r} (first on line {first_line[ident]})")
        first_line[ident] = line
        rows.append(row)
        numbers.append(line)
    if not rows:
        raise DataError(path, "has a header but no rows")
    return Table(path, id_column, tuple(h for h in header if h != id_column), tuple(rows), tuple(numbers))


def _records(path, text, delimiter):
    """[(first line, fields)] of the non-empty records; DataError naming the line of a cell that is too long or
    a quote that runs past its line (unterminated)."""
    reader = csv.reader(io.StringIO(text, newline=None), delimiter=delimiter)  # universal newlines: CR-only too
    records, line = [], 1
    try:
        for fields in reader:
            if any("\n" in field for field in fields):
                raise DataError(path, f"line {line}: a quoted field runs over lines {line}-{reader.line_num} (a "
                                      f"quote left open?)")
            long = [field for field in fields if len(field) > MAX_CELL]
            if long:
                raise DataError(path, f"line {line}: a cell of {len(long[0]):,} characters (at most {MAX_CELL})")
            if fields:
                records.append((line, fields))
            line = reader.line_num + 1
    except csv.Error as err:
        raise DataError(path, f"line {reader.line_num}: not a readable CSV/TSV row ({err})") from None
    return records


def file_stem(path) -> str:
    """The name of a volume file without its .nii.gz/.nii/.npz suffix."""
    name = Path(path).name
    suffix = volume_suffix(name)
    return name[:-len(suffix)] if suffix else name


def _id_in_stem(ident, stem) -> bool:
    return f"_{ident}_" in f"_{stem}_"


def match_files(table: Table, paths) -> List[int]:
    """The table row index of every input file (module docstring's rule); DataError naming the file."""
    by_id = {row[table.id_column]: i for i, row in enumerate(table.rows)}
    matches = []
    for path in paths:
        stem = file_stem(path)
        if stem in by_id:
            matches.append(by_id[stem])
            continue
        found = [i for ident, i in by_id.items() if _id_in_stem(ident, stem)]
        if not found:
            raise DataError(path, f"no row of {table.path} matches this file (ids are matched to the file name "
                                  f"{stem!r} or its _-separated parts, e.g. sub-01 in sub-01_T1w)")
        if len(found) > 1:
            ids = ", ".join(repr(table.rows[i][table.id_column]) for i in found)
            raise DataError(path, f"matches several rows of {table.path}: ids {ids}")
        matches.append(found[0])
    return matches


def parse_categorical_flags(categorical) -> Dict[str, Tuple[str, ...]]:
    """['sex', 'site=A|B'] -> {'sex': (), 'site': ('A', 'B')} (declared categories, in order)."""
    declared = {}
    for entry in categorical or ():
        name, _, values = str(entry).partition("=")
        categories = tuple(v.strip() for v in values.split("|") if v.strip()) if values else ()
        if not name.strip() or (values and len(set(categories)) != len(values.split("|"))):
            raise DataError("--categorical", f"expected NAME or NAME=A|B|C with distinct categories, got {entry!r}")
        declared[name.strip()] = categories
    return declared


def _number(text):
    if not _NUMBER.match(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def covariate_values(table: Table, row_indices, columns=None, categorical=()):
    """(names, kinds, declared categories, values) of the chosen columns over the given rows.

    values holds one {name: float or str} per row index; every cell is checked (missing value,
    non-numeric value in a continuous column, unknown category): DataError naming table and line."""
    declared = parse_categorical_flags(categorical)
    names = tuple(columns) if columns else table.columns
    if len(set(names)) != len(names):
        raise DataError("--label_columns", f"names a column twice: {', '.join(names)}")
    for name in (*names, *declared):
        if name not in table.columns:
            flag = "--label_columns" if name in names else "--categorical"
            raise DataError(flag, f"no covariate column {name!r} in {table.path} (has {', '.join(table.columns)})")
    undeclared = [n for n in declared if n not in names]
    if undeclared:
        raise DataError("--categorical", f"{', '.join(undeclared)} not among the chosen --label_columns")
    kinds, values = [], [{} for _ in row_indices]
    for name in names:
        cells = [table.rows[i][name] for i in row_indices]
        for row_index, cell in zip(row_indices, cells):
            if cell.lower() in MISSING:
                raise DataError(table.where(row_index), f"missing value in column {name!r}")
        numeric = name not in declared and any(_number(c) is not None for c in cells)
        kinds.append(CONTINUOUS if numeric else CATEGORICAL)
        for value, row_index, cell in zip(values, row_indices, cells):
            if numeric:
                value[name] = _number(cell)
                if value[name] is None:
                    raise DataError(table.where(row_index), f"non-numeric value {cell!r} in continuous column "
                                                            f"{name!r} (declare it with --categorical {name})")
            else:
                if declared.get(name) and cell not in declared[name]:
                    raise DataError(table.where(row_index), f"unknown category {cell!r} in column {name!r} "
                                                            f"(expected {', '.join(declared[name])})")
                value[name] = cell
    return names, tuple(kinds), {n: c for n, c in declared.items() if c}, values
