"""Loading an L2 namespace directory: segments, tombstones, access stats.

The rules (see `tiermem.tiers.warm`): the highest compacted segment wins
over every lower seq and its tombstones; a ``.tmp`` is a write that never
reached its rename; access stats apply only to the same copy of a row
(same id and seq).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa

from tiermem.errors import ConfigError
from tiermem.tiers.warm_files import NAME_FILE, io_errors, map_ipc, read_tombstones
from tiermem.tiers.warm_index import HnswParams
from tiermem.tiers.warm_ns import ACCESS, COMPACTED, SEGMENT_RE, TOMBSTONES, Namespace


def load_namespace(path: Path, params: HnswParams, read_only: bool) -> Namespace:
    """Replay a namespace directory (see `tiermem.tiers.warm` for the rules)."""
    with io_errors("load", path):
        try:
            name = (path / NAME_FILE).read_text()
        except FileNotFoundError:
            name = unquote(path.name)
        ns = Namespace(name, path, params)
        segments = _read_segments(ns, read_only)
        base = max((seq for seq, t in segments if _compacted(t)), default=0)
        ns.vec.reserve(sum(t.num_rows for seq, t in segments if seq >= base))
        tombs = read_tombstones(path / TOMBSTONES, read_only)
        ns.tomb_lines = len(tombs)
        dead = {(i, s) for i, s in tombs if s >= base}
        for seq, table in segments:
            if seq < base:  # superseded by a compacted segment
                if not read_only:
                    (path / f"seg-{seq:08d}.arrow").unlink()
                continue
            ns.append(table.replace_schema_metadata(None), seq, detach=True)
            if dead:
                ids = table.column("id").to_pylist()
                ns.kill_ids([i for i in ids if (i, seq) in dead], persist=False)
        _load_access(ns)
        ns.vec.load_ann(path, ns.covers())
    return ns


def _compacted(table: pa.Table) -> bool:
    return COMPACTED in (table.schema.metadata or {})


def _read_segments(ns: Namespace, read_only: bool) -> list[tuple[int, pa.Table]]:
    out = []
    for entry in sorted(ns.path.iterdir()):
        if entry.name.endswith(".tmp"):
            if not read_only:
                entry.unlink()  # a write that never reached its rename
        elif match := SEGMENT_RE.fullmatch(entry.name):
            table = map_ipc(entry)
            if not table.schema.equals(ns.schema, check_metadata=False):
                raise ConfigError(f"{entry}: schema does not match dim={ns.params.dim}")
            out.append((int(match[1]), table))
    return out


def _load_access(ns: Namespace) -> None:
    path = ns.path / ACCESS
    if not path.exists():
        return
    t = map_ipc(path)
    last = t.column("last_accessed_at").cast(pa.int64()).to_numpy()
    count = t.column("access_count").to_numpy()
    for j, (id_, seq) in enumerate(
        zip(t.column("id").to_pylist(), t.column("seq").to_pylist(), strict=True)
    ):
        row = ns.id2row.get(id_)
        if row is not None and ns.seq_of(row) == seq:  # same copy of the row
            ns.last_us[row], ns.count[row] = last[j], count[j]
