"""BM25 in an external full-text engine (SUPPORTBOT_BM25=engine): Manticore Search or Sphinx, over SphinxQL.

For deployments whose full-text side outgrows one PostgreSQL. Postgres stays the source of truth: the
engine holds a derived copy of every chunk's lexemes, kept in step through the ``fulltext_pending`` queue
(one row per document written or deleted since the engine last saw it; see migration 0010). Every search
first applies what is queued, so the engine is never more than one search behind; ``supportbot fulltext
reindex`` rebuilds it whole. Chunks are indexed as Postgres' own English lexemes (``to_tsvector``), each
repeated as often as it counts in BM25 (a heading-path word twice), so both sides tokenize, stem and drop
stop words alike. The engine serves each word's postings in term-frequency order, and
``Searcher.engine_ranking`` scores the best candidates by exact BM25 in Postgres. The index definition is
``deploy/fulltext-engine.conf``.

A document's chunks are applied on the search path: the first search after a large upload waits for them
(about 1 s per 10,000 chunks: the benchmark's reindex of 100k chunks took 8-10 s).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import pymysql
from prometheus_client import Counter
from psycopg.rows import tuple_row

from supportbot.database import Database

log = logging.getLogger(__name__)

ENGINE_ERRORS = Counter(
    "supportbot_fulltext_engine_errors_total",
    "Full-text engine calls that failed (a failed search falls back to impact BM25 in Postgres)", ["operation"])


@dataclass(frozen=True)
class BM25:
    """The Postgres side's BM25 parameters and the corpus' average chunk length (in distinct lexemes)."""

    k1: float
    b: float
    avgdl: float


_PLAIN = re.compile(r"[a-z0-9]{1,40}")
_BATCH = 500


class EngineError(RuntimeError):
    """The full-text engine could not be reached or refused a statement."""


def encode_lexeme(lexeme: str) -> str:
    """A Postgres lexeme as one engine token: plain ones as they are, any other ("wi-fi", "2.4", "é…") as
    ``_`` + a hash (Postgres lexemes never hold ``_``, so the two kinds cannot collide)."""
    if _PLAIN.fullmatch(lexeme):
        return lexeme
    return "_" + hashlib.blake2b(lexeme.encode(), digest_size=12).hexdigest()


@dataclass(frozen=True)
class EngineUrl:
    host: str
    port: int
    index: str
    user: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> EngineUrl:
        """``sphinxql://[user:password@]host:port/index``."""
        parts = urlsplit(url)
        index = parts.path.strip("/")
        if parts.scheme != "sphinxql" or not parts.hostname or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", index):
            raise ValueError(f"SUPPORTBOT_BM25_ENGINE_URL must look like sphinxql://host:9306/index_name, not {url!r}")
        return cls(parts.hostname, parts.port or 9306, index,
                   unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None)


# Chunks as engine rows: id, document, collection, product, length in distinct lexemes (BM25's dl), and the
# lexemes with their tf as exact BM25 counts it (positions, plus the heading-path ones once more).
_CHUNK_ROWS_SQL = """
SELECT c.id, c.document_id, c.collection, coalesce(c.product, ''), length(c.tsv) AS dl, l.lexemes, l.tfs
FROM chunks c CROSS JOIN LATERAL (
    SELECT array_agg(u.lexeme) AS lexemes,
           array_agg(cardinality(u.positions) + cardinality(array_positions(u.weights, 'A'))) AS tfs
    FROM unnest(c.tsv) u
) l
WHERE {where}
ORDER BY c.id
"""

# Searches apply the queue under this advisory lock, shared; a rebuild holds it alone, so that no search
# writes into the engine while it is emptied and refilled (and none ranks with a half-filled one).
REBUILD_LOCK = 0x5B7E_F7E1

# Documents written or deleted since the engine last saw them, oldest first, each locked so that two searches
# never apply the same one.
_NEXT_PENDING_SQL = """
SELECT document_id, queued_at FROM fulltext_pending ORDER BY queued_at LIMIT %s FOR UPDATE SKIP LOCKED
"""


