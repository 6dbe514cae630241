"""Hybrid retrieval in one SQL statement: pgvector cosine (HNSW, or IVFFlat: ingestion.vector_index) + BM25 over
Postgres full text, fused by RRF."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from psycopg import Connection
from psycopg.rows import dict_row, tuple_row

from ingestion.chunk import HEADING_SEPARATOR
from ingestion.embed import Embedder
from ingestion.fulltext_engine import BM25, EngineError, FulltextEngine, engine_for
from ingestion.impact_bm25 import EXACT_SCORE_SQL, RESCORE_FACTOR, TextRanking, impact_ranking
from supportbot.database import Database
from supportbot.settings import Settings, get_settings

log = logging.getLogger(__name__)

RRF_K = 60
# Words of questions about anything; their absence from a knowledge base tells nothing.
EVERYDAY_WORDS = """
long last much many time way get make work need want use like know help please thing problem issue
question possible able new old good best better right wrong happen mean take keep still day hour minute
week month year often ever never always really something anything everything someone anyone tell show
find look give go come see try start stop put set turn let say ask
"""
BM25_K1 = 1.2
BM25_B = 0.5  # chunks are short and similar in length: normalise length only mildly

# Lexemes that more chunks hold than this share still add their (small) IDF to a matched chunk's
# score, but do not make a chunk match: a word in every heading path (the manual's title) would
# otherwise send every chunk through BM25 scoring.
MATCH_MAX_SHARE = 0.5

# The question's lexemes with their IDF (from lexeme_stats, kept exact by triggers on chunks).
_TERMS_SQL = """
SELECT s.lexeme, s.ndoc, cs.nchunks, ln(1 + (cs.nchunks - s.ndoc + 0.5) / (s.ndoc + 0.5)) AS idf
FROM (SELECT DISTINCT unnest(tsvector_to_array(to_tsvector('english', %s))) AS lexeme) q
JOIN lexeme_stats s ON s.lexeme = q.lexeme
CROSS JOIN corpus_stats cs
"""

# The vector side alone, run on a second connection while the full-text side runs on the first.
_FILTER = """(%(collection)s::text IS NULL OR collection = %(collection)s)
  AND (%(product)s::text IS NULL OR product = %(product)s)"""
VECTOR_SQL = f"""
SELECT id, embedding <=> %(vector)s AS distance
FROM chunks
WHERE {_FILTER}
ORDER BY embedding <=> %(vector)s
LIMIT %(candidates)s
"""
# A collection filter that leaves at most this many chunks is searched exactly: every distance computed,
# through cosine_distance() (the <=> operator's function, which the HNSW index does not serve), after the
# (collection, product) index (a product alone has no index of its own to count it by). At 100k mixed
# chunks, 5,000 filtered chunks took 20-22 ms this way against 41-44 ms through the HNSW index, whose
# iterative scan needs several rounds to find 40 rows at 5 % selectivity (and misses some on near-copies).
EXACT_FILTER_MAX_ROWS = 10_000
EXACT_VECTOR_SQL = VECTOR_SQL.replace("embedding <=> %(vector)s", "cosine_distance(embedding, %(vector)s)")
_FILTERED_ROWS_SQL = f"SELECT count(*) FROM (SELECT 1 FROM chunks WHERE {_FILTER} LIMIT %(limit)s) f"

# The vector side's ranks, from its rows by distance (relaxed_order may return them slightly out of order).
_VECTOR_HITS = """vector_hits AS (
    SELECT id, distance, row_number() OVER (ORDER BY distance) AS rank FROM nearest
),
"""

# One statement: the vector side (HNSW, filters applied during the scan), the full-text side
# ranked by BM25 (a heading-path lexeme, weight A, counts twice), and weighted reciprocal-rank
# fusion of the two. Only the k fused ids are joined back to chunks and documents.
_VECTOR_SQL = f"""
WITH terms AS (
    SELECT * FROM unnest(%(lexemes)s::text[], %(idfs)s::float8[]) AS t(lexeme, idf)
),
nearest AS ({VECTOR_SQL}),
""" + _VECTOR_HITS

# Exact BM25: every chunk holding an informative word of the question is scored. Its cost grows
# with the table (864 ms p50 at 100k chunks); kept for evaluation (SUPPORTBOT_BM25=exact).
_EXACT_TEXT_SQL = f"""
matched AS (
    SELECT id, tsv FROM chunks
    WHERE tsv @@ %(match)s::tsquery AND {_FILTER}
),
text_hits AS (
    SELECT m.id, row_number() OVER (ORDER BY round(sum(
               t.idf * tf.n * (%(k1)s + 1) / (tf.n + %(k1)s * (1 - %(b)s + %(b)s * length(m.tsv) / %(avgdl)s))
           )::numeric, 9) DESC, m.id) AS rank
    FROM matched m
    CROSS JOIN LATERAL unnest(m.tsv) u
    JOIN terms t ON t.lexeme = u.lexeme
    CROSS JOIN LATERAL (
        SELECT cardinality(u.positions) + cardinality(array_positions(u.weights, 'A')) AS n
    ) tf
    GROUP BY m.id
    ORDER BY rank
    LIMIT %(candidates)s
),
"""

# SUPPORTBOT_BM25=engine: postings read from the engine per word of the question (its best chunks by impact).
ENGINE_DEPTH = 1000
_ENGINE_FALLBACK = "%s; this search uses impact BM25 in Postgres"
# SUPPORTBOT_BM25=engine: the engine's candidates (%(text_candidates)s, ids) scored by exact BM25, as above;
# ids the engine still holds after their chunk was deleted have no postings, and drop out.
_RESCORE_SQL = """
SELECT k.chunk_id AS id FROM unnest(%(text_candidates)s::bigint[]) AS k(chunk_id)
""" + EXACT_SCORE_SQL + """
WHERE e.score IS NOT NULL
ORDER BY round(e.score::numeric, 9) DESC, k.chunk_id
LIMIT %(candidates)s
"""


# Both sides' rankings computed beforehand, handed to the fusion.
_GIVEN_VECTOR_SQL = """
WITH nearest AS (
    SELECT * FROM unnest(%(vector_ids)s::bigint[], %(vector_distances)s::float8[]) AS v(id, distance)
),
""" + _VECTOR_HITS

# The impact side's ranking, computed first, handed to the hybrid statement.
_GIVEN_TEXT_SQL = """
text_hits AS (
    SELECT t.id, t.rank FROM unnest(%(text_ids)s::bigint[]) WITH ORDINALITY AS t(id, rank)
),
"""

_FUSED_SQL = """
fused AS (
    SELECT coalesce(v.id, t.id) AS id,
           coalesce(%(vector_weight)s / (%(rrf_k)s + v.rank), 0)
             + coalesce(%(text_weight)s / (%(rrf_k)s + t.rank), 0) AS score,
           1 - v.distance AS similarity, v.rank AS vector_rank, t.rank AS text_rank
    FROM vector_hits v
    FULL OUTER JOIN text_hits t ON t.id = v.id
    ORDER BY score DESC, id
    LIMIT %(k)s
)
SELECT c.id AS chunk_id, c.document_id, c.text, c.heading_path, c.page, c.collection, c.product,
       d.title, d.source, f.score, f.similarity, f.vector_rank, f.text_rank
