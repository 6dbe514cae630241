"""The chunks' vector index: HNSW (the schema's, migration 0009) or IVFFlat (opt-in), its state, and rebuilds.

HNSW needs no upkeep, but on manuals that are near-copies of each other (the same sections across a product
line) its greedy search stays inside one cluster: recall@10 0.72 at 1M such chunks (bench/hnsw_recall.py).
IVFFlat probes whole lists of neighbours and holds 0.996-0.999 there, but it learns its lists (k-means) from
the rows present when it is built: it cannot be built on an empty store, and needs rebuilding when the store
has grown or shrunk a lot since (new rows go to the nearest existing list, which then stops fitting).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Literal

import psycopg
from psycopg import Connection, sql
from psycopg.rows import dict_row

from supportbot.database import Database

Kind = Literal["hnsw", "ivfflat"]
KINDS: tuple[Kind, ...] = ("hnsw", "ivfflat")
NAMES: dict[Kind, str] = {"hnsw": "chunks_embedding_hnsw", "ivfflat": "chunks_embedding_ivfflat"}
# Migration 0009's graph (m 32, ef_construction 128), so that going back to HNSW restores the schema's index.
_USING: dict[Kind, str] = {"hnsw": "hnsw (embedding vector_cosine_ops) WITH (m = 32, ef_construction = 128)",
                           "ivfflat": "ivfflat (embedding vector_cosine_ops) WITH (lists = {lists})"}
# An IVFFlat index built on N rows is stale once the store holds more than N × this, or fewer than N / this.
STALE_FACTOR = 2.0

_INDEXES_SQL = """
SELECT i.relname AS name, am.amname AS kind, pg_get_indexdef(i.oid) AS definition,
       pg_relation_size(i.oid) AS bytes, obj_description(i.oid, 'pg_class') AS note
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_am am ON am.oid = i.relam
WHERE x.indrelid = 'chunks'::regclass AND am.amname IN ('hnsw', 'ivfflat')
ORDER BY i.relname
"""


class VectorIndexError(ValueError):
    """A build that cannot be done as asked; the message says why and what to do."""


@dataclass(frozen=True)
class VectorIndex:
    name: str
    kind: str
    definition: str
    bytes: int
    built_rows: int | None  # chunks when it was built by :func:`build` (None: by a migration)
    rows: int  # chunks now

    @property
    def lists(self) -> int | None:
        marker = "lists='"
        if marker not in self.definition:
            return None
        return int(self.definition.split(marker, 1)[1].split("'", 1)[0])

    @property
    def stale(self) -> bool:
        """An IVFFlat index whose lists were learnt on a store of another size (see STALE_FACTOR)."""
        if self.kind != "ivfflat" or self.built_rows is None:
            return False
        return self.rows > STALE_FACTOR * max(self.built_rows, 1) or self.rows * STALE_FACTOR < self.built_rows

    def advice(self) -> str | None:
        if not self.stale:
            return None
        return (f"the IVFFlat index was built on {self.built_rows:,} chunks and the store now holds {self.rows:,}: "
                "rebuild it (supportbot vector-index build --kind ivfflat)")


def default_lists(rows: int) -> int:
    """pgvector's advice: rows / 1000 lists up to 1M rows, √rows past it."""
    return max(1, rows // 1000 if rows <= 1_000_000 else round(math.sqrt(rows)))


def indexes(conn: Connection) -> list[VectorIndex]:
    """The vector indexes on chunks (normally one)."""
    cur = conn.cursor(row_factory=dict_row)
    total = cur.execute("SELECT count(*) AS n FROM chunks").fetchone()["n"]
    out = []
    for r in cur.execute(_INDEXES_SQL).fetchall():
        note = r["note"]
        built = json.loads(note).get("rows") if note and note.startswith("{") else None
        out.append(VectorIndex(r["name"], r["kind"], r["definition"], int(r["bytes"]), built, total))
    return out


def stale_advice(db: Database) -> list[str]:
    """What to do about each stale vector index (nothing, normally): said after uploads."""
    with db.connection() as conn:
        return [index.advice() or "" for index in indexes(conn) if index.stale]


def build(
    db: Database, kind: Kind, lists: int | None = None, maintenance_work_mem: str = "1GB"
) -> tuple[VectorIndex, float]:
    """Build a *kind* index on every chunk and make it the only vector index, in one transaction: searches go on
    through the old index meanwhile (ingestion waits), and a failed build leaves the old one. Returns the new
    index and the build's seconds. *lists*: IVFFlat's list count (default :func:`default_lists`)."""
    with db.connection() as conn, conn.transaction():
        return build_in(conn, kind, lists, maintenance_work_mem)


def build_in(
    conn: Connection, kind: Kind, lists: int | None = None, maintenance_work_mem: str = "1GB"
) -> tuple[VectorIndex, float]:
    """:func:`build` within the caller's transaction (bench/hnsw_recall.py rolls it back after measuring)."""
    if kind not in KINDS:
        raise VectorIndexError(f"kind: {kind!r} is not a vector index kind; use one of {', '.join(KINDS)}")
    if lists is not None and (kind != "ivfflat" or lists < 1):
        raise VectorIndexError("lists: only an IVFFlat index has lists, and at least one")
    rows = conn.cursor(row_factory=dict_row).execute("SELECT count(*) AS n FROM chunks").fetchone()["n"]
    if kind == "ivfflat":
        if rows == 0:
            raise VectorIndexError("the store holds no chunks, and IVFFlat learns its lists from the chunks "
                                   "present: ingest the knowledge base first (or keep HNSW)")
        lists = lists or default_lists(rows)
        if lists > rows:
            raise VectorIndexError(f"lists: {lists} lists need at least as many chunks; the store holds "
                                   f"{rows} (use --lists {default_lists(rows)})")
    try:
        conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", (maintenance_work_mem,))
    except psycopg.Error as exc:
        raise VectorIndexError(f"maintenance_work_mem: {maintenance_work_mem!r} is not a memory size "
                               f"PostgreSQL takes ({exc.diag.message_primary}); e.g. 1GB") from None
    started = time.perf_counter()
    conn.execute(sql.SQL("CREATE INDEX chunks_embedding_building ON chunks USING {}").format(
        sql.SQL(_USING[kind].format(lists=int(lists or 0)))))
    seconds = time.perf_counter() - started
    for old in NAMES.values():
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(old)))
    conn.execute(sql.SQL("ALTER INDEX chunks_embedding_building RENAME TO {}").format(sql.Identifier(NAMES[kind])))
    conn.execute(sql.SQL("COMMENT ON INDEX {} IS {}").format(
        sql.Identifier(NAMES[kind]), sql.Literal(json.dumps({"rows": rows, "seconds": round(seconds, 1)}))))
    built = [i for i in indexes(conn) if i.name == NAMES[kind]]
    return built[0], seconds
