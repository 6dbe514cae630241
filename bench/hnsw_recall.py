"""HNSW recall on a store kept by ``search_bench.py --keep``: ef_search, deeper candidate sets, and two recall rules.

``search_bench.py`` builds its table, measures and deletes it; a 1M-chunk table takes 20+ minutes to build. This
script reads such a table again (it changes nothing but session settings), so that index settings can be compared on
the same rows:

* ``ef`` (``--configs 400``): ``ORDER BY embedding <=> q LIMIT --candidates`` at that ``hnsw.ef_search``, iterative
  scan off, the k nearest kept;
* ``ef:depth`` (``--configs 1000:4000``): the index scan goes on past ef_search (``hnsw.iterative_scan =
  relaxed_order``) until it has returned *depth* rows, which are re-sorted by exact distance.

For each: latency p50/p95 and recall@k against exact search (a sequential scan, cached in ``--exact-cache`` since it
takes ~1.5 s a query at 1M), by id and by distance (the ann-benchmarks rule: a row found counts when its distance is
at most the exact k-th distance + 1e-3, so that near-ties found instead of the exact ones count), and the ratio of
the k-th distance found to the exact k-th distance.

The queries are search_bench's (same ``--seed``, same cache), so the figures match its runs.

``--ivfflat LISTS`` measures an IVFFlat index instead, each configuration being ``ivfflat.probes``: the index is
built, and the HNSW index dropped, inside a transaction that is rolled back at the end, so the store is left as it
was (the build time is reported).

Usage: .venv/bin/python bench/hnsw_recall.py --home KEPT_HOME [--configs 40,400,1000,1000:2000] [--rows copies]
       .venv/bin/python bench/hnsw_recall.py --home KEPT_HOME --ivfflat 1000 --configs 5,10,20,40
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from _common import environment, percentile, progress, table, write_json

NAME = "hnsw_recall"
EXACT_SQL = "SELECT id, cosine_distance(embedding, %(v)s) FROM chunks ORDER BY 2 LIMIT %(k)s"
PLAIN_SQL = "SELECT id, embedding <=> %(v)s FROM chunks ORDER BY embedding <=> %(v)s LIMIT %(candidates)s"
# "+ 0": with the outer ORDER BY on the inner one's key the planner would drop the sort and stop the scan early.
DEEP_SQL = ("SELECT id, d FROM (SELECT id, embedding <=> %(v)s AS d FROM chunks ORDER BY embedding <=> %(v)s "
            "LIMIT %(depth)s) c ORDER BY d + 0 LIMIT %(candidates)s")
EPSILON = 1e-3


def configs(value: str) -> list[tuple[int, int]]:
    """``40,1000:2000`` → [(40, 0), (1000, 2000)]: (ef_search, depth; 0 = no deeper scan)."""
    try:
        out = [(int(ef), int(depth or 0)) for ef, _, depth in (c.partition(":") for c in value.split(","))]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected numbers, e.g. 40,400,1000:2000") from None
    if any(not 1 <= ef <= 1000 or depth < 0 for ef, depth in out):
        raise argparse.ArgumentTypeError(f"{value!r}: ef_search is 1 to 1000, depth 0 or more")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--home", type=Path, help="The kept store's folder (search_bench --keep prints it).")
    where.add_argument("--url", help="libpq URL of the store.")
    p.add_argument("--configs", type=configs, default="40,400,1000", help="Comma-separated ef or ef:depth.")
    p.add_argument("--rows", choices=("copies", "mix"), default="copies", help="The kept store's --rows (for the "
                   "record; the queries do not depend on it).")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--candidates", type=int, default=40, help="Rows the vector side fetches (search_candidates).")
    p.add_argument("--exact-cache", type=Path, default=None, help="JSON of the exact neighbours (made when missing).")
    p.add_argument("--ivfflat", type=int, default=0, metavar="LISTS",
                   help="Measure an IVFFlat index of LISTS lists instead (--configs are then ivfflat.probes).")
    p.add_argument("--maintenance-work-mem", default="3GB", help="For the --ivfflat build.")
    p.add_argument("--seed", type=int, default=1234, help="search_bench's --seed (the query order).")
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args(argv)


def url_of(home: Path) -> str:
    """The libpq URL of the server running in *home*/pgdata (its postmaster.pid: port, then socket folder)."""
    try:
        lines = (home / "pgdata" / "postmaster.pid").read_text().splitlines()
    except OSError as exc:
        raise SystemExit(f"error: --home {home}: no running server there ({exc})") from exc
    return f"postgresql://postgres@/postgres?host={lines[4]}&port={lines[3]}"


def queries(n: int, seed: int) -> np.ndarray:
    """search_bench's query vectors, in its order."""
    import search_bench

    from ingestion.embed import get_embedder
    from supportbot.settings import Settings

    args = search_bench.parse_args([])
    rng = np.random.default_rng(seed)
    texts, vectors, _ = search_bench.real_queries(args, get_embedder(Settings()), rng, True)
    return vectors[rng.permutation(len(texts))][:n]


