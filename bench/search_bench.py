"""Search benchmark: hybrid and vector search latency, and HNSW (or IVFFlat) recall, at 10k and 100k chunks.

For each size, a fresh embedded PostgreSQL (own temporary SUPPORTBOT_HOME, all migrations applied)
has its ``chunks`` table filled quickly: binary COPY into a staging table, then one INSERT … SELECT
(so the schema's statement-level triggers see every row once); the vector and full-text indexes are
dropped during the load and rebuilt after from the schema's own definitions, the HNSW index with
``maintenance_work_mem='1GB'``.

Rows are realistic when the S10 manual is at hand (../shared/data/manuals): the manual is parsed,
chunked and embedded with the packaged MiniLM (cached in bench/results/cache/), every real chunk is
stored once, and the rest are perturbed copies, like the same section in another product's manual:
``normalize(e_i + a·e_j + s·n)`` with e_j another real chunk, a ~ U(0, 0.3), n a random unit vector,
s ~ U(0.3, 0.7) (cosine to the original ~0.8–0.95); the copy keeps the chunk's text with
``--text-noise`` (25 %) of its words replaced by words drawn from the whole corpus, as the same
section reads in another product's manual (identical copies, ``--text-noise 0``, would make a
hundred chunks tie for every word), and its tsvector is computed by Postgres as ingestion.store
does. Without the data: independent random unit vectors and pseudo-word texts (``--random``
forces that), queried near stored rows.

Queries (``--queries``, default 200): the 50 real questions of galaxy-s10-questions.csv, then
section titles of galaxy-s10-sections.json, embedded with the packaged MiniLM; else a perturbed
copy of a stored row's vector (cosine ~0.9) with 5 words of its text.

Measured per size, after a warm-up (every query through the HNSW index, 10 through Searcher.search),
at the configured ``hnsw_ef_search`` (default 100) and at 40 (``--ef``): p50/p95 latency of

* hybrid: ``ingestion.search.Searcher.search`` (built by ``Searcher.from_settings`` when it exists)
  with the precomputed vector (``vector=``);
* ann: ``SELECT id FROM chunks ORDER BY embedding <=> q LIMIT k`` (HNSW; sequential scans off, as
  Searcher.search runs), and its recall@k against
  exact search (the same statement with index and bitmap scans off: a sequential scan);
* text: the full-text half of the hybrid statement alone: the statement Searcher runs (recorded
  once) with its final SELECT replaced by ``SELECT id FROM text_hits`` (no ef_search dependence),
  its recall@k against exact BM25 (``SUPPORTBOT_BM25=exact``, every matching chunk scored) and
  that one's latency, and the share of chunks holding any word of each query (the rows an OR-ed
  query must score);
* filtered: a collection filter matching ``--filter-fraction`` (5 %) of the rows, for the ANN
  statement with ``hnsw.iterative_scan`` off and ``relaxed_order``, as planned and forced through
  the HNSW index, and for Searcher.search (which always turns iterative scan on): rows returned
  (it should be k), latency, recall against exact filtered search;
* which scans each statement uses (EXPLAIN), since the planner switches between the HNSW index,
  the b-tree and sequential scans with the table size and ef_search.

Hybrid and full-text phases stop after ``--phase-budget`` seconds (at least 10 queries); each
figure carries the number of queries it covers.

Usage: .venv/bin/python bench/search_bench.py [--sizes 10000,100000] [--queries 200] [--k 10]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    RESULTS,
    S10_HTML,
    S10_QUESTIONS,
    S10_SECTIONS,
    contention_check,
    environment,
    fresh_home,
    percentile,
    progress,
    server_facts,
    table,
    write_json,
)

NAME = "search_bench"
DIM = 384
DOC_SIZE = 100  # chunks per synthetic document
FILTER_COLLECTION = "filtered"

# Chunks holding any word of the question: the rows the full-text side has to score.
ANY_WORD_COUNT_SQL = """
SELECT count(*) FROM chunks
WHERE tsv @@ (SELECT coalesce(string_agg(quote_literal(l), ' | '), '')::tsquery
              FROM unnest(tsvector_to_array(to_tsvector('english', %(text)s))) l)
