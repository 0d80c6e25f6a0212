"""How L1 rows are stored in Redis hashes, and read back (see hot.py's layout).

Strings are UTF-8, ``embedding`` little-endian float32 bytes, timestamps
integer µs, bools ``1``/``0``, ``source_ids`` a JSON list; null fields are
omitted. `decode_light` reads the lifecycle's light fields (no text, no
vector), which is what a demote plan needs of every L1 record.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tiermem import schema as sch
from tiermem.ids import from_us
from tiermem.tiers import resp

_TS_COLS = ("created_at", "updated_at", "last_accessed_at", "expires_at", "tiered_at")
_JSON_COLS = ("source_ids",)
_BOOL_COLS = ("pinned",)
_INT_COLS = ("access_count", "version")


# Touch must not resurrect a record deleted since we looked up its
# namespace, hence the EXISTS check inside one atomic script.
# The record's `hits` field keeps the last HITS_KEPT access times (µs, comma
# separated) for the promotion window; it is not a schema column.
HITS_KEPT = 16
TOUCH_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local hits = redis.call('HGET', KEYS[1], 'hits')
hits = hits and (hits .. ',' .. ARGV[2]) or ARGV[2]
local parts = {}
for p in string.gmatch(hits, '[^,]+') do parts[#parts + 1] = p end
if #parts > tonumber(ARGV[3]) then
  hits = table.concat(parts, ',', #parts - tonumber(ARGV[3]) + 1, #parts)
end
redis.call('HSET', KEYS[1], 'hits', hits)
redis.call('HSET', KEYS[1], 'last_accessed_at', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'access_count', 1)
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZINCRBY', KEYS[3], 1, ARGV[1])
return 1
"""


def encode_columns(table: pa.Table) -> dict[str, list[Any]]:
    """Each column as a list of Redis values (None = field omitted)."""
    cols: dict[str, list[Any]] = {}
    for name in sch.COLUMNS:
        col = table.column(name)
        if name == "embedding":
            mat = sch.vectors(table).astype("<f4", copy=False)
            buf, step = mat.tobytes(), mat.shape[1] * 4
            cols[name] = [buf[i : i + step] for i in range(0, len(buf), step)]
        elif name in _TS_COLS or name in _INT_COLS:
            cols[name] = _decimals(col)
        elif name == "importance":
            cols[name] = _floats(col.to_pylist())
        elif name in _BOOL_COLS:
            cols[name] = [None if v is None else (b"1" if v else b"0") for v in col.to_pylist()]
        elif name in _JSON_COLS:
            cols[name] = [
                json.dumps(v, separators=(",", ":")) if v else "[]" for v in col.to_pylist()
            ]
        else:
            cols[name] = col.to_pylist()
    return cols


# Numbers go to hiredis as the bytes it would make of them (decimal ints, repr
# floats): converting them there was ~20% of packing a record.
_ARROW_DECIMALS_FROM = 256  # rows; below, Arrow's three casts cost more than Python


def _decimals(col: pa.ChunkedArray) -> list[bytes | None]:
    """Integers (timestamps as µs) in decimal: by Arrow in one pass for a batch,
    by Python for a few rows (one add: 7 columns, ~9 µs saved on each)."""
    ints = pc.cast(col, pa.int64())
    if len(col) < _ARROW_DECIMALS_FROM:
        return [None if v is None else b"%d" % v for v in ints.to_pylist()]
    out: list[bytes | None] = pc.cast(ints, pa.string()).cast(pa.binary()).to_pylist()
    return out


def _floats(values: list[float | None]) -> list[bytes | None]:
    return [None if v is None else repr(v).encode() for v in values]


