"""The vector index: IVFFlat built on the rows present and served by the same search, back to HNSW, and the
errors and warnings around it."""

import numpy as np
import pytest

from ingestion.search import Searcher
from ingestion.vector_index import NAMES, VectorIndexError, build, default_lists, indexes
from tests.test_search import _fill_noise_near


def _brute_force(db, vector: np.ndarray, collection: str | None = None) -> list[int]:
    with db.connection() as conn:
        rows = conn.execute("SELECT id, embedding::real[] AS e FROM chunks WHERE %(c)s::text IS NULL "
                            "OR collection = %(c)s", {"c": collection}).fetchall()
    e = np.array([r["e"] for r in rows], dtype=np.float64)
    cosine = e @ vector / np.linalg.norm(e, axis=1) / np.linalg.norm(vector)
    return [rows[i]["id"] for i in np.argsort(-cosine)]


def test_ivfflat_replaces_hnsw_serves_the_search_and_hnsw_comes_back(sample_kb, db, embedder):
    with db.connection() as conn:
        schema_hnsw = [i.definition for i in indexes(conn)]
        assert len(schema_hnsw) == 1 and "USING hnsw" in schema_hnsw[0]
    searcher = Searcher(db, embedder, probes=1)
    query = "How do I turn on the guest network?"
    before = searcher.search(query, k=5)

    index, _ = build(db, "ivfflat", lists=4)
    rows = index.rows
    assert (index.kind, index.name, index.lists, index.built_rows) == ("ivfflat", NAMES["ivfflat"], 4, rows)
    assert not index.stale and index.advice() is None
    with db.connection() as conn:
        assert [i.name for i in indexes(conn)] == [NAMES["ivfflat"]]  # the HNSW index is gone
        conn.execute("SET enable_seqscan = off")
        plan = str(conn.execute("EXPLAIN SELECT id FROM chunks ORDER BY embedding <=> %s LIMIT 10",
                                (embedder.embed([query])[0],)).fetchall())
    assert NAMES["ivfflat"] in plan

    # Searcher's probes reach the index: all 4 lists probed is exact search.
    vector = embedder.embed([query])[0]
    exact = [i for i, _ in Searcher(db, embedder, probes=4)._vector_ranking(vector, 10, None, None)]
    assert exact == _brute_force(db, vector)[:len(exact)] and len(exact) == min(rows, 40)
    after = searcher.search(query, k=5)
    assert after[0].chunk_id == before[0].chunk_id and "Guest" in after[0].heading

    index, _ = build(db, "hnsw")
    with db.connection() as conn:
        assert [i.definition for i in indexes(conn)] == schema_hnsw  # migration 0009's index again
    assert index.built_rows == rows and index.lists is None and not index.stale


def test_filtered_search_through_ivfflat_still_returns_k_rows(sample_kb, db, embedder, monkeypatch):
    """One list probed, every row near the query in another collection: the iterative scan goes on to further
    lists until the filter has k rows."""
    import ingestion.search as search

    query = "router password"
    _fill_noise_near(db, embedder.embed([query])[0], 2000)
    build(db, "ivfflat", lists=20)
    monkeypatch.setattr(search, "EXACT_FILTER_MAX_ROWS", 0)
    with db.connection() as conn:  # as on a large store, the planner takes the vector index
        conn.execute("DROP INDEX chunks_collection_product")
        conn.execute("ANALYZE chunks")
    searcher = Searcher(db, embedder, probes=1, parallel=False)
    with db.connection() as conn:
        searcher._configure_vector_scan(conn, 10)
        plan = str(conn.execute("EXPLAIN " + search.VECTOR_SQL, {
            "vector": embedder.embed([query])[0], "collection": "sample", "product": None, "candidates": 40}
                                ).fetchall())
    assert NAMES["ivfflat"] in plan
    hits = searcher.search(query, k=10, collection="sample")
    assert len(hits) == 10 and {h.collection for h in hits} == {"sample"}
    assert all(h.vector_rank for h in hits)


def test_an_ivfflat_index_goes_stale_when_the_store_grows(sample_kb, db, embedder):
    index, _ = build(db, "ivfflat")
    assert index.lists == default_lists(index.rows) == 1
    _fill_noise_near(db, embedder.embed(["noise"])[0], 2 * index.rows + 1)
    with db.connection() as conn:
        [now] = indexes(conn)
    assert now.stale and now.rows == 3 * index.rows + 1
    assert f"built on {index.rows:,} chunks" in now.advice() and "vector-index build --kind ivfflat" in now.advice()


def test_builds_that_cannot_be_done_say_why_and_keep_the_index(db, sample_kb):
    with db.connection() as conn:
        rows = conn.execute("SELECT count(*) AS n FROM chunks").fetchone()["n"]
        conn.execute("DELETE FROM chunks")
    with pytest.raises(VectorIndexError, match=r"holds no chunks.*ingest the knowledge base first"):
        build(db, "ivfflat")
    with pytest.raises(VectorIndexError, match=r"^kind: 'annoy'"):
        build(db, "annoy")  # type: ignore[arg-type]
    with pytest.raises(VectorIndexError, match=r"^lists: only an IVFFlat"):
        build(db, "hnsw", lists=10)
    with db.connection() as conn:
        [index] = indexes(conn)
    assert index.kind == "hnsw" and rows > 0


def test_too_many_lists_and_a_bad_memory_size_are_refused(db, sample_kb):
    with pytest.raises(VectorIndexError, match=r"^lists: 100000 lists need at least as many chunks.*--lists 1\)"):
        build(db, "ivfflat", lists=100_000)
    with pytest.raises(VectorIndexError, match=r"^maintenance_work_mem: 'lots'"):
        build(db, "ivfflat", maintenance_work_mem="lots")
    with db.connection() as conn:
        assert [i.kind for i in indexes(conn)] == ["hnsw"]


def test_default_lists_follow_pgvector_advice():
    assert [default_lists(n) for n in (0, 999, 10_000, 1_000_000, 4_000_000)] == [1, 1, 10, 1000, 2000]