"""
ANN_SQL = "SELECT id FROM chunks ORDER BY embedding <=> %(v)s LIMIT %(k)s"
ANN_FILTERED_SQL = "SELECT id FROM chunks WHERE collection = %(c)s ORDER BY embedding <=> %(v)s LIMIT %(k)s"
# The same, written so that the planner cannot use the (collection, product) b-tree; run with
# enable_seqscan off, it leaves the HNSW index as the only way (pgvector's post-filter case).
ANN_FILTERED_VIA_HNSW_SQL = (
    "SELECT id FROM chunks WHERE collection || '' = %(c)s ORDER BY embedding <=> %(v)s LIMIT %(k)s"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Prints tables and writes bench/results/search_bench.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--sizes", default="10000,100000", help="Comma-separated numbers of chunks.")
    p.add_argument("--queries", type=int, default=200, help="Number of queries.")
    p.add_argument("--k", type=int, default=10, help="Rows per query (recall@k).")
    p.add_argument("--ef", default="settings,40",
                   help="hnsw.ef_search values to measure; 'settings' is SUPPORTBOT_HNSW_EF_SEARCH (default 100). "
                        "With --vector-index ivfflat: ivfflat.probes values ('settings': SUPPORTBOT_IVFFLAT_PROBES).")
    p.add_argument("--vector-index", choices=("hnsw", "ivfflat"), default="hnsw",
                   help="The vector index: the schema's HNSW, or IVFFlat built after the load as `supportbot "
                        "vector-index build --kind ivfflat` builds it.")
    p.add_argument("--lists", type=int, default=None, help="IVFFlat lists (default: the product's, rows / 1000).")
    p.add_argument("--filter-fraction", type=float, default=0.05,
                   help="Share of the rows in the filtered collection.")
    p.add_argument("--corpus", type=Path, default=S10_HTML,
                   help="Manual whose real chunks seed the rows (parsed, chunked and embedded once, then cached).")
    p.add_argument("--questions", type=Path, default=S10_QUESTIONS, help="CSV with a 'question' column.")
    p.add_argument("--sections", type=Path, default=S10_SECTIONS,
                   help="Sections JSON whose titles complete the query set.")
    p.add_argument("--random", action="store_true", help="Random vectors and texts even when the data is present.")
    p.add_argument("--text-noise", type=float, default=0.25,
                   help="Share of the words of each copied row replaced by words of the whole corpus, so that the "
                        "copies are like the same section in other manuals, not identical texts (0 = identical).")
    p.add_argument("--rows", choices=("copies", "mix"), default="copies",
                   help="copies: perturbed copies of the real chunks (~n/469 near-duplicates of each, --text-noise); "
                        "mix: each row joins lines of 3 different real chunks, its vector the mean of theirs "
                        "(mostly distinct texts, closer to a corpus of many manuals).")
    p.add_argument("--bm25-max", default="",
                   help="Comma-separated bm25_max_postings_per_word values whose full-text side is also measured "
                        "(recall, latency, certified share) on the queries of the impact phase.")
    p.add_argument("--no-cache", action="store_true", help="Re-embed the corpus and queries instead of the cache.")
    p.add_argument("--no-hybrid", action="store_true",
                   help="Vector search only: skip Searcher.search and the full-text measurements.")
    p.add_argument("--phase-budget", type=float, default=30.0,
                   help="Seconds at most per hybrid or full-text phase of one size (at least 10 queries run); "
                        "the tables say how many queries each figure covers.")
    p.add_argument("--maintenance-work-mem", default="1GB", help="For the index builds.")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--keep", action="store_true", help="Keep the temporary SUPPORTBOT_HOME and its server running.")
    p.add_argument("--engine-url", default="",
                   help="Also measure SUPPORTBOT_BM25=engine against this running, empty engine (sphinxql://host:port/"
                        "index, started from deploy/fulltext-engine.conf): index build, text side, hybrid.")
    p.add_argument("--json", type=Path, default=None,
                   help="Where to write the JSON (default: bench/results/search_bench.json).")
    args = p.parse_args(argv)
    try:
        args.sizes = [int(x.replace("_", "")) for x in args.sizes.split(",") if x.strip()]
    except ValueError:
        p.error("--sizes: comma-separated integers, e.g. 10000,100000")
    args.bm25_max = tuple(int(x) for x in args.bm25_max.split(",") if x.strip())
    if not args.sizes or min(args.sizes) < args.k:
        p.error("--sizes must be at least --k")
    if not 0 < args.filter_fraction <= 1:
        p.error("--filter-fraction must be in (0, 1]")
    if args.lists is not None and (args.vector_index != "ivfflat" or args.lists < 1):
        p.error("--lists: a positive number, with --vector-index ivfflat")
    return args


# --- corpus and queries --------------------------------------------------------------------


def _cache_path(kind: str, key: str) -> Path:
    return RESULTS / "cache" / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def real_corpus(path: Path, settings, embedder, use_cache: bool) -> dict[str, Any]:
    """The manual's chunks (text, heading path, page) and their embeddings, as ingestion makes them."""
    import ingestion.chunk
    import ingestion.parse

    code = b"".join(Path(m.__file__).read_bytes() for m in (ingestion.chunk, ingestion.parse))
    key = json.dumps([hashlib.sha256(path.read_bytes()).hexdigest(), hashlib.sha256(code).hexdigest(),
                      embedder.name, settings.chunk_tokens, settings.chunk_overlap_tokens, "v1"])
    cache = _cache_path("corpus", key)
    if use_cache and cache.exists():
        data = np.load(cache, allow_pickle=False)
        progress(f"corpus: {len(data['texts'])} chunks of {path.name} from the cache ({cache.name})")
        return {"texts": list(data["texts"]), "headings": [json.loads(h) for h in data["headings"]],
                "pages": [int(p) if p >= 0 else None for p in data["pages"]], "vectors": data["vectors"]}
    from ingestion.chunk import chunk_blocks
    from ingestion.parse import parse_file

    progress(f"corpus: parsing, chunking and embedding {path.name} (cached afterwards)")
    parsed = parse_file(path)
    chunks = chunk_blocks(parsed.blocks, embedder.count_tokens,
                          min(settings.chunk_tokens, getattr(embedder, "max_tokens", 512)),
                          settings.chunk_overlap_tokens)
    vectors = embedder.embed([c.embedding_text() for c in chunks])
    corpus = {"texts": [c.text for c in chunks], "headings": [list(c.heading_path) for c in chunks],
              "pages": [c.page for c in chunks], "vectors": vectors}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, texts=np.array(corpus["texts"]), headings=np.array([json.dumps(h) for h in corpus["headings"]]),
             pages=np.array([-1 if p is None else p for p in corpus["pages"]]), vectors=vectors)
    progress(f"corpus: {len(chunks)} chunks")
    return corpus


_SYLLABLES = "ka lo mi ne ru sa ti vo pe da fi gu ho je ly".split()


def _pseudo_words(rng: np.random.Generator, n: int) -> list[str]:
    return ["".join(rng.choice(_SYLLABLES, size=rng.integers(2, 4))) for _ in range(n)]


def random_corpus(rng: np.random.Generator, n: int = 1000) -> dict[str, Any]:
    vocab = _pseudo_words(rng, 3000)
    texts = [" ".join(rng.choice(vocab, size=80)) for _ in range(n)]
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return {"texts": texts, "headings": [[f"Section {i}"] for i in range(n)], "pages": [None] * n,
            "vectors": vectors, "iid": True}