def hset_commands(keys: Sequence[str], table: pa.Table, cols: dict[str, list[Any]]) -> list[Any]:
    """One ``HSET key field value ...`` per row of `table` (`cols` its `encode_columns`),
    fields in schema order, null ones left out.

    Built by one `zip` over the columns, not a loop per field: a column without
    nulls goes in whole, and only the rows with a null are rebuilt without it.
    """
    sparse = [n for n in sch.COLUMNS if table.column(n).null_count and _some(cols[n])]
    names = [n for n in sch.COLUMNS if not table.column(n).null_count or n in sparse]
    parts: list[Any] = [itertools.repeat("HSET"), keys]
    for name in names:
        parts += [itertools.repeat(name), cols[name]]
    rows: list[Any] = list(zip(*parts, strict=False))  # the repeats are endless
    gappy = {i for n in sparse for i, v in enumerate(cols[n]) if v is None}
    for i in gappy:  # few: rows with some of expires_at, superseded_by, name unset
        pairs = zip(rows[i][2::2], rows[i][3::2], strict=True)
        rows[i] = ("HSET", keys[i], *(x for n, v in pairs if v is not None for x in (n, v)))
    return rows


def _some(values: list[Any]) -> bool:
    """Whether a column with nulls has any value left to store."""
    return values.count(None) < len(values)


def fetch_command(key: str) -> tuple[str, ...]:
    """The command reading one record's schema fields, in `sch.COLUMNS` order.

    HMGET, not HGETALL: values only (half the reply items to parse), in a fixed
    order, so a batch decodes column by column without a dict per record.
    """
    return ("HMGET", key, *sch.COLUMNS)


_FIELDS = tuple(name.encode() for name in sch.COLUMNS)


def fetch_packed(keys: Sequence[str]) -> bytes:
    """`fetch_command` of every key, packed in RESP (the fields packed once)."""
    return resp.pack_many(b"HMGET", keys, _FIELDS)


def decode_rows(dim: int, replies: Sequence[Sequence[bytes | None]]) -> pa.Table:
    """`fetch_command` replies as a table of `schema(dim)`; vanished records
    (no id: every field nil) are skipped.

    Each column is converted by Arrow in one pass (UTF-8 checks, decimal
    parsing): a Python conversion per value was most of a large L1 read's cost.
    Up to `FEW_ROWS` records (a `get`) go value by value in Python instead,
    where the casts' fixed cost per column is the larger.
    """
    rows = [r for r in replies if r[0] is not None]
    if not rows:
        return sch.schema(dim).empty_table()
    by_name = dict(zip(sch.COLUMNS, zip(*rows, strict=True), strict=True))
    cols: dict[str, Any] = {}
    few = len(rows) <= FEW_ROWS
    for name, raw in by_name.items():
        if name == "embedding":
            buf = b"".join(v or b"" for v in raw)
            cols[name] = np.frombuffer(buf, dtype="<f4").reshape(len(rows), dim)
        elif name in _JSON_COLS:
            cols[name] = [[] if v is None or v == b"[]" else json.loads(v) for v in raw]
        elif few:
            cols[name] = _values(name, raw)
        else:
            cols[name] = _column(name, pa.array(raw, pa.binary()))
    return sch.from_columns(dim, cols)


# Up to this many rows a column is converted value by value in Python: Arrow's casts
# cost ~10-20 µs a column whatever the rows, ~300 µs a one-record `get` (16 columns).
FEW_ROWS = 16


def _values(name: str, raw: Sequence[bytes | None]) -> list[Any]:
    """`_column` for a few values, as Python values (`from_columns` types them)."""
    if name in _BOOL_COLS:
        return [v == b"1" for v in raw]
    if name in _TS_COLS or name in _INT_COLS:  # a timestamp column takes its µs
        return [None if v is None else int(v) for v in raw]
    if name == "importance":
        return [None if v is None else float(v) for v in raw]
    return [None if v is None else v.decode() for v in raw]


def _column(name: str, raw: pa.Array) -> pa.Array:
    """One stored field's values (binary, nulls for omitted fields) as its column type."""
    if name in _BOOL_COLS:  # an omitted flag is False, as it was written
        return pc.fill_null(pc.equal(raw, pa.scalar(b"1", pa.binary())), False)
    text = raw.cast(pa.string())
    if name in _TS_COLS:
        return text.cast(pa.int64()).cast(sch.TS)
    if name in _INT_COLS:
        return text.cast(pa.int64())
    if name == "importance":
        return text.cast(pa.float64())
    return text