def exact_neighbours(conn, vectors: np.ndarray, k: int, cache: Path | None) -> list[list[tuple[int, float]]]:
    """Each query's k nearest chunks by sequential scan (cosine_distance(), which the index does not serve), from
    *cache* when it was made on a table of the same rows."""
    table_key = list(conn.execute("SELECT count(*), max(id) FROM chunks").fetchone())
    if cache and cache.exists():
        cached = json.loads(cache.read_text())
        cached = cached if isinstance(cached, dict) else {}  # a cache of the first version: no table recorded
        neighbours = cached.get("neighbours", [])
        if cached.get("table") == table_key and len(neighbours) >= len(vectors) and all(
                len(n) >= k for n in neighbours):
            return [[(int(i), float(d)) for i, d in n[:k]] for n in neighbours[:len(vectors)]]
        progress(f"{cache}: made on another table or fewer queries; searching again")
    exact = []
    for i, v in enumerate(vectors):
        exact.append(conn.execute(EXACT_SQL, {"v": v, "k": k}).fetchall())
        if i % 20 == 0:
            progress(f"exact search {i}/{len(vectors)}")
    if cache:
        cache.write_text(json.dumps({"table": table_key, "neighbours": exact}))
    return exact


def measure(conn, vectors: np.ndarray, exact: list, k: int, candidates: int, ef: int, depth: int,
            ivfflat: bool = False) -> dict:
    """*ef* is hnsw.ef_search, or ivfflat.probes with *ivfflat*; *depth* turns that index's iterative scan on."""
    index, knob = ("ivfflat", "probes") if ivfflat else ("hnsw", "ef_search")
    conn.execute(f"SET {index}.{knob} = {int(ef)}")
    conn.execute(f"SET {index}.iterative_scan = {'relaxed_order' if depth else 'off'}")
    latencies, by_id, by_distance, ratio = [], [], [], []
    for v, truth in zip(vectors, exact, strict=True):
        t = time.perf_counter()
        rows = conn.execute(DEEP_SQL if depth else PLAIN_SQL, {"v": v, "depth": depth, "candidates": candidates})
        found = sorted(rows.fetchall(), key=lambda r: r[1])[:k]
        latencies.append((time.perf_counter() - t) * 1000)
        kth = truth[k - 1][1]
        by_id.append(len({i for i, _ in found} & {i for i, _ in truth}) / k)
        by_distance.append(sum(d <= kth + EPSILON for _, d in found) / k)
        ratio.append(found[-1][1] / kth if kth > 0 else 1.0)
    return {"ef_search": ef, "depth": depth, "p50_ms": round(percentile(latencies, 50), 2),
            "p95_ms": round(percentile(latencies, 95), 2), "recall_by_id": round(float(np.mean(by_id)), 4),
            "recall_by_distance": round(float(np.mean(by_distance)), 4),
            "kth_distance_ratio_p50": round(float(np.median(ratio)), 5),
            "kth_distance_ratio_max": round(float(np.max(ratio)), 4)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import psycopg
    from pgvector.psycopg import register_vector

    url = args.url or url_of(args.home)
    vectors = queries(args.queries, args.seed)
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        rows = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        index = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'chunks_embedding_hnsw'").fetchone()
        progress(f"{rows:,} chunks; {index[0] if index else 'no HNSW index'}")
        exact = exact_neighbours(conn, vectors, args.k, args.exact_cache)
        with conn.transaction(force_rollback=True):  # an --ivfflat index, and the HNSW one's absence, end here
            if args.ivfflat:  # the product's build (supportbot vector-index build --kind ivfflat), rolled back
                from ingestion.vector_index import build_in

                _, build_s = build_in(conn, "ivfflat", args.ivfflat, args.maintenance_work_mem)
                index = (f"ivfflat (lists = {args.ivfflat}), built in {build_s:.0f} s, rolled back",)
                progress(index[0])
            conn.execute("SET enable_seqscan = off")
            for v in vectors:  # warm the index into the cache
                conn.execute(PLAIN_SQL, {"v": v, "candidates": args.k}).fetchall()
            results = [measure(conn, vectors, exact, args.k, args.candidates, c[0], c[1], bool(args.ivfflat))
                       for c in args.configs]
    knob = "probes" if args.ivfflat else "ef_search"
    print(table([knob, "depth", "p50 ms", "p95 ms", f"recall@{args.k} by id", "by distance",
                 "k-th distance / exact p50", "max"],
                [[r["ef_search"], r["depth"] or "-", r["p50_ms"], r["p95_ms"], r["recall_by_id"],
                  r["recall_by_distance"], r["kth_distance_ratio_p50"], r["kth_distance_ratio_max"]] for r in results],
                title=f"{'IVFFlat' if args.ivfflat else 'HNSW'} recall, {rows:,} chunks ({args.rows}), "
                      f"{len(vectors)} queries"))
    write_json(NAME, {"benchmark": NAME, "environment": environment(), "rows": args.rows, "chunks": rows,
                      "index": index[0] if index else None, "k": args.k, "candidates": args.candidates,
                      "queries": len(vectors), "knob": knob, "results": results}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