def real_queries(args, embedder, rng: np.random.Generator, use_cache: bool) -> tuple[list[str], np.ndarray, dict]:
    with args.questions.open(encoding="utf-8-sig") as f:
        questions = [row["question"].strip() for row in csv.DictReader(f) if row.get("question", "").strip()]
    questions = list(dict.fromkeys(questions))[: args.queries]
    titles: list[str] = []
    if len(questions) < args.queries and args.sections.exists():
        sections = json.loads(args.sections.read_text())
        items = sections.values() if isinstance(sections, dict) else sections
        pool = sorted({s["title"].strip() for s in items if len(s.get("title", "").strip()) >= 4} - set(questions))
        order = rng.permutation(len(pool))
        titles = [pool[i] for i in order[: args.queries - len(questions)]]
    texts = questions + titles
    key = json.dumps([embedder.name, texts])
    cache = _cache_path("queries", key)
    if use_cache and cache.exists():
        vectors = np.load(cache)["vectors"]
    else:
        progress(f"queries: embedding {len(texts)} queries")
        vectors = embedder.embed(texts)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, vectors=vectors)
    return texts, vectors, {"real_questions": len(questions), "section_titles": len(titles)}


def random_queries(n: int, corpus: dict[str, Any], rng: np.random.Generator) -> tuple[list[str], np.ndarray, dict]:
    """Each query is near one stored row: its vector perturbed (cosine ~0.9), 5 words of its text.

    Queries drawn independently of the data would have no real neighbours at all in 384-d
    (every distance about equal), and recall would measure nothing useful.
    """
    picks = rng.integers(0, len(corpus["texts"]), size=n)
    texts = [" ".join(rng.choice(corpus["texts"][j].split(), size=5)) for j in picks]
    noise = rng.standard_normal((n, DIM)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    vectors = corpus["vectors"][picks] + 0.5 * noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return texts, vectors.astype(np.float32), {"random_near_a_row": n}


# --- loading -------------------------------------------------------------------------------


def synthetic_vectors(base: np.ndarray, n: int, rng: np.random.Generator,
                      iid: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """*n* rows: every base vector once, then perturbed copies (or, *iid*, independent random unit
    vectors); returns (row → base index, whose text the row takes; vectors)."""
    b = len(base)
    base_of = np.concatenate([np.arange(min(b, n)), rng.integers(0, b, size=max(0, n - b))])
    vectors = base[base_of].copy()
    extra = slice(min(b, n), n)
    m = max(0, n - b)
    if m and iid:
        vectors[extra] = rng.standard_normal((m, base.shape[1])).astype(np.float32)
    elif m:
        partner = base[rng.integers(0, b, size=m)]
        noise = rng.standard_normal((m, base.shape[1])).astype(np.float32)
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        a = rng.uniform(0.0, 0.3, size=(m, 1)).astype(np.float32)
        s = rng.uniform(0.3, 0.7, size=(m, 1)).astype(np.float32)
        vectors[extra] = vectors[extra] + a * partner + s * noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    order = rng.permutation(n)  # the heap order does not follow the base chunks
    return base_of[order], vectors[order]


def noisy_texts(texts: list[str], base_of: np.ndarray, noise: float, rng: np.random.Generator) -> list[str | None]:
    """Per row: None for the first row of each base chunk (its text as is), else the base text with a
    *noise* share of its words replaced by words drawn from the whole corpus (by frequency)."""
    words = [t.split() for t in texts]
    vocabulary = np.array([w for ws in words for w in ws], dtype=object)
    seen: set[int] = set()
    out: list[str | None] = []
    for base in base_of.tolist():
        if base not in seen or noise <= 0:
            seen.add(base)
            out.append(None)
            continue
        row = list(words[base])
        replace = np.flatnonzero(rng.random(len(row)) < noise)
        for i, w in zip(replace.tolist(), rng.choice(vocabulary, size=len(replace)).tolist(), strict=True):
            row[i] = w
        out.append(" ".join(row))
    return out


def mixed_rows(corpus: dict[str, Any], n: int, rng: np.random.Generator,
               parts: int = 3) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """*n* rows, ``--rows mix``: every real chunk once, then rows made of *parts* different real chunks,
    a random run of about 1/parts of the lines of each (at least one line), joined in order; the row's
    vector is the word-weighted mean of those chunks' embeddings plus a little noise (s ~ U(0.05, 0.2)),
    normalised. Texts are then mostly distinct, as in a corpus of many different manuals, rather than
    ~n/469 near-copies of each chunk. Returns (row → base chunk whose heading path it takes: the first
    part; vectors; texts, None for the real chunks)."""
    base = corpus["vectors"]
    b = len(base)
    lines = [[ln for ln in t.split("\n") if ln.strip()] or [t] for t in corpus["texts"]]
    m = max(0, n - b)
    base_of = np.concatenate([np.arange(min(b, n)), np.zeros(m, dtype=np.int64)])
    vectors = np.empty((n, base.shape[1]), dtype=np.float32)
    vectors[: min(b, n)] = base[: min(b, n)]
    texts: list[str | None] = [None] * min(b, n)
    picks = rng.integers(0, b, size=(m, parts))
    while True:  # redraw the rows that took a chunk twice
        srt = np.sort(picks, axis=1)
        dup = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))
        if not len(dup):
            break
        picks[dup] = rng.integers(0, b, size=(len(dup), parts))
    noise = rng.standard_normal((m, base.shape[1])).astype(np.float32)
    noise /= np.maximum(np.linalg.norm(noise, axis=1, keepdims=True), 1e-9)
    scale = rng.uniform(0.05, 0.2, size=m)
    for r in range(m):
        row_lines, weights = [], []
        for j in picks[r].tolist():
            ls = lines[j]
            size = max(1, round(len(ls) / parts))
            start = int(rng.integers(0, len(ls) - size + 1))
            chosen = ls[start:start + size]
            row_lines.extend(chosen)
            weights.append(sum(len(x.split()) for x in chosen) or 1)
        w = np.asarray(weights, dtype=np.float32) / sum(weights)
        v = w @ base[picks[r]] + scale[r] * noise[r]
        vectors[b + r] = v / np.linalg.norm(v)
        base_of[b + r] = picks[r][0]
        texts.append("\n".join(row_lines))
    order = rng.permutation(n)
    return base_of[order], vectors[order], [texts[i] for i in order.tolist()]