LIGHT = (
    "id", "namespace", "kind", "created_at", "tiered_at", "last_accessed_at", "access_count",
    "importance", "expires_at", "pinned", "superseded_by",
)  # fmt: skip
"""The fields a lifecycle plan reads of every record (`lifecycle.snapshot`)."""
LIGHT_FIELDS = (*LIGHT, "hits", "text", "metadata")  # HMGET order; the last two as lengths
LIGHT_ARGS = (2, *LIGHT_FIELDS)  # `LIGHT_LUA`'s ARGV: 2 lengths at the end
DECIDE = ("id", "kind", "tiered_at", "last_accessed_at", "expires_at", "pinned", "superseded_by")
"""What a demote decides idle and age rules by: all a plan reads of a record
whose kind has no capacity in L1 (no selector looks at it). Half the light
fields, and no text or metadata copied: about half of Redis's work."""
DECIDE_ARGS = (0, *DECIDE)

# Per record key: HMGET of ARGV[2..] (e.g. the light fields, text and metadata),
# the last ARGV[1] of them replaced by their lengths in bytes (one call per
# record: two HSTRLEN calls cost Redis more than copying ~200 bytes into Lua).
# One reply for a whole batch: ~3x fewer replies to parse than a pipeline of
# the same commands. Missing fields come back as nil (Lua false); a missing
# text or metadata as 0.
LIGHT_LUA = """
local lens, n, out = tonumber(ARGV[1]), #ARGV - 1, {}
for i, key in ipairs(KEYS) do
  local row = redis.call('HMGET', key, unpack(ARGV, 2))
  for j = n - lens + 1, n do row[j] = row[j] and #row[j] or 0 end
  out[i] = row
end
return out
"""


def decode_light(
    replies: Sequence[Any],
) -> tuple[dict[str, list[Any]], list[int], dict[str, list[int]]]:
    """`LIGHT_LUA`'s reply: per record, `LIGHT_FIELDS`' values (the last two, text
    and metadata, as their lengths).

    Returns (the LIGHT columns as Python values, each record's text + metadata
    bytes, id -> recent hit times in µs). Records that vanished are skipped.
    Decoded column by column (one conversion loop per field, not a call per value).
    """
    rows = [r for r in replies if r[0] is not None]  # None: deleted since the id list
    if not rows:
        return {name: [] for name in LIGHT}, [], {}
    by_field = list(zip(*rows, strict=True))
    cols = {name: _light_column(name, by_field[i]) for i, name in enumerate(LIGHT)}
    text_len, meta_len = by_field[-2], by_field[-1]
    sizes = [int(t) + int(m) for t, m in zip(text_len, meta_len, strict=True)]
    raw_hits = by_field[len(LIGHT)]
    hits = {
        id_: [int(x) for x in raw.split(b",")]
        for id_, raw in zip(cols["id"], raw_hits, strict=True)
        if raw
    }
    return cols, sizes, hits


def decode_decide(replies: Sequence[Any]) -> dict[str, list[Any]]:
    """`LIGHT_LUA`'s reply for `DECIDE_ARGS`: the `DECIDE` columns as Python
    values (as `decode_light`'s); records that vanished are skipped."""
    rows = [r for r in replies if r[0] is not None]
    if not rows:
        return {name: [] for name in DECIDE}
    by_field = zip(*rows, strict=True)
    return {name: _light_column(name, raw) for name, raw in zip(DECIDE, by_field, strict=True)}


def _light_column(name: str, raw: Sequence[bytes | None]) -> list[Any]:
    if name in _TS_COLS:  # memoised: a batch of adds shares its timestamps
        memo: dict[bytes, datetime] = {}
        return [
            None if v is None else memo[v] if v in memo else memo.setdefault(v, from_us(int(v)))
            for v in raw
        ]
    if name in _INT_COLS:
        return [None if v is None else int(v) for v in raw]
    if name in _BOOL_COLS:
        return [None if v is None else v == b"1" for v in raw]
    if name == "importance":
        return [None if v is None else float(v) for v in raw]
    return [None if v is None else v.decode() for v in raw]
