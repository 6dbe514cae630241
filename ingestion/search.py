"""Hybrid retrieval in one SQL statement: pgvector cosine (HNSW) + Postgres full text, fused by RRF."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ingestion.chunk import HEADING_SEPARATOR
from ingestion.embed import Embedder
from supportbot.database import Database
from supportbot.settings import Settings, get_settings

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

# The full-text side ranks by BM25 (ts_rank has no IDF): a chunk matches any of the question's
# lexemes; each lexeme weighs by its IDF from lexeme_stats, and a lexeme in the heading path
# (weight A) counts twice. Both rankers feed reciprocal-rank fusion, with per-ranker weights.
_HYBRID_SQL = """
WITH terms AS (
    SELECT s.lexeme, ln(1 + (cs.nchunks - s.ndoc + 0.5) / (s.ndoc + 0.5)) AS idf
    FROM (SELECT DISTINCT unnest(tsvector_to_array(to_tsvector('english', %(text)s))) AS lexeme) q
    JOIN lexeme_stats s ON s.lexeme = q.lexeme
    CROSS JOIN corpus_stats cs
),
query AS (
    SELECT string_agg(quote_literal(lexeme), ' | ')::tsquery AS q FROM terms
),
nearest AS (
    SELECT id, embedding <=> %(vector)s AS distance
    FROM chunks
    WHERE (%(collection)s::text IS NULL OR collection = %(collection)s)
      AND (%(product)s::text IS NULL OR product = %(product)s)
    ORDER BY embedding <=> %(vector)s
    LIMIT %(candidates)s
),
vector_hits AS (
    SELECT id, distance, row_number() OVER (ORDER BY distance) AS rank FROM nearest
),
text_hits AS (
    SELECT c.id, row_number() OVER (ORDER BY sum(
               t.idf * tf.n * (%(k1)s + 1) / (tf.n + %(k1)s * (1 - %(b)s + %(b)s * length(c.tsv) / avg.dl))
           ) DESC, c.id) AS rank
    FROM chunks c
    CROSS JOIN query
    CROSS JOIN (SELECT greatest(total_length::float8 / greatest(nchunks, 1), 1) AS dl FROM corpus_stats) avg
    CROSS JOIN LATERAL unnest(c.tsv) u
    JOIN terms t ON t.lexeme = u.lexeme
    CROSS JOIN LATERAL (
        SELECT cardinality(u.positions) + cardinality(array_positions(u.weights, 'A')) AS n
    ) tf
    WHERE c.tsv @@ query.q
      AND (%(collection)s::text IS NULL OR c.collection = %(collection)s)
      AND (%(product)s::text IS NULL OR c.product = %(product)s)
    GROUP BY c.id
    ORDER BY rank
    LIMIT %(candidates)s
)
SELECT c.id AS chunk_id, c.document_id, c.text, c.heading_path, c.page, c.collection, c.product,
       d.title, d.source,
       coalesce(%(vector_weight)s / (%(rrf_k)s + v.rank), 0)
         + coalesce(%(text_weight)s / (%(rrf_k)s + t.rank), 0) AS score,
       1 - v.distance AS similarity, v.rank AS vector_rank, t.rank AS text_rank
FROM vector_hits v
FULL OUTER JOIN text_hits t ON t.id = v.id
JOIN chunks c ON c.id = coalesce(v.id, t.id)
JOIN documents d ON d.id = c.document_id
ORDER BY score DESC, c.id
LIMIT %(k)s
"""


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
    ) -> None:
        self.db = db
        self.embedder = embedder
        self.candidates = candidates
        self.ef_search = ef_search
        self.vector_weight = vector_weight
        self.text_weight = text_weight

    @classmethod
    def from_settings(cls, db: Database, embedder: Embedder, settings: Settings | None = None) -> Searcher:
        s = settings or get_settings()
        return cls(db, embedder, s.search_candidates, s.hnsw_ef_search, s.search_vector_weight, s.search_text_weight)

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
        params = {
            "text": query,
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
        with self.db.connection() as conn, conn.transaction():
            # Filters are applied during the index scan, which goes on until it has enough rows.
            conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
            conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(max(self.ef_search, k)),))
            rows = conn.execute(_HYBRID_SQL, params).fetchall()
        return [Hit(**{**row, "score": float(row["score"]),
                       "similarity": None if row["similarity"] is None else float(row["similarity"])})
                for row in rows]

    def vocabulary_coverage(self, query: str) -> float:
        """Share of the query's content words that occur anywhere in the knowledge base (1.0 for none).

        A question full of words the documents never use ("descale", "espresso") is about
        something else, however close its embedding lands. Everyday words ("long", "last",
        "problem") say nothing about the topic and are left out.
        """
        with self.db.connection() as conn:
            row = conn.execute(
                """SELECT count(*) AS n, count(s.lexeme) AS known
                   FROM (SELECT unnest(tsvector_to_array(to_tsvector('english', %s)))
                         EXCEPT SELECT unnest(tsvector_to_array(to_tsvector('english', %s)))) AS q(lexeme)
                   LEFT JOIN lexeme_stats s ON s.lexeme = q.lexeme""",
                (query, EVERYDAY_WORDS),
            ).fetchone()
        return row["known"] / row["n"] if row["n"] else 1.0