FROM fused f
JOIN chunks c ON c.id = f.id
JOIN documents d ON d.id = c.document_id
ORDER BY f.score DESC, c.id
"""

HYBRID_SQL = _VECTOR_SQL + _EXACT_TEXT_SQL + _FUSED_SQL  # exact BM25, as before


# Exact BM25 alone (the full-text half of HYBRID_SQL): for evaluation against the impact side.
EXACT_TEXT_SQL = (_VECTOR_SQL[: _VECTOR_SQL.index("nearest AS")].rstrip().rstrip(",") + ","
                  + _EXACT_TEXT_SQL.rstrip().rstrip(",") + "\nSELECT id FROM text_hits ORDER BY rank")


def hybrid_sql(bm25: str, collection: str | None, product: str | None, *, given_vector: bool = False) -> str:
    """The hybrid statement for *bm25* ("impact" or "engine": the text ranking comes in as %(text_ids)s, see
    :func:`impact_text_sql`; "exact": computed inside) and the filters in use; *given_vector*: the vector
    side's ranking comes in too (%(vector_ids)s, %(vector_distances)s: :data:`VECTOR_SQL`'s rows)."""
    if bm25 == "exact":
        return HYBRID_SQL
    return (_GIVEN_VECTOR_SQL if given_vector else _VECTOR_SQL) + _GIVEN_TEXT_SQL + _FUSED_SQL


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    document_id: int
    text: str
    title: str
    source: str
    heading_path: list[str]
    page: int | None
    collection: str
    product: str | None
    score: float
    similarity: float | None  # cosine similarity when the vector ranker found it
    vector_rank: int | None
    text_rank: int | None

    @property
    def heading(self) -> str:
        return HEADING_SEPARATOR.join(self.heading_path)

    def to_dict(self) -> dict:
        return asdict(self)


def _quote(lexeme: str) -> str:
    """A lexeme as a tsquery operand (already normalised: no second pass through a dictionary)."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