class FulltextEngine:
    """A SphinxQL client for one index: apply what Postgres queued, rebuild, and rank."""

    def __init__(self, url: str, timeout_s: float = 2.0, retry_after_s: float = 5.0) -> None:
        self.url = EngineUrl.parse(url)
        self.timeout_s = timeout_s
        # After a failure the engine is not asked again for this long: searches fall back at once instead of
        # each waiting out the connect timeout of an engine that is down.
        self.retry_after_s = retry_after_s
        self._down_until = 0.0
        self._local = threading.local()  # one connection per thread (pymysql connections are not thread-safe)

    def _connect(self) -> pymysql.connections.Connection:
        u = self.url
        try:
            return pymysql.connect(host=u.host, port=u.port, user=u.user or "", password=u.password or "",
                                   autocommit=True, connect_timeout=self.timeout_s,
                                   read_timeout=self.timeout_s * 5, write_timeout=self.timeout_s * 5)
        except pymysql.MySQLError as exc:
            raise EngineError(f"cannot reach the full-text engine at {u.host}:{u.port}: {exc}") from exc

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        if time.monotonic() < self._down_until:
            raise EngineError(f"the full-text engine at {self.url.host}:{self.url.port} failed less than "
                              f"{self.retry_after_s:g} s ago")
        conn = getattr(self._local, "conn", None)
        try:
            if conn is None:
                conn = self._local.conn = self._connect()
            with conn.cursor() as cur:
                yield cur
        except (pymysql.MySQLError, EngineError) as exc:
            # The connection is lost or never came (not a statement the engine refused): reconnect next time,
            # after retry_after_s (the engine may be restarting).
            if isinstance(exc, (pymysql.OperationalError, pymysql.InterfaceError, EngineError)):
                self._down_until = time.monotonic() + self.retry_after_s
                self._local.conn = None
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
            if isinstance(exc, EngineError):
                raise
            raise EngineError(f"full-text engine ({self.url.host}:{self.url.port}/{self.url.index}): {exc}") from exc

    def execute(self, sql: str, args: Sequence[Any] | None = None) -> list[tuple]:
        with self._cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    # -- ranking --------------------------------------------------------------------------------------

    def rank(self, terms: Sequence[tuple[str, float]], limit: int, bm25: BM25, depth: int = 1000,
             collection: str | None = None, product: str | None = None) -> list[int]:
        """Candidate chunk ids for the question's *terms* ((Postgres lexeme, IDF) pairs), best first.

        Each term's postings come from the engine in impact order (BM25's term weight without IDF, from the
        word's count in the chunk and the chunk's length: Postgres' impact postings), the *depth* best (one
        statement per term); a chunk's partial score is sum(idf × impact) over the lists it is in, with
        Postgres' IDF. Nothing of the engine's own statistics enters: its BM25F ranked 1M chunks far from
        BM25 (recall@10 0.05 against exact BM25, 0.99 at 100k), probably as Sphinx keeps term statistics per
        index chunk (that index had two)."""
        scores: dict[int, float] = {}
        for lexeme, idf in terms:
            for chunk_id, impact in self.postings(lexeme, depth, bm25, collection, product):
                scores[chunk_id] = scores.get(chunk_id, 0.0) + idf * impact
        return sorted(scores, key=lambda c: (-round(scores[c], 9), c))[:limit]

    def postings(self, lexeme: str, depth: int, bm25: BM25, collection: str | None = None,
                 product: str | None = None) -> list[tuple[int, float]]:
        """(chunk id, impact) of the *depth* chunks where *lexeme* weighs most."""
        where, args = "MATCH(%s)", [encode_lexeme(lexeme)]
        if collection is not None:
            where, args = where + " AND collection = %s", [*args, collection]
        if product is not None:
            where, args = where + " AND product = %s", [*args, product]
        depth = max(1, int(depth))
        k1, b, avgdl = float(bm25.k1), float(bm25.b), max(float(bm25.avgdl), 1.0)
        # WEIGHT() is the word's count in the chunk (hit_count; a heading-path word is indexed twice).
        impact = f"WEIGHT() * {k1 + 1!r} / (WEIGHT() + {k1!r} * ({1 - b!r} + {b / avgdl!r} * dl))"
        sql = (f"SELECT id, {impact} AS impact FROM {self.url.index} WHERE {where} ORDER BY impact DESC, id ASC "
               f"LIMIT {depth} OPTION ranker=expr('sum(hit_count)'), max_matches={max(depth, 1000)}")
        try:
            return [(int(row[0]), float(row[1])) for row in self.execute(sql, args)]
        except EngineError:
            ENGINE_ERRORS.labels("rank").inc()
            raise

    # -- keeping in step with Postgres ------------------------------------------------------------------

    def apply_pending(self, db: Database, max_documents: int = 100) -> int:
        """Apply the queued documents (up to *max_documents*); returns how many. Each document's queue row
        is deleted only once the engine holds its current chunks (or none, when it was deleted)."""
        done = 0
        try:
            with db.connection() as conn, conn.transaction():
                lock = conn.execute("SELECT pg_try_advisory_xact_lock_shared(%s) AS ok", (REBUILD_LOCK,)).fetchone()
                if not lock["ok"]:
                    raise EngineError("the full-text engine is being rebuilt (supportbot fulltext reindex)")
                pending = conn.cursor(row_factory=tuple_row).execute(_NEXT_PENDING_SQL, (max_documents,)).fetchall()
                if not pending:
                    return 0
                ids = [row[0] for row in pending]
                self._delete_documents(ids)
                self._write(self._chunk_rows(conn, "c.document_id = ANY(%s)", (ids,)))
                conn.execute("DELETE FROM fulltext_pending WHERE document_id = ANY(%s)", (ids,))
                done = len(ids)
        except EngineError:
            ENGINE_ERRORS.labels("sync").inc()
            raise
        if done:
            log.info("full-text engine: applied %d changed document(s)", done)
        return done

    def reindex(self, db: Database, progress: Callable[[int, int], None] | None = None) -> int:
        """Rebuild the index from every chunk in Postgres; returns the number of chunks indexed.

        Holds REBUILD_LOCK alone throughout: searches meanwhile rank with impact BM25 in Postgres. The queue
        is emptied first, so a document written while the chunks are read is queued again (and applied by
        the first search after the rebuild; one read by both is applied twice, which changes nothing). A
        rebuild that fails half-way leaves the engine partly filled: run it again (`fulltext status` shows
        the counts)."""
        with db.connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (REBUILD_LOCK,))  # waits for searches applying the queue
            conn.commit()
            try:
                conn.execute("DELETE FROM fulltext_pending")
                total = conn.execute("SELECT count(*) AS n FROM chunks").fetchone()["n"]
                conn.commit()
                self.execute(f"TRUNCATE RTINDEX {self.url.index}")
                written = 0
                with conn.cursor(name="fulltext_reindex", row_factory=tuple_row) as cur:
                    cur.itersize = 2000
                    cur.execute(_CHUNK_ROWS_SQL.format(where="true"))  # one statement: one snapshot
                    batch: list[tuple] = []
                    for row in cur:
                        batch.append(row)
                        if len(batch) >= _BATCH:
                            written += self._write(batch)
                            batch = []
                            if progress:
                                progress(written, total)
                    written += self._write(batch)
                conn.commit()
                if progress:
                    progress(written, total)
            finally:
                conn.rollback()
                conn.execute("SELECT pg_advisory_unlock(%s)", (REBUILD_LOCK,))
                conn.commit()
        return written

    def count(self) -> int:
        return int(self.execute(f"SELECT COUNT(*) FROM {self.url.index}")[0][0])

    @staticmethod
    def _chunk_rows(conn: Any, where: str, args: tuple) -> list[tuple]:
        return conn.cursor(row_factory=tuple_row).execute(_CHUNK_ROWS_SQL.format(where=where), args).fetchall()

    def _delete_documents(self, document_ids: Sequence[int]) -> None:
        # Sphinx deletes by id only: look the rows up by document first.
        ids_sql = ", ".join(str(int(d)) for d in document_ids)
        while True:
            rows = self.execute(f"SELECT id FROM {self.url.index} WHERE document_id IN ({ids_sql}) "
                                f"LIMIT 1000 OPTION max_matches=1000")
            if not rows:
                return
            self.execute(f"DELETE FROM {self.url.index} WHERE id IN ({', '.join(str(int(r[0])) for r in rows)})")

    def _write(self, rows: Sequence[tuple]) -> int:
        for start in range(0, len(rows), _BATCH):
            batch = rows[start:start + _BATCH]
            values, args = [], []
            for chunk_id, document_id, collection, product, dl, lexemes, tfs in batch:
                body = " ".join(" ".join([encode_lexeme(x)] * n) for x, n in zip(lexemes or (), tfs or (), strict=True))
                values.append("(%s, %s, %s, %s, %s, %s)")
                args += [chunk_id, body, document_id, collection, product, dl]
            self.execute(f"REPLACE INTO {self.url.index} (id, body, document_id, collection, product, dl) VALUES "
                         + ", ".join(values), args)
        return len(rows)


_engines: dict[tuple[str, float], FulltextEngine] = {}
_engines_lock = threading.Lock()


def engine_for(url: str, timeout_s: float = 2.0) -> FulltextEngine:
    """One client per engine URL in this process (each holds a connection per thread)."""
    with _engines_lock:
        key = (url, timeout_s)
        if key not in _engines:
            _engines[key] = FulltextEngine(url, timeout_s)
        return _engines[key]


def wait_until_ready(engine: FulltextEngine, timeout_s: float = 30.0) -> None:
    """Until the engine answers (it is started beside supportbot)."""
    deadline = time.monotonic() + timeout_s
    while True:
        engine._down_until = 0.0  # retry now, not after retry_after_s
        try:
            engine.count()
            return
        except EngineError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
