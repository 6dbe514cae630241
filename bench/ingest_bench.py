"""Ingestion benchmark: how fast a manual goes from file to searchable chunks.

For each file (default: the Galaxy S10 manual, PDF and HTML, from ../shared/data/manuals when it
exists) in a fresh embedded PostgreSQL in a temporary SUPPORTBOT_HOME, it measures:

* the stages one by one, called as ``Ingestor._ingest`` calls them: prepare (check_file, read,
  sha256, find_document), parse (parse_file), chunk (chunk_blocks; time inside the embedder's
  count_tokens reported apart), embed (embedder.embed), store (store.write_document);
* ``Ingestor.ingest_file`` end to end on the same file (another collection, so it is "added");
* the embedder's raw throughput on the same chunk texts, in the same run (embedder.embed alone),
  and the ratio ingestion chunks/s ÷ raw embed texts/s (1.0 would mean ingestion is embedding-bound
  with no other cost).

Before the timed runs, a one-page / few-line sample of each file type is ingested once so that
imports and lazy model loads are reported as "first-use overhead" instead of inflating the first
file's parse time (``--no-warmup`` to include them).

Usage: .venv/bin/python bench/ingest_bench.py [--file PATH ...] [--embed-repeats N] [--json PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    S10_HTML,
    S10_PDF,
    contention_check,
    environment,
    fresh_home,
    progress,
    server_facts,
    table,
    write_json,
)

NAME = "ingest_bench"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Prints a table and writes bench/results/ingest_bench.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--file", type=Path, action="append", default=None,
                   help="A file to ingest (repeat for several). Default: the S10 manual's PDF and HTML "
                        f"({S10_PDF.parent}) when present.")
    p.add_argument("--embed-repeats", type=int, default=1,
                   help="Times to run the raw embed pass (the best run is reported).")
    p.add_argument("--no-warmup", action="store_true",
                   help="Skip the warm-up ingestion of a small sample per file type (imports then count "
                        "in the first file's parse time).")
    p.add_argument("--keep", action="store_true", help="Keep the temporary SUPPORTBOT_HOME and its server running.")
    p.add_argument("--json", type=Path, default=None,
                   help="Where to write the JSON (default: bench/results/ingest_bench.json).")
    args = p.parse_args(argv)
    if args.file is None:
        args.file = [f for f in (S10_PDF, S10_HTML) if f.exists()]
        if not args.file:
            p.error(f"no default manual at {S10_PDF.parent}; pass --file PATH")
    for f in args.file:
        if not f.is_file():
            p.error(f"{f}: no such file")
    return args


def pdf_pages(path: Path) -> int | None:
    if path.suffix.lower() != ".pdf":
        return None
    from pypdf import PdfReader

    return len(PdfReader(str(path)).pages)


def make_sample(path: Path, folder: Path) -> Path | None:
    """A small file of the same type as *path*, to pay first-use costs before timing."""
    suffix = path.suffix.lower()
    sample = folder / f"warmup{suffix}"
    if suffix == ".pdf":
        from pypdf import PdfReader, PdfWriter

        writer = PdfWriter()
        writer.add_page(PdfReader(str(path)).pages[min(1, len(PdfReader(str(path)).pages) - 1)])
        with sample.open("wb") as f:
            writer.write(f)
    elif suffix in (".html", ".htm"):
        sample.write_text("<html><body><h1>Warm-up</h1><p>Tap Settings to turn on Wi-Fi. Then wait.</p>"
                          "<h2>More</h2><p>Press and hold the Power key.</p></body></html>")
    elif suffix in (".md", ".markdown", ".txt", ".text"):
        sample.write_text("# Warm-up\n\nTap Settings to turn on Wi-Fi. Then wait.\n")
    elif suffix == ".docx":
        return None  # nothing at hand writes DOCX without a new dependency; the first file pays
    else:
        return None
    return sample


class CountingTokens:
    """Wraps embedder.count_tokens to report how often chunking calls it and the time spent inside."""

    def __init__(self, count) -> None:
        self.count = count
        self.calls = 0
        self.seconds = 0.0

    def __call__(self, text: str) -> int:
        started = time.perf_counter()
        try:
            return self.count(text)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1


def staged(path: Path, settings, db, embedder, collection: str) -> dict[str, Any]:
    """The stages of Ingestor._ingest, in its order, each timed."""
    from ingestion import store
    from ingestion.chunk import chunk_blocks
    from ingestion.parse import parse_file
    from ingestion.validate import check_file

    times: dict[str, float] = {}
    cpu: dict[str, float] = {}
    c = time.process_time()
    t = time.perf_counter()
    check_file(path, int(settings.max_file_mb * 1024 * 1024))
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    existing = store.find_document(db, collection, path.name)
    assert existing is None, "the staged run expects a fresh collection"
    times["prepare"] = time.perf_counter() - t
    cpu["prepare"] = time.process_time() - c

    c, t = time.process_time(), time.perf_counter()
    parsed = parse_file(path)
    times["parse"] = time.perf_counter() - t
    cpu["parse"] = time.process_time() - c

    counter = CountingTokens(embedder.count_tokens)
    c, t = time.process_time(), time.perf_counter()
    chunks = chunk_blocks(
        parsed.blocks,
        counter,
        min(settings.chunk_tokens, getattr(embedder, "max_tokens", 512)),
        settings.chunk_overlap_tokens,
    )
    times["chunk"] = time.perf_counter() - t
    cpu["chunk"] = time.process_time() - c

    texts = [chunk.embedding_text() for chunk in chunks]
    c, t = time.process_time(), time.perf_counter()
    vectors = embedder.embed(texts)
    times["embed"] = time.perf_counter() - t
    cpu["embed"] = time.process_time() - c

    c, t = time.process_time(), time.perf_counter()
    store.write_document(
        db, source=path.name, title=parsed.title, collection=collection, product=None,
        kind="faq" if parsed.is_faq else "manual", content_hash=digest, size=len(data),
        chunks=chunks, vectors=vectors,
    )
    times["store"] = time.perf_counter() - t
    cpu["store"] = time.process_time() - c

    tokens = [embedder.count_tokens(x) for x in texts]
    return {
        "times": times,
        "cpu": cpu,
        "blocks": len(parsed.blocks),
        "chunks": len(chunks),
        "texts": texts,
        "count_tokens_calls": counter.calls,
        "count_tokens_s": counter.seconds,
        "tokens_mean": statistics.fmean(tokens) if tokens else 0.0,
        "tokens_max": max(tokens, default=0),
        "words_mean": statistics.fmean(len(x.split()) for x in texts) if texts else 0.0,
        "truncated_chunks": sum(n > getattr(embedder, "max_tokens", 512) for n in tokens),
    }


def bench_file(path: Path, settings, db, embedder, repeats: int) -> dict[str, Any]:
    from ingestion.pipeline import Ingestor

    pages = pdf_pages(path)
    size = path.stat().st_size
    progress(f"{path.name}: staged run (parse → chunk → embed → store)")
    s = staged(path, settings, db, embedder, collection="bench-staged")
    stage_total = sum(s["times"].values())
    progress(f"{path.name}: {s['chunks']} chunks; stages {', '.join(f'{k} {v:.1f} s' for k, v in s['times'].items())}")

    progress(f"{path.name}: Ingestor.ingest_file end to end")
    c = time.process_time()
    outcome = Ingestor(db, embedder, settings).ingest_file(path, path.name, collection="bench-e2e")
    e2e_cpu = time.process_time() - c
    if not outcome.ok:
        raise SystemExit(f"ingest_file failed: {outcome.message}")
    e2e = outcome.seconds
    progress(f"{path.name}: end to end {e2e:.1f} s ({outcome.outcome}, {outcome.chunks} chunks)")
    if outcome.chunks != s["chunks"]:
        progress(f"warning: Ingestor made {outcome.chunks} chunks, the staged run {s['chunks']}: "
                 "the staged run no longer mirrors Ingestor._ingest")

    raw_runs, raw_cpu = [], []
    for i in range(repeats):
        progress(f"{path.name}: raw embedder.embed on the same {len(s['texts'])} texts ({i + 1}/{repeats})")
        c, t = time.process_time(), time.perf_counter()
        embedder.embed(s["texts"])
        raw_runs.append(time.perf_counter() - t)
        raw_cpu.append(time.process_time() - c)
    raw = min(raw_runs)
    raw_tps = len(s["texts"]) / raw if raw else float("nan")
    e2e_cps = outcome.chunks / e2e if e2e else float("nan")
    staged_cps = s["chunks"] / stage_total if stage_total else float("nan")
    return {
        "file": str(path),
        "bytes": size,
        "pages": pages,
        "blocks": s["blocks"],
        "chunks": s["chunks"],
        "chunks_end_to_end": outcome.chunks,
        "tokens_per_chunk_mean": round(s["tokens_mean"], 1),
        "tokens_per_chunk_max": s["tokens_max"],
        "words_per_chunk_mean": round(s["words_mean"], 1),
        "chunks_over_model_max_tokens": s["truncated_chunks"],
        "stages_s": {k: round(v, 3) for k, v in s["times"].items()},
        "stages_share": {k: round(v / stage_total, 3) for k, v in s["times"].items()},
        "stages_total_s": round(stage_total, 3),
        "stages_cpu_s": {k: round(v, 3) for k, v in s["cpu"].items()},
        "chunk_count_tokens_calls": s["count_tokens_calls"],
        "chunk_count_tokens_s": round(s["count_tokens_s"], 3),
        "end_to_end_s": round(e2e, 3),
        "end_to_end_cpu_s": round(e2e_cpu, 3),
        "end_to_end_pages_per_s": round(pages / e2e, 2) if pages else None,
        "end_to_end_mb_per_s": round(size / 1e6 / e2e, 4),
        "end_to_end_chunks_per_s": round(e2e_cps, 2),
        "staged_chunks_per_s": round(staged_cps, 2),
        "raw_embed_s": round(raw, 3),
        "raw_embed_runs_s": [round(x, 3) for x in raw_runs],
        "raw_embed_runs_cpu_s": [round(x, 3) for x in raw_cpu],
        "raw_embed_texts_per_s": round(raw_tps, 2),
        "embed_stage_texts_per_s": round(s["chunks"] / s["times"]["embed"], 2) if s["times"]["embed"] else None,
        "ratio_ingest_to_raw_embed": round(e2e_cps / raw_tps, 3),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    contention_check()
    results: dict[str, Any] = {"benchmark": NAME, "environment": environment(), "files": []}
    with fresh_home(keep=args.keep) as (settings, db):
        results["server"] = server_facts(db)
        results["settings"] = {k: getattr(settings, k) for k in (
            "embedding_backend", "embedding_model", "embedding_batch_size", "chunk_tokens", "chunk_overlap_tokens")}

        t = time.perf_counter()
        import ingestion.parse  # noqa: F401  (what the CLI imports before any file)
        from ingestion.embed import get_embedder

        embedder = get_embedder(settings)
        embedder.embed(["warm-up sentence"])
        results["embedder_load_s"] = round(time.perf_counter() - t, 2)
        results["embedder"] = embedder.name
        progress(f"embedder {embedder.name} loaded in {results['embedder_load_s']} s")

        warmups: dict[str, float] = {}
        if not args.no_warmup:
            from ingestion.pipeline import Ingestor

            with tempfile.TemporaryDirectory() as folder:
                for suffix in sorted({f.suffix.lower() for f in args.file}):
                    example = next(f for f in args.file if f.suffix.lower() == suffix)
                    sample = make_sample(example, Path(folder))
                    if sample is None:
                        continue
                    t = time.perf_counter()
                    outcome = Ingestor(db, embedder, settings).ingest_file(sample, sample.name, "bench-warmup")
                    warmups[suffix] = round(time.perf_counter() - t, 2)
                    progress(f"warm-up {suffix}: {warmups[suffix]} s ({outcome.outcome}, {outcome.chunks} chunks)")
        results["first_use_overhead_s"] = warmups

        for path in args.file:
            results["files"].append(bench_file(path, settings, db, embedder, max(1, args.embed_repeats)))

    print()
    print(table(
        ["file", "pages", "MB", "chunks", "tok/chunk", "e2e s", "cpu/wall", "pages/s", "chunks/s", "raw emb/s",
         "ratio"],
        [[Path(r["file"]).name, r["pages"], r["bytes"] / 1e6, r["chunks"], r["tokens_per_chunk_mean"],
          r["end_to_end_s"], r["end_to_end_cpu_s"] / r["end_to_end_s"], r["end_to_end_pages_per_s"],
          r["end_to_end_chunks_per_s"], r["raw_embed_texts_per_s"], r["ratio_ingest_to_raw_embed"]]
         for r in results["files"]],
        title="Ingestion, end to end (Ingestor.ingest_file) vs the embedder alone on the same chunk texts",
    ))
    print()
    stages = ["prepare", "parse", "chunk", "embed", "store"]
    print(table(
        ["file", *[f"{s} s" for s in stages], "sum s", *[f"{s} %" for s in stages[1:]], "count_tokens s"],
        [[Path(r["file"]).name, *[r["stages_s"][s] for s in stages], r["stages_total_s"],
          *[100 * r["stages_share"][s] for s in stages[1:]], r["chunk_count_tokens_s"]] for r in results["files"]],
        title="Time by stage (called one by one, as Ingestor._ingest does)",
    ))
    print()
    print(f"embedder: {results['embedder']}, loaded in {results['embedder_load_s']} s; "
          f"first-use overhead (one small file per type, before timing): "
          f"{', '.join(f'{k} {v} s' for k, v in warmups.items()) or 'not measured'}; "
          f"torch threads {results['environment'].get('torch_threads')}")
    results["loadavg_at_end"] = environment().get("loadavg_1_5_15")
    out = write_json(NAME, results, args.json)
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