def load(conn, index_defs: dict[str, str], corpus: dict[str, Any], n: int, fraction: float, mwm: str,
         rng: np.random.Generator, text_noise: float = 0.0, rows: str = "copies") -> dict[str, float]:
    """Fill an empty store with *n* chunks; rebuild the indexes. Returns timings."""
    from pgvector import Vector

    times: dict[str, float] = {}
    t = time.perf_counter()
    if conn.execute("SELECT EXISTS (SELECT FROM chunks)").fetchone()[0]:
        raise RuntimeError("load() expects an empty chunks table (TRUNCATE would skip the statistics triggers)")
    for name in index_defs:
        conn.execute(f"DROP INDEX IF EXISTS {name}")

    n_docs = math.ceil(n / DOC_SIZE)
    filtered = set(rng.choice(n_docs, size=max(1, round(n_docs * fraction)), replace=False).tolist())
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO documents (source, title, collection, kind, content_hash, bytes) "
            "VALUES (%s, %s, %s, 'manual', 'synthetic', 0)",
            [(f"synthetic-{d:06d}.pdf", f"Synthetic manual {d}", FILTER_COLLECTION if d in filtered else "default")
             for d in range(n_docs)],
        )
    doc_ids = [r[0] for r in conn.execute("SELECT id FROM documents ORDER BY id").fetchall()]

    conn.execute("CREATE TEMP TABLE bench_base (id int PRIMARY KEY, text text, heading_path text[], page int, "
                 "tsv tsvector)")
    with conn.cursor() as cur:
        # The same tsvector expression as ingestion.store._INSERT_CHUNK.
        cur.executemany(
            "INSERT INTO bench_base VALUES (%s, %s, %s, %s, setweight(to_tsvector('english', %s), 'A') || "
            "setweight(to_tsvector('english', %s), 'B'))",
            [(i, text, heading, page, " > ".join(heading), text)
             for i, (text, heading, page) in enumerate(zip(corpus["texts"], corpus["headings"], corpus["pages"],
                                                           strict=True))],
        )
    if rows == "mix":
        base_of, vectors, row_texts = mixed_rows(corpus, n, rng)
    else:
        base_of, vectors = synthetic_vectors(corpus["vectors"], n, rng, iid=corpus.get("iid", False))
        row_texts = noisy_texts(corpus["texts"], base_of, text_noise, rng)
    times["generate_s"] = time.perf_counter() - t

    t = time.perf_counter()
    conn.execute(f"CREATE TEMP TABLE bench_rows (row_no int, document_id bigint, position int, base int, "
                 f"embedding vector({DIM}), text text)")
    with conn.cursor() as cur, cur.copy(
        "COPY bench_rows (row_no, document_id, position, base, embedding, text) FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int4", "int8", "int4", "int4", "vector", "text"])
        for r in range(n):
            copy.write_row((r, doc_ids[r // DOC_SIZE], r % DOC_SIZE, int(base_of[r]), Vector(vectors[r]),
                            row_texts[r]))
    # A copy with its own text gets its own tsvector (the same expression as ingestion.store).
    conn.execute(
        """INSERT INTO chunks (document_id, position, text, heading_path, page, collection, product, embedding, tsv)
           SELECT r.document_id, r.position, coalesce(r.text, b.text), b.heading_path, b.page, d.collection, NULL,
                  r.embedding,
                  CASE WHEN r.text IS NULL THEN b.tsv
                       ELSE setweight(to_tsvector('english', array_to_string(b.heading_path, ' > ')), 'A')
                            || setweight(to_tsvector('english', r.text), 'B') END
           FROM bench_rows r JOIN bench_base b ON b.id = r.base JOIN documents d ON d.id = r.document_id
           ORDER BY r.row_no"""
    )
    conn.execute("DROP TABLE bench_rows, bench_base")
    times["copy_insert_s"] = time.perf_counter() - t

    conn.execute(f"SET maintenance_work_mem = {_literal(conn, mwm)}")
    for name, definition in index_defs.items():
        t = time.perf_counter()
        conn.execute(definition)
        times[f"index_{name}_s"] = time.perf_counter() - t
        progress(f"  {n:,} rows: built {name} in {times[f'index_{name}_s']:.1f} s")
    conn.execute("RESET maintenance_work_mem")
    t = time.perf_counter()
    conn.execute("VACUUM ANALYZE chunks")
    if conn.execute("SELECT to_regclass('chunk_terms') IS NOT NULL").fetchone()[0]:
        conn.execute("VACUUM ANALYZE chunk_terms")  # index-only scans need its visibility map
    conn.execute("VACUUM ANALYZE documents")
    times["vacuum_analyze_s"] = time.perf_counter() - t
    return times


def _literal(conn, value: str) -> str:
    from psycopg import sql

    return sql.Literal(value).as_string(conn)


# --- measuring -----------------------------------------------------------------------------


def timed(fn, items, budget_s: float | None = None, min_items: int = 10) -> tuple[list[float], list[Any]]:
    """Latency in ms of fn(item) for each item; with *budget_s*, stop once it is spent (after *min_items*)."""
    latencies, results = [], []
    started = time.perf_counter()
    for item in items:
        t = time.perf_counter()
        results.append(fn(item))
        latencies.append((time.perf_counter() - t) * 1000)
        if budget_s is not None and len(latencies) >= min_items and time.perf_counter() - started > budget_s:
            break
    return latencies, results


def summary(latencies: list[float], rows: list[int] | None = None, recall: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "queries": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "mean_ms": round(float(np.mean(latencies)), 2),
    }
    if rows is not None:
        out["rows_min"] = int(min(rows))
        out["rows_mean"] = round(float(np.mean(rows)), 2)
    if recall is not None:
        out["recall"] = round(recall, 4)
    return out


def recall_at(found: list[list[int]], exact: list[list[int]], k: int) -> float:
    return float(np.mean([len(set(f[:k]) & set(e[:k])) / max(1, min(k, len(e))) for f, e in zip(found, exact,
                                                                                                strict=True)]))


def plan_of(conn, statement: str, params: dict) -> str:
    """How the plan Postgres picks for *statement* reads chunks (custom plan, literal parameters)."""
    rows = conn.execute("EXPLAIN (COSTS OFF) " + statement, params).fetchall()
    nodes = [re.sub(r"'\[[^']*\]'::vector", "$vector", r[0]).strip().removeprefix("->  ") for r in rows]
    return "; ".join(n for n in nodes if "Scan" in n and "chunks" in n)


def hybrid_statement(searcher, conn, text: str, vector: np.ndarray, k: int) -> tuple[str, dict]:
    """The SQL of Searcher.search's main statement (unfiltered) and its parameters for one query."""
    from ingestion.search import HYBRID_SQL

    try:
        from ingestion.search import hybrid_sql
    except ImportError:  # before impact-ordered BM25
        return HYBRID_SQL, searcher.statement_params(conn, text, vector, k, None, None)
    return hybrid_sql(searcher.bm25, None, None), searcher.statement_params(conn, text, vector, k, None, None)


def text_ids(conn, sql: str, params: dict, k: int) -> list[int]:
    """The top *k* of the full-text side alone, in rank order."""
    return [r[0] for r in conn.execute(sql.replace("SELECT id FROM text_hits", "SELECT id FROM text_hits ORDER BY rank")
                                       + f" LIMIT {int(k)}", params).fetchall()]


def text_only(sql: str) -> str | None:
    """The hybrid statement reduced to its full-text CTE (unreferenced CTEs are not run)."""
    cut = sql.rfind(")\nSELECT ")
    if cut < 0 or "text_hits AS" not in sql:
        return None
    return sql[: cut + 2] + "SELECT id FROM text_hits"


def set_knob(conn, kind: str, value: int, k: int) -> None:
    """The session's search breadth: hnsw.ef_search (at least k), or ivfflat.probes."""
    if kind == "ivfflat":
        conn.execute("SELECT set_config('ivfflat.probes', %s, false)", (str(value),))
    else:
        conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(max(value, k)),))


