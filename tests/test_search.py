"""Hybrid search on a real PostgreSQL + pgvector with the real embedder."""


import numpy as np
import pytest

from ingestion.search import EXACT_TEXT_SQL, Searcher


@pytest.fixture
def searcher(db, embedder):
    return Searcher(db, embedder)


def test_finds_the_manual_section(sample_kb, searcher):
    hits = searcher.search("How do I reset my router to factory settings?", k=3)
    top = hits[0]
    assert top.heading_path[-1] == "Factory reset"
    assert "paperclip for 10 seconds" in top.text
    assert (top.title, top.source, top.collection, top.product) == (
        "Aurora X2 Mesh Router — User Manual", "aurora-x2-manual.md", "sample", "aurora-x2")
    assert top.score > hits[1].score and top.vector_rank and top.text_rank


def test_finds_the_faq_pair(sample_kb, searcher):
    top = searcher.search("is WPA3 supported?", k=3)[0]
    assert top.source == "aurora-x2-faq.csv" and top.text.startswith("Q: Does the Aurora X2 support WPA3?")


def test_table_rows_are_searchable(sample_kb, searcher):
    hits = searcher.search("what does a pulsing amber light mean", k=3)
    assert any("Pulsing amber | Waiting for set-up in the app" in h.text for h in hits)


def test_empty_query_and_filters_that_match_nothing(sample_kb, searcher):
    assert searcher.search("   ") == []
    assert searcher.search("zyxw qwvu")  # no known word: the vector side still answers
    assert searcher.search("factory reset", collection="other") == []
    assert searcher.search("factory reset", product="other") == []


def test_section_texts_returns_every_chunk_of_each_hits_section_in_order(ingestor, searcher, tmp_path):
    steps = " ".join(f"Step {i}: press the button marked {i} on the remote and wait for the beep." for i in range(60))
    manual = tmp_path / "remote.md"
    manual.write_text(f"# Remote\n\n## Pairing\n\nPairing links the remote to the TV. {steps}\n\n"
                      "## Battery\n\nUse AAA.\n")
    ingestor.ingest_paths([manual], collection="remote")
    hits = searcher.search("pair the remote", k=5, collection="remote")
    sections = searcher.section_texts(hits)
    pairing = [texts for (_, heading), texts in sections.items() if heading[-1] == "Pairing"]
    assert len(pairing) == 1 and len(pairing[0]) > 1  # a long section: several chunks, all returned
    text = "\n".join(pairing[0])
    assert text.index("Step 0:") < text.index("Step 30:") < text.index("Step 59:")
    assert all("AAA" not in t for t in pairing[0])
    assert searcher.section_texts([]) == {}


def _fill_noise_near(db, vector: np.ndarray, n: int) -> None:
    """*n* chunks of another collection, all nearer to *vector* than anything in the sample."""
    rng = np.random.default_rng(0)
    vectors = vector + rng.normal(scale=0.01, size=(n, vector.size)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with db.connection() as conn:
        doc = conn.execute(
            "INSERT INTO documents (source, title, collection, content_hash, bytes) "
            "VALUES ('noise.txt', 'Noise', 'noise', 'x', 1) RETURNING id"
        ).fetchone()["id"]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO chunks (document_id, position, text, collection, embedding, tsv) "
                "VALUES (%s, %s, 'noise', 'noise', %s, to_tsvector('english', 'noise'))",
                [(doc, i, v) for i, v in enumerate(vectors)],
            )


def test_filtered_search_still_returns_k_rows(sample_kb, db, embedder, database_url):
    from supportbot.database import Database

    query = "router password"
    _fill_noise_near(db, embedder.embed([query])[0], 2000)
    with db.connection() as conn:
        # As on a large table, the planner takes the HNSW index (not an exact scan of the few
        # filtered rows), and a plain filtered ANN query comes back short: the index scan
        # returns ef_search rows, all from the other collection, and the filter drops them.
        conn.execute("DROP INDEX chunks_collection_product")
        conn.execute(f"ALTER DATABASE {conn.info.dbname} SET enable_seqscan = off")
        conn.execute("ANALYZE chunks")
    with Database(database_url).open() as forced:
        with forced.connection() as conn:
            conn.execute("SET hnsw.ef_search = 20")
            plan = conn.execute(
                "EXPLAIN SELECT id FROM chunks WHERE collection = 'sample' ORDER BY embedding <=> %s LIMIT 10",
                (embedder.embed([query])[0],),
            ).fetchall()
            assert "chunks_embedding_hnsw" in str(plan)
            plain = conn.execute(
                "SELECT id FROM chunks WHERE collection = 'sample' ORDER BY embedding <=> %s LIMIT 10",
                (embedder.embed([query])[0],),
            ).fetchall()
        assert len(plain) < 10
        # One statement (no spare connection used): the vector side goes through the HNSW index.
        hits = Searcher(forced, embedder, ef_search=20, parallel=False).search(query, k=10, collection="sample")
    assert len(hits) == 10 and {h.collection for h in hits} == {"sample"}
    assert all(h.vector_rank for h in hits)  # the vector side alone found 10 filtered rows