class Searcher:
    """Embeds a query and runs the hybrid statement; filters still return k rows."""

    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        candidates: int = 40,
        ef_search: int = 100,
        vector_weight: float = 1.0,
        text_weight: float = 1.5,
        bm25: str = "impact",
        per_term: int = 5000,
        max_per_term: int | None = None,
        parallel: bool = True,
        engine: FulltextEngine | None = None,
        probes: int = 20,
    ) -> None:
        if bm25 not in ("impact", "exact", "engine"):
            raise ValueError(f"bm25 must be 'impact', 'exact' or 'engine', not {bm25!r}")
        if (bm25 == "engine") != (engine is not None):
            raise ValueError("bm25='engine' needs a FulltextEngine, and only it")
        self.bm25 = bm25
        self.engine = engine
        self.per_term = per_term
        # Deepest pass: postings per word (None: as deep as per_term, no second pass).
        self.max_per_term = max(per_term, max_per_term or per_term)
        self.db = db
        self.embedder = embedder
        self.candidates = candidates
        self.ef_search = ef_search
        self.probes = probes
        self.vector_weight = vector_weight
        self.text_weight = text_weight
        # The vector side runs on a second connection while the full-text side runs (not with exact BM25,
        # which is one statement with it).
        self._vector_side = ThreadPoolExecutor(thread_name_prefix="vector-side") if parallel and bm25 != "exact" \
            else None

    @classmethod
    def from_settings(cls, db: Database, embedder: Embedder, settings: Settings | None = None) -> Searcher:
        s = settings or get_settings()
        engine = engine_for(s.bm25_engine_url, s.bm25_engine_timeout_s) if s.bm25 == "engine" else None
        return cls(db, embedder, s.search_candidates, s.hnsw_ef_search, s.search_vector_weight, s.search_text_weight,
                   s.bm25, s.bm25_postings_per_word, s.bm25_max_postings_per_word, s.search_parallel, engine,
                   s.ivfflat_probes)

    def search(
        self,
        query: str,
        k: int = 5,
        collection: str | None = None,
        product: str | None = None,
        vector: np.ndarray | None = None,
    ) -> list[Hit]:
        if not query.strip():
            return []
        if vector is None:
            vector = self.embedder.embed([query])[0]
        vector_side: Future[list[tuple[int, float]] | None] | None = None
        if self._vector_side is not None:
            vector_side = self._vector_side.submit(self._vector_ranking, vector, k, collection, product)
        engine_ready = self.bm25 == "engine" and self._apply_engine_queue()
        with self.db.connection() as conn, conn.transaction():
            params = self.statement_params(conn, query, vector, k, collection, product)
            self._configure_vector_scan(conn, k)
            text_ids = self.engine_ranking(conn, params, collection, product) if engine_ready else None
            if self.bm25 != "exact":
                params["text_ids"] = text_ids if text_ids is not None else \
                    self.text_ranking(conn, params, k, collection, product).ids
            nearest = vector_side.result() if vector_side is not None else None
            if nearest is not None:
                params["vector_ids"] = [row[0] for row in nearest]
                params["vector_distances"] = [row[1] for row in nearest]
            sql = hybrid_sql(self.bm25, collection, product, given_vector=nearest is not None)
            rows = conn.execute(sql, params).fetchall()
        return [Hit(**{**row, "score": float(row["score"]),
                       "similarity": None if row["similarity"] is None else float(row["similarity"])})
                for row in rows]

    def _apply_engine_queue(self) -> bool:
        """Bring the engine up to date with the documents written since the last search; False (and a warning)
        when it cannot be reached: this search then ranks full text with impact BM25 in Postgres."""
        assert self.engine is not None
        try:
            self.engine.apply_pending(self.db)
            return True
        except EngineError as exc:
            log.warning(_ENGINE_FALLBACK, exc)
            return False

    def engine_ranking(self, conn: Connection, params: dict[str, Any], collection: str | None = None,
                       product: str | None = None) -> list[int] | None:
        """The full-text side through the engine: the best %(rescore)s candidates of its postings (each word's
        ENGINE_DEPTH best by impact, scored with this corpus' IDF), ranked by exact BM25 here. None (and a
        warning) when the engine fails."""
        try:
            candidates = self.engine_candidates(params, collection, product)
        except EngineError as exc:
            log.warning(_ENGINE_FALLBACK, exc)
            return None
        rows = conn.cursor(row_factory=tuple_row).execute(_RESCORE_SQL, {**params, "text_candidates": candidates})
        return [r[0] for r in rows.fetchall()]

    def engine_candidates(self, params: dict[str, Any], collection: str | None = None,
                          product: str | None = None) -> list[int]:
        """The engine's best %(rescore)s candidates for the question of *params* (raises EngineError)."""
        assert self.engine is not None
        terms = list(zip(params["match_lexemes"], params["match_idfs"], strict=True))
        bm25 = BM25(params["k1"], params["b"], params["avgdl"])
        return self.engine.rank(terms, params["rescore"], bm25, ENGINE_DEPTH, collection, product)

    def _configure_vector_scan(self, conn: Connection, k: int) -> None:
        # Filters are applied during the index scan, which goes on until it has enough rows. No
        # sequential scans: with migration 0009's denser graph and ef_search 400 the planner
        # prices the HNSW index above a scan of a 10k-chunk table (40 ms instead of 1 ms).
        # Both index kinds' settings: the store has one or the other (ingestion.vector_index).
        conn.execute(
            "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),"
            " set_config('ivfflat.iterative_scan', 'relaxed_order', true),"
            " set_config('enable_seqscan', 'off', true), set_config('hnsw.ef_search', %s, true),"
            " set_config('ivfflat.probes', %s, true)",
            (str(max(self.ef_search, k)), str(self.probes)),
        )

    def _vector_ranking(self, vector: np.ndarray, k: int, collection: str | None,
                        product: str | None) -> list[tuple[int, float]] | None:
        """The vector side's (id, distance) rows, on a spare connection (exact when a filter leaves at most
        EXACT_FILTER_MAX_ROWS chunks); None when the pool has none free (the hybrid statement then runs the
        vector side itself, through the HNSW index)."""
        with self.db.spare_connection() as conn:
            if conn is None:
                return None
            self._configure_vector_scan(conn, k)
            params = {"vector": vector, "collection": collection, "product": product,
                      "candidates": max(self.candidates, k)}
            sql = self.vector_statement(conn, collection, product)
            return conn.cursor(row_factory=tuple_row).execute(sql, params).fetchall()

    @staticmethod
    def vector_statement(conn: Connection, collection: str | None, product: str | None) -> str:
        """EXACT_VECTOR_SQL when a collection filter leaves at most EXACT_FILTER_MAX_ROWS chunks (counted up
        to one more), else VECTOR_SQL (the HNSW index)."""
        if collection is None:
            return VECTOR_SQL
        params = {"collection": collection, "product": product, "limit": EXACT_FILTER_MAX_ROWS + 1}
        rows = conn.cursor(row_factory=tuple_row).execute(_FILTERED_ROWS_SQL, params).fetchone()[0]
        return EXACT_VECTOR_SQL if rows <= EXACT_FILTER_MAX_ROWS else VECTOR_SQL

    def statement_params(
        self, conn: Connection, query: str, vector: np.ndarray, k: int, collection: str | None, product: str | None
    ) -> dict[str, Any]:
        """The parameters of :data:`HYBRID_SQL` for one query (looks up its lexemes' IDF)."""
        cur = conn.cursor(row_factory=dict_row)
        terms = cur.execute(_TERMS_SQL, (query,)).fetchall()
        informative = [t for t in terms if t["ndoc"] <= MATCH_MAX_SHARE * t["nchunks"]] or terms
        corpus = cur.execute("SELECT nchunks, total_length FROM corpus_stats").fetchone()
        return {
            "lexemes": [t["lexeme"] for t in terms],
            "idfs": [float(t["idf"]) for t in terms],
            # NULL (matches nothing) when no word of the question is in the corpus
            "match": " | ".join(_quote(t["lexeme"]) for t in informative) or None,
            "match_lexemes": [t["lexeme"] for t in informative],
            "match_idfs": [float(t["idf"]) for t in informative],
            "depths": [self.per_term] * len(informative),
            "rescore": max(RESCORE_FACTOR * max(self.candidates, k), 100),
            "avgdl": max(corpus["total_length"] / max(corpus["nchunks"], 1), 1.0),
            "vector": vector,
            "collection": collection,
            "product": product,
            "candidates": max(self.candidates, k),
            "rrf_k": RRF_K,
            "k1": BM25_K1,
            "b": BM25_B,
            "vector_weight": self.vector_weight,
            "text_weight": self.text_weight,
            "k": k,
        }

    def text_ranking(self, conn: Connection, params: dict[str, Any], k: int, collection: str | None = None,
                     product: str | None = None) -> TextRanking:
        """Impact BM25's ranking (ids, best first, at most params["candidates"]), reading per_term postings per word
        at first and up to max_per_term: see :func:`ingestion.impact_bm25.impact_ranking`."""
        return impact_ranking(conn, params, k, self.per_term, self.max_per_term, collection, product)

    def section_texts(self, hits: list[Hit]) -> dict[tuple[int, tuple[str, ...]], list[str]]:
        """The texts of all chunks of each hit's section (same document and heading path), in order.

        A long section is cut into several chunks; the one that ranks first is not always the one
        that holds the answer ("Set up TOTP" steps after the TOTP introduction)."""
        keys = list(dict.fromkeys((h.document_id, tuple(h.heading_path)) for h in hits))
        if not keys:
            return {}
        with self.db.connection() as conn:
            rows = conn.execute(
                """SELECT c.document_id, c.heading_path, c.text
                   FROM unnest(%s::bigint[], %s::text[]) AS k(document_id, heading)
                   JOIN chunks c ON c.document_id = k.document_id
                    AND array_to_string(c.heading_path, %s) = k.heading
                   ORDER BY c.document_id, c.position""",
                ([d for d, _ in keys], [HEADING_SEPARATOR.join(h) for _, h in keys], HEADING_SEPARATOR),
            ).fetchall()
        sections: dict[tuple[int, tuple[str, ...]], list[str]] = {key: [] for key in keys}
        for row in rows:
            sections[(row["document_id"], tuple(row["heading_path"]))].append(row["text"])
        return sections

    def term_idf(self, query: str) -> dict[str, float]:
        """BM25's IDF of each of the query's lexemes that the knowledge base holds."""
        with self.db.connection() as conn:
            rows = conn.execute(_TERMS_SQL, (query,)).fetchall()
        return {row["lexeme"]: float(row["idf"]) for row in rows}

    def unknown_lexemes(self, query: str) -> tuple[int, list[str]]:
        """How many of the query's content lexemes count for the handoff gate's vocabulary coverage, and
        those of them that occur nowhere in the knowledge base.

        A question full of words the documents never use ("descale", "espresso") is about something
        else, however close its embedding lands. Everyday words ("long", "last", "problem") say nothing
        about the topic and are left out.
        """
        with self.db.connection() as conn:
            rows = conn.execute(
                """SELECT q.lexeme, s.lexeme IS NOT NULL AS known
                   FROM (SELECT unnest(tsvector_to_array(to_tsvector('english', %s)))
                         EXCEPT SELECT unnest(tsvector_to_array(to_tsvector('english', %s)))) AS q(lexeme)
                   LEFT JOIN lexeme_stats s ON s.lexeme = q.lexeme
                   ORDER BY q.lexeme""",
                (query, EVERYDAY_WORDS),
            ).fetchall()
        return len(rows), [row["lexeme"] for row in rows if not row["known"]]