def set_iterative_scan(conn, mode: str) -> None:
    conn.execute(f"SET hnsw.iterative_scan = {mode}")
    conn.execute(f"SET ivfflat.iterative_scan = {mode}")


def measure(conn, searcher_for, texts: list[str], vectors: np.ndarray, k: int, efs: list[int],
            budget_s: float, hybrid: bool = True, bm25_max: tuple[int, ...] = (),
            engine_searcher_for=None, kind: str = "hnsw") -> dict[str, Any]:
    ids = lambda rows: [r[0] for r in rows]  # noqa: E731
    queries = list(zip(texts, vectors, strict=True))
    first = {"v": vectors[0], "k": k, "c": FILTER_COLLECTION}
    out: dict[str, Any] = {"ef": {}, "filtered": {}, "plans": {}}

    progress(f"  warm-up: every query through the {kind} index" + (", 10 through Searcher.search" if hybrid else ""))
    set_knob(conn, kind, efs[0], k)
    for vector in vectors:
        conn.execute(ANN_SQL, {"v": vector, "k": k}).fetchall()
    hybrid_sql, template, warm = "", {}, None
    if hybrid:
        warm = searcher_for(efs[0])
        for text, vector in queries[:10]:
            warm.search(text, k=k, vector=vector)
        hybrid_sql, template = hybrid_statement(warm, conn, texts[0], vectors[0], k)

        progress("  chunks holding any of each query's words (what the full-text side must score)")
        _, matches = timed(lambda q: conn.execute(ANY_WORD_COUNT_SQL, {"text": q}).fetchone()[0], texts)
        total = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        out["any_word_match_share"] = {"mean": round(float(np.mean(matches)) / total, 4),
                                       "p50": round(percentile(matches, 50) / total, 4),
                                       "max": round(float(max(matches)) / total, 4)}

    progress("  exact search (sequential scan) for recall")
    conn.execute("SET enable_indexscan = off")
    conn.execute("SET enable_bitmapscan = off")
    out["plans"]["exact"] = plan_of(conn, ANN_SQL, first)
    exact_lat, exact = timed(lambda v: ids(conn.execute(ANN_SQL, {"v": v, "k": k}).fetchall()), vectors)
    exact_f_lat, exact_f = timed(
        lambda v: ids(conn.execute(ANN_FILTERED_SQL, {"v": v, "k": k, "c": FILTER_COLLECTION}).fetchall()), vectors)
    conn.execute("RESET enable_indexscan")
    conn.execute("RESET enable_bitmapscan")
    out["exact"] = summary(exact_lat)
    out["exact_filtered"] = summary(exact_f_lat, [len(e) for e in exact_f])

    impact = hybrid and getattr(warm, "bm25", "exact") == "impact" and hasattr(warm, "text_ranking")
    exact_found: list[list[int]] = []
    text_sql = text_only(hybrid_sql) if hybrid and not impact else None
    if impact:
        from ingestion.search import EXACT_TEXT_SQL

        template["text_ids"] = []  # the hybrid statement takes the impact side's ranking as a parameter
        progress("  full text alone (impact BM25, Searcher.text_ranking: every pass)")
        params_of = lambda q: hybrid_statement(warm, conn, q[0], q[1], k)[1]  # noqa: E731
        text_lat, rankings = timed(lambda q: warm.text_ranking(conn, params_of(q), k), queries, budget_s)
        found = [r.ids[:k] for r in rankings]
        progress("  full text alone, exact BM25 (every matching chunk scored) for recall")
        exact_lat, exact_found = timed(
            lambda q: [r[0] for r in conn.execute(EXACT_TEXT_SQL + f" LIMIT {int(k)}", params_of(q)).fetchall()],
            queries[:len(found)], budget_s)
        n = len(exact_found)
        out["text"] = summary(text_lat, recall=recall_at(found[:n], exact_found, k))
        out["text"].update({
            "certified_share": round(float(np.mean([r.certified for r in rankings])), 4),
            "passes_mean": round(float(np.mean([r.passes for r in rankings])), 2),
            "passes_max": int(max(r.passes for r in rankings)),
            "per_term_p50": int(percentile([r.per_term for r in rankings], 50)),
            "postings_p50": int(percentile([r.postings for r in rankings], 50)),
            "postings_max": int(max(r.postings for r in rankings)),
            "first_pass_per_term": warm.per_term, "max_per_term": warm.max_per_term,
        })
        out["text_exact"] = summary(exact_lat)
        out["text_variants"] = {}
        for depth in bm25_max:  # the same queries with another deepest pass
            import copy

            other = copy.copy(warm)
            other.max_per_term = max(other.per_term, depth)
            progress(f"  full text alone, impact BM25 up to {other.max_per_term} postings per word")
            lat, ranks = timed(lambda q, s=other: s.text_ranking(conn, params_of(q), k), queries[:n])
            out["text_variants"][other.max_per_term] = {
                **summary(lat, recall=recall_at([r.ids[:k] for r in ranks], exact_found, k)),
                "certified_share": round(float(np.mean([r.certified for r in ranks])), 4),
                "passes_mean": round(float(np.mean([r.passes for r in ranks])), 2)}
    elif text_sql:
        from ingestion.search import HYBRID_SQL

        progress("  full text alone")
        out["plans"]["text"] = plan_of(conn, text_sql, template)
        text_lat, found = timed(lambda q: text_ids(conn, text_sql, hybrid_statement(warm, conn, q[0], q[1], k)[1], k),
                                queries, budget_s)
        out["text"] = summary(text_lat)
        exact_text_sql = text_only(HYBRID_SQL)
        if exact_text_sql != text_sql:  # impact-ordered BM25: its recall against exact BM25, and exact's latency
            progress("  full text alone, exact BM25 (every matching chunk scored) for recall")
            exact_lat, exact_found = timed(
                lambda q: text_ids(conn, exact_text_sql, hybrid_statement(warm, conn, q[0], q[1], k)[1], k),
                queries[:len(found)], budget_s)
            n = len(exact_found)
            out["text"] = summary(text_lat, recall=recall_at(found[:n], exact_found, k))
            out["text_exact"] = summary(exact_lat)
    else:
        if hybrid:
            progress("  full text alone: skipped (the hybrid statement has no text_hits CTE)")
        out["text"] = None

    for ef in efs:
        progress(f"  {'probes' if kind == 'ivfflat' else 'ef_search'}={ef}: hybrid, ann, filtered")
        searcher = searcher_for(ef)
        hyb_lat, hyb = timed(lambda q, s=searcher: s.search(q[0], k=k, vector=q[1]), queries, budget_s) if hybrid \
            else ([], [])
        # The same statements one after the other on one connection: the baseline of the parallel sides.
        sequential = searcher_for(ef, parallel=False) if hybrid and getattr(searcher, "_vector_side", None) else None
        seq_lat, seq = timed(lambda q, s=sequential: s.search(q[0], k=k, vector=q[1]), queries, budget_s) \
            if sequential else ([], [])
        set_knob(conn, kind, ef, k)
        set_iterative_scan(conn, "off")
        conn.execute("SET enable_seqscan = off")  # through the vector index, as Searcher.search runs it
        plans = {"ann": plan_of(conn, ANN_SQL, first)}
        ann_lat, ann = timed(lambda v: ids(conn.execute(ANN_SQL, {"v": v, "k": k}).fetchall()), vectors)
        conn.execute("RESET enable_seqscan")
        out["ef"][ef] = {
            "hybrid": summary(hyb_lat, [len(h) for h in hyb]) if hybrid else None,
            "hybrid_sequential": summary(seq_lat, [len(h) for h in seq]) if sequential else None,
            "ann": summary(ann_lat, [len(a) for a in ann], recall_at(ann, exact, k)),
        }
        filtered: dict[str, Any] = {}
        for mode in ("off", "relaxed_order"):
            set_iterative_scan(conn, mode)
            for variant, statement in (("ann", ANN_FILTERED_SQL), ("ann_hnsw_forced", ANN_FILTERED_VIA_HNSW_SQL)):
                name = f"{variant}_iterative_{mode}"
                forced = variant == "ann_hnsw_forced"
                if forced:
                    conn.execute("SET enable_seqscan = off")
                plans[f"filtered_{name}"] = plan_of(conn, statement, first)
                lat, found = timed(
                    lambda v, st=statement: ids(conn.execute(st, {"v": v, "k": k, "c": FILTER_COLLECTION}).fetchall()),
                    vectors)
                if forced:
                    conn.execute("RESET enable_seqscan")
                filtered[name] = summary(lat, [len(f) for f in found], recall_at(found, exact_f, k))
        out["filtered"][ef] = filtered
        out["plans"][ef] = plans
        if not hybrid:
            continue
        # The hybrid statement as Searcher runs it (iterative scan on), unfiltered and filtered.
        set_iterative_scan(conn, "relaxed_order")
        conn.execute("SET enable_seqscan = off")
        plans["hybrid"] = plan_of(conn, hybrid_sql, template)
        plans["hybrid_filtered"] = plan_of(conn, hybrid_sql, {**template, "collection": FILTER_COLLECTION})
        conn.execute("RESET enable_seqscan")
        set_iterative_scan(conn, "DEFAULT")
        hf_lat, hf = timed(lambda q, s=searcher: s.search(q[0], k=k, collection=FILTER_COLLECTION, vector=q[1]),
                           queries, budget_s)
        filtered["hybrid"] = summary(hf_lat, [len(h) for h in hf])
    conn.execute("RESET hnsw.ef_search")
    conn.execute("RESET ivfflat.probes")
    if engine_searcher_for is not None and hybrid:
        out["engine"] = measure_engine(conn, engine_searcher_for(efs[0]), warm, queries, exact_found, k, budget_s)
    return out