def test_a_small_collection_is_searched_exactly(sample_kb, db, embedder, monkeypatch):
    """A collection filter that leaves few chunks: the vector side computes every distance (the HNSW
    index is not in its plan) and ranks as brute force does; past EXACT_FILTER_MAX_ROWS, or with a
    product alone, it goes through the index."""
    import ingestion.search as search

    query = "router password"
    vector = embedder.embed([query])[0]
    _fill_noise_near(db, vector, 300)  # nearer the query than any chunk of the manual
    searcher = Searcher(db, embedder, ef_search=20)
    monkeypatch.setattr(search, "EXACT_FILTER_MAX_ROWS", 100)
    with db.connection() as conn:
        assert searcher.vector_statement(conn, "sample", None) == search.EXACT_VECTOR_SQL
        assert searcher.vector_statement(conn, "sample", "aurora-x2") == search.EXACT_VECTOR_SQL
        assert searcher.vector_statement(conn, "noise", None) == search.VECTOR_SQL  # 300 chunks
        assert searcher.vector_statement(conn, None, "aurora-x2") == search.VECTOR_SQL
        assert searcher.vector_statement(conn, None, None) == search.VECTOR_SQL
        rows = conn.execute("SELECT id, embedding::real[] AS e FROM chunks WHERE collection = 'sample'").fetchall()
        conn.execute("SET enable_seqscan = off")
        plan = str(conn.execute("EXPLAIN " + search.EXACT_VECTOR_SQL, {
            "vector": vector, "collection": "sample", "product": None, "candidates": 40}).fetchall())
    assert "chunks_embedding_hnsw" not in plan
    embeddings = np.array([r["e"] for r in rows], dtype=np.float64)
    cosine = embeddings @ vector / np.linalg.norm(embeddings, axis=1) / np.linalg.norm(vector)
    brute = [rows[i]["id"] for i in np.argsort(-cosine)]
    nearest = searcher._vector_ranking(vector, 10, "sample", None)
    assert [i for i, _ in nearest] == brute[:len(nearest)] and len(nearest) == min(len(rows), 40)
    assert len(searcher._vector_ranking(vector, 10, "noise", None)) == 40  # through the index


def test_bm25_statistics_follow_inserts_replacements_and_deletes(ingestor, db, manual_md):
    def stats_match_corpus() -> bool:
        with db.connection() as conn:
            kept = {r["lexeme"]: r["ndoc"] for r in conn.execute("SELECT lexeme, ndoc FROM lexeme_stats")}
            rows = conn.execute("SELECT word, ndoc FROM ts_stat('SELECT tsv FROM chunks')")
            actual = {r["word"]: r["ndoc"] for r in rows}
            corpus = conn.execute("SELECT nchunks, total_length FROM corpus_stats").fetchone()
            real = conn.execute("SELECT count(*) AS n, coalesce(sum(length(tsv)), 0) AS l FROM chunks").fetchone()
            # The impact postings: one row per (chunk, lexeme) with its tf (weight-A positions twice) and length.
            postings = {(r["chunk_id"], r["lexeme"], r["tf"], r["dl"]) for r in conn.execute(
                "SELECT chunk_id, lexeme, tf, dl FROM chunk_terms")}
            expected = {(r["id"], r["lexeme"], r["tf"], r["dl"]) for r in conn.execute(
                """SELECT c.id, u.lexeme, length(c.tsv) AS dl,
                          cardinality(u.positions) + cardinality(array_positions(u.weights, 'A')) AS tf
                   FROM chunks c, unnest(c.tsv) u""")}
        return (kept == actual and (corpus["nchunks"], corpus["total_length"]) == (real["n"], real["l"])
                and postings == expected)

    doc = ingestor.ingest_file(manual_md)
    assert stats_match_corpus()
    manual_md.write_text(manual_md.read_text() + "\n## Storage\n\nStore the fan upright in its box over winter.\n")
    assert ingestor.ingest_file(manual_md).outcome == "replaced"
    assert stats_match_corpus()
    from ingestion.store import delete_document

    delete_document(db, doc.document_id)
    assert stats_match_corpus()
    ingestor.ingest_file(manual_md)
    with db.connection() as conn:
        conn.execute("TRUNCATE documents, chunks")
    assert stats_match_corpus()


QUESTIONS = ["How do I reset my router to factory settings?", "is WPA3 supported?", "guest network for visitors",
             "what does the amber light mean", "firmware update takes how long", "parental controls bedtime"]


def _text_ranking(searcher: Searcher, question: str, **filters: str) -> list[int]:
    hits = searcher.search(question, k=20, **filters)
    return [h.chunk_id for h in sorted((h for h in hits if h.text_rank), key=lambda h: h.text_rank)]


