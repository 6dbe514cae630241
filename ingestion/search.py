"""Hybrid retrieval in one SQL statement: pgvector cosine (HNSW) + Postgres full text, fused by RRF."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ingestion.chunk import HEADING_SEPARATOR
from ingestion.embed import Embedder
from supportbot.database import Database

RRF_K = 60

# Full text ORs the question's words: websearch_to_tsquery ANDs them, and a natural-language
# question rarely has every word in one passage. ts_rank_cd still ranks passages with more of
# them (and heading matches, weight A) first.
_HYBRID_SQL = """
WITH query AS (
    SELECT replace(websearch_to_tsquery('english', %(text)s)::text, ' & ', ' | ') AS q
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
    SELECT c.id, row_number() OVER (ORDER BY ts_rank_cd(c.tsv, q.q::tsquery, 1) DESC, c.id) AS rank
    FROM chunks c, query q
    WHERE q.q <> '' AND c.tsv @@ q.q::tsquery
      AND (%(collection)s::text IS NULL OR c.collection = %(collection)s)
      AND (%(product)s::text IS NULL OR c.product = %(product)s)
    ORDER BY ts_rank_cd(c.tsv, q.q::tsquery, 1) DESC, c.id
    LIMIT %(candidates)s
)
SELECT c.id AS chunk_id, c.document_id, c.text, c.heading_path, c.page, c.collection, c.product,
       d.title, d.source,
       coalesce(1.0 / (%(rrf_k)s + v.rank), 0) + coalesce(1.0 / (%(rrf_k)s + t.rank), 0) AS score,
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

    def __init__(self, db: Database, embedder: Embedder, candidates: int = 40, ef_search: int = 100) -> None:
        self.db = db
        self.embedder = embedder
        self.candidates = candidates
        self.ef_search = ef_search

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