def measure_engine(conn, searcher, warm, queries: list, exact_found: list[list[int]], k: int,
                   budget_s: float) -> dict[str, Any]:
    """SUPPORTBOT_BM25=engine: the full-text side alone (the engine's candidates scored exactly; recall@k against
    exact BM25 when the run computed it), the engine's statements alone, and the hybrid search through it,
    unfiltered and filtered."""
    params_of = lambda q: hybrid_statement(warm, conn, q[0], q[1], k)[1]  # noqa: E731
    progress("  full-text engine: warm-up, then full text alone")
    for text, vector in queries[:10]:
        searcher.search(text, k=k, vector=vector)
    params = [params_of(q) for q in queries]
    text_lat, found = timed(lambda p: searcher.engine_ranking(conn, p)[:k], params, budget_s)
    engine_lat, _ = timed(searcher.engine_candidates, params, budget_s)
    n = min(len(found), len(exact_found))
    out = {"text": summary(text_lat, recall=recall_at(found[:n], exact_found[:n], k) if n else None),
           "engine_alone": summary(engine_lat)}
    progress("  full-text engine: hybrid, filtered hybrid")
    lat, hits = timed(lambda q: searcher.search(q[0], k=k, vector=q[1]), queries, budget_s)
    out["hybrid"] = summary(lat, [len(h) for h in hits])
    lat, hits = timed(lambda q: searcher.search(q[0], k=k, collection=FILTER_COLLECTION, vector=q[1]), queries,
                      budget_s)
    out["hybrid_filtered"] = summary(lat, [len(h) for h in hits])
    return out