def test_impact_bm25_ranks_as_exact_bm25_and_reads_a_bounded_number_of_postings(sample_kb, db, embedder):
    exact, impact = Searcher(db, embedder, bm25="exact"), Searcher(db, embedder, bm25="impact")
    for question in QUESTIONS:
        assert _text_ranking(impact, question) == _text_ranking(exact, question), question
        filters = {"collection": "sample", "product": "aurora-x2"}
        assert _text_ranking(impact, question, **filters) == _text_ranking(exact, question, **filters)
        assert _text_ranking(impact, question, collection="other") == []
    # One posting per word: the full-text side can only rank that many chunks, however large the table.
    narrow = Searcher(db, embedder, bm25="impact", per_term=1)
    with db.connection() as conn:
        words = len(narrow.statement_params(conn, QUESTIONS[0], np.zeros(384), 5, None, None)["match_lexemes"])
    assert 0 < len(_text_ranking(narrow, QUESTIONS[0])) <= words
    with pytest.raises(ValueError, match="bm25"):
        Searcher(db, embedder, bm25="fast")


def test_impact_bm25_reads_deeper_until_no_unscored_chunk_can_outrank_the_kth(sample_kb, db, embedder):
    """One posting per word, then 4, 16, …: each pass returns a bound on every chunk it did not score;
    the ranking stops when the k-th score reaches it, and then equals exact BM25's."""
    exact = Searcher(db, embedder, bm25="exact")
    one_pass = Searcher(db, embedder, bm25="impact", per_term=1)
    deepening = Searcher(db, embedder, bm25="impact", per_term=1, max_per_term=1_000_000)
    capped = Searcher(db, embedder, bm25="impact", per_term=3)
    deeper = rescored_more = 0
    with db.connection() as conn:
        for question in QUESTIONS:
            for filters in ({}, {"collection": "sample", "product": "aurora-x2"}):
                params = deepening.statement_params(conn, question, np.zeros(384), 20, filters.get("collection"),
                                                    filters.get("product"))
                params["rescore"] = 1  # one candidate scored exactly in the first pass: the bound must do the work
                ranking = deepening.text_ranking(conn, params, 20, **filters)
                assert ranking.certified, question
                # Each pass reads on from where the last stopped: no word's postings beyond the deepest depth.
                lengths = conn.execute(
                    "SELECT count(*) FROM chunk_terms WHERE lexeme = ANY(%s) AND (%s::text IS NULL OR collection = %s)"
                    " GROUP BY lexeme", (params["match_lexemes"], filters.get("collection"), filters.get("collection"))
                ).fetchall()
                assert 0 < ranking.postings <= sum(min(row["count"], ranking.per_term) for row in lengths), question
                exact_ids = [r["id"] for r in conn.execute(EXACT_TEXT_SQL + " LIMIT 20", params).fetchall()]
                assert ranking.ids[:20] == exact_ids, question
                deeper += ranking.passes > 1
                first = one_pass.text_ranking(conn, params, 20, **filters)
                assert first.passes == 1 and first.per_term == 1
                if len(exact_ids) > len(first.ids):
                    assert not first.certified, question  # lists were cut: nothing proves the top k
                # No list may be read deeper: at most one more pass, which scores as many candidates as a pass
                # may (16 × the first, at least 4 k), instead of doubling them pass after pass.
                shallow = capped.text_ranking(conn, params, 20, **filters)
                assert shallow.passes == 1 or (shallow.passes, shallow.rescored) == (2, 80), question
                rescored_more += shallow.passes == 2
        assert deeper > 0 and rescored_more > 0
        # A question whose words the filter does not hold: nothing to rank, nothing left out.
        params = deepening.statement_params(conn, QUESTIONS[0], np.zeros(384), 5, "other", None)
        assert deepening.text_ranking(conn, params, 5, collection="other").ids == []
    # search() goes through the same ranking.
    for question in QUESTIONS:
        assert _text_ranking(deepening, question) == _text_ranking(exact, question), question


def test_the_vector_side_on_a_second_connection_gives_the_same_hits(sample_kb, db, embedder):
    """Searcher runs the vector side on a spare pooled connection while the full-text side runs; the
    hits (ranks, scores, similarities) are those of one connection doing both, and with no spare
    connection free the search still answers, one side after the other."""
    from supportbot.database import Database

    parallel, sequential = Searcher(db, embedder), Searcher(db, embedder, parallel=False)
    one = Database(db.url, max_size=1).open()
    try:
        starved = Searcher(one, embedder)
        for question in QUESTIONS:
            for filters in ({}, {"collection": "sample", "product": "aurora-x2"}, {"collection": "other"}):
                expected = sequential.search(question, k=8, **filters)
                assert parallel.search(question, k=8, **filters) == expected, (question, filters)
                assert starved.search(question, k=8, **filters) == expected, (question, filters)
        vector = embedder.embed([QUESTIONS[0]])[0]
        nearest = parallel._vector_ranking(vector, 8, None, None)  # a spare connection was there
        assert nearest and len(nearest) <= parallel.candidates
        with one.connection():  # the pool's only connection is taken: no spare one
            assert starved._vector_ranking(vector, 8, None, None) is None
    finally:
        one.close()