def relation_sizes(conn) -> dict[str, int]:
    rows = conn.execute(
        """SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c
           WHERE c.relname IN ('chunks', 'chunks_embedding_hnsw', 'chunks_embedding_ivfflat', 'chunks_tsv_gin',
                               'chunk_terms', 'chunk_terms_by_impact', 'chunk_terms_by_collection_impact')"""
    ).fetchall()
    return {name: int(size) for name, size in rows}


def make_searcher(db, embedder, settings, ef: int, parallel: bool = True, kind: str = "hnsw"):
    from ingestion.search import Searcher

    if "search_parallel" in type(settings).model_fields:
        settings = settings.model_copy(update={"search_parallel": parallel})
    if hasattr(Searcher, "from_settings"):
        searcher = Searcher.from_settings(db, embedder, settings)
    else:
        searcher = Searcher(db, embedder, settings.search_candidates, settings.hnsw_ef_search)
    if kind == "ivfflat":
        searcher.probes = ef
    else:
        searcher.ef_search = ef
    return searcher


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    contention_check()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    results: dict[str, Any] = {"benchmark": NAME, "environment": environment(), "k": args.k,
                               "vector_index": args.vector_index,
                               "filter_fraction": args.filter_fraction, "sizes": {}}

    from ingestion.embed import get_embedder
    from supportbot.settings import Settings

    settings = Settings()
    configured = settings.ivfflat_probes if args.vector_index == "ivfflat" else settings.hnsw_ef_search
    efs = list(dict.fromkeys(configured if e.strip() == "settings" else int(e)
                             for e in args.ef.split(",") if e.strip()))
    results["settings"] = {k: getattr(settings, k) for k in (
        "search_candidates", "hnsw_ef_search", "ivfflat_probes", "search_vector_weight", "search_text_weight", "bm25",
        "bm25_postings_per_word", "bm25_max_postings_per_word") if hasattr(settings, k)}
    use_real = not args.random and args.corpus.exists()
    embedder = get_embedder(settings)
    if use_real:
        corpus = real_corpus(args.corpus, settings, embedder, not args.no_cache)
        if args.questions.exists():
            texts, qvec, qsource = real_queries(args, embedder, rng, not args.no_cache)
        else:
            texts = [h[-1] if h else t[:60] for h, t in zip(corpus["headings"], corpus["texts"], strict=True)]
            texts = texts[: args.queries]
            qvec, qsource = embedder.embed(texts), {"chunk_headings": len(texts)}
    else:
        corpus = random_corpus(rng)
        texts, qvec, qsource = random_queries(args.queries, corpus, rng)
    order = rng.permutation(len(texts))  # a budget-cut prefix still mixes questions and titles
    texts, qvec = [texts[i] for i in order], qvec[order]
    results["data"] = {"corpus": str(args.corpus) if use_real else "random", "base_chunks": len(corpus["texts"]),
                       "rows": args.rows, "text_noise": args.text_noise if args.rows == "copies" else None,
                       "queries": qsource}
    progress(f"{len(corpus['texts'])} base chunks ({results['data']['corpus']}), {len(texts)} queries {qsource}")

    for n in args.sizes:
        t0 = time.perf_counter()
        with fresh_home(keep=args.keep) as (_home_settings, db):
            import psycopg
            from pgvector.psycopg import register_vector

            results.setdefault("server", server_facts(db))
            with psycopg.connect(db.url, autocommit=True) as conn:
                register_vector(conn)
                index_defs = dict(conn.execute(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE (tablename = 'chunks' "
                    "AND indexname IN ('chunks_tsv_gin', 'chunks_embedding_hnsw')) "
                    "OR (tablename = 'chunk_terms' AND indexname LIKE 'chunk_terms_by_%') "
                    "ORDER BY indexname DESC").fetchall())
                if args.vector_index == "ivfflat":  # built after the load, on its rows, by the product's command
                    conn.execute("DROP INDEX chunks_embedding_hnsw")
                    del index_defs["chunks_embedding_hnsw"]
                results["index_definitions"] = index_defs
                progress(f"{n:,} chunks: loading")
                load_times = load(conn, index_defs, corpus, n, args.filter_fraction, args.maintenance_work_mem, rng,
                                  args.text_noise, args.rows)
                if args.vector_index == "ivfflat":
                    from ingestion.vector_index import build

                    index, seconds = build(db, "ivfflat", args.lists, args.maintenance_work_mem)
                    load_times["index_chunks_embedding_ivfflat_s"] = seconds
                    results["index_definitions"][index.name] = index.definition
                    progress(f"  {n:,} rows: built {index.name} ({index.lists} lists) in {seconds:.1f} s")
                progress(f"{n:,} chunks: loaded ({', '.join(f'{k} {v:.1f}' for k, v in load_times.items())})")
                filtered_rows = conn.execute("SELECT count(*) FROM chunks WHERE collection = %s",
                                             (FILTER_COLLECTION,)).fetchone()[0]
                engine_searcher_for = None
                if args.engine_url:
                    from ingestion.fulltext_engine import FulltextEngine

                    engine_settings = settings.model_copy(update={"bm25": "engine",
                                                                  "bm25_engine_url": args.engine_url})
                    progress(f"{n:,} chunks: full-text engine index (supportbot fulltext reindex)")
                    t1 = time.perf_counter()
                    FulltextEngine(args.engine_url).reindex(db)
                    load_times["engine_index_s"] = time.perf_counter() - t1
                    engine_searcher_for = lambda ef, db=db, es=engine_settings: make_searcher(  # noqa: E731
                        db, embedder, es, ef, kind=args.vector_index)
                figures = measure(conn, lambda ef, parallel=True, db=db: make_searcher(db, embedder, settings, ef,
                                                                                       parallel, args.vector_index),
                                  texts, qvec, args.k, efs, args.phase_budget, hybrid=not args.no_hybrid,
                                  bm25_max=args.bm25_max, engine_searcher_for=engine_searcher_for,
                                  kind=args.vector_index)
                results["sizes"][n] = {
                    "load": {k: round(v, 2) for k, v in load_times.items()},
                    "filtered_rows": filtered_rows,
                    "relation_bytes": relation_sizes(conn),
                    **figures,
                    "seconds": round(time.perf_counter() - t0, 1),
                }
        progress(f"{n:,} chunks: done in {results['sizes'][n]['seconds']} s")
    results["total_s"] = round(time.perf_counter() - started, 1)
    results["loadavg_at_end"] = environment().get("loadavg_1_5_15")
    report(results, efs)
    out = write_json(NAME, results, args.json)
    print(f"written: {out}")
    return 0


def report(results: dict[str, Any], efs: list[int]) -> None:
    sizes = results["sizes"]
    kind = results.get("vector_index", "hnsw")
    vector_index = f"chunks_embedding_{kind}"
    knob = "probes" if kind == "ivfflat" else "ef"
    print()
    print(table(
        ["chunks", "filtered", "copy+insert s", "GIN s", f"{kind} s", "postings idx s", "table MB", f"{kind} MB",
         "postings MB", "total s"],
        [[n, r["filtered_rows"], r["load"]["copy_insert_s"], r["load"].get("index_chunks_tsv_gin_s"),
          r["load"].get(f"index_{vector_index}_s"),
          sum(v for key, v in r["load"].items() if key.startswith("index_chunk_terms")) or None,
          r["relation_bytes"].get("chunks", 0) / 1e6, r["relation_bytes"].get(vector_index, 0) / 1e6,
          r["relation_bytes"].get("chunk_terms", 0) / 1e6 or None, r["seconds"]] for n, r in sizes.items()],
        title=f"Load (maintenance_work_mem for the builds; server {results['server']['postgres']}, "
              f"pgvector {results['server']['pgvector']})",
    ))
    print()
    rows = []
    for n, r in sizes.items():
        for ef in efs:
            e = r["ef"][ef]
            text, hyb, seq = r["text"] or {}, e["hybrid"] or {}, e.get("hybrid_sequential") or {}
            share = r.get("any_word_match_share")
            exact_text = r.get("text_exact") or {}
            rows.append([n, ef, hyb.get("queries"), hyb.get("p50_ms"), hyb.get("p95_ms"), seq.get("p50_ms"),
                         seq.get("p95_ms"),
                         e["ann"]["queries"], e["ann"]["p50_ms"], e["ann"]["p95_ms"], e["ann"]["recall"],
                         text.get("queries"), text.get("p50_ms"), text.get("p95_ms"), text.get("recall"),
                         text.get("certified_share"), exact_text.get("p50_ms"), r["exact"]["p50_ms"],
                         100 * share["mean"] if share else None])
    print(table(
        ["chunks", knob, "hyb n", "hybrid p50", "hybrid p95", "one-conn p50", "one-conn p95", "ann n", "ann p50",
         "ann p95",
         f"recall@{results['k']}", "text n", "text p50", "text p95", "text recall", "certified", "exact BM25 p50",
         "exact p50", "match %"],
        rows, title="Latency in ms (hybrid = Searcher.search with a precomputed vector, its vector side on a second "
                    "connection; one-conn = the same on one connection, one side after the other, the baseline; "
                    "text = its full-text half; "
                    "text recall = its top-k against exact BM25's; certified = share of queries whose impact top-k is "
                    "proven equal to exact BM25's; exact p50 = vector search by sequential scan; "
                    "n = queries timed; match % = mean share of chunks holding any query word)",
    ))
    variants = [[n, depth, v["queries"], v["p50_ms"], v["p95_ms"], v["recall"], v["certified_share"], v["passes_mean"]]
                for n, r in sizes.items() for depth, v in (r.get("text_variants") or {}).items()]
    if variants:
        print()
        print(table(["chunks", "max postings/word", "n", "text p50", "text p95", "text recall", "certified",
                     "passes"], variants, title="Impact BM25 with other deepest passes (same queries)"))
    print()
    rows = []
    names = {"ann_iterative_off": "ann, planner's choice, iterative off",
             "ann_iterative_relaxed_order": "ann, planner's choice, relaxed_order",
             "ann_hnsw_forced_iterative_off": "ann via HNSW, iterative off",
             "ann_hnsw_forced_iterative_relaxed_order": "ann via HNSW, relaxed_order",
             "hybrid": "hybrid (Searcher.search)"}
    for n, r in sizes.items():
        for ef in efs:
            f = r["filtered"][ef]
            for name, label in names.items():
                if name not in f:
                    continue
                s = f[name]
                rows.append([n, ef, label, s["queries"], s["rows_min"], s["rows_mean"], s.get("recall"), s["p50_ms"],
                             s["p95_ms"]])
    print(table(
        ["chunks", knob, "filtered query", "n", "rows min", "rows mean", f"recall@{results['k']}", "p50 ms",
         "p95 ms"],
        rows, title=f"Filtered by collection ({100 * results['filter_fraction']:g} % of rows), k={results['k']}",
    ))
    print()
    print("How each statement reads chunks (scan nodes of EXPLAIN with the first query's parameters):")
    for n, r in sizes.items():
        for ef in efs:
            for name, plan in r["plans"][ef].items():
                print(f"  {n:>7,}  {knob} {ef:>3}  {name:<45} {plan}")
    print(f"queries: {results['data']['queries']}; base chunks: {results['data']['base_chunks']} "
          f"({results['data']['corpus']}); total {results['total_s']} s")


if __name__ == "__main__":
    sys.exit(main())
