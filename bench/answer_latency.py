"""Time to first token and total answer time, bare model vs. the full chain (the cost of RAG).

For the same questions: (1) the bare model, the question alone, in process; (2) the full chain in
process with the model writing the answer (generate mode: what every answer was before compose mode);
(3) the full chain in process on the configured mode (compose by default), with the retrieval step
(question in → span chosen: embedding, search, span selection) timed on its own; (4) the full chain
over HTTP (POST /v1/chat/completions, streamed) with 1 and with N concurrent users. Default knowledge
base: the Galaxy S10 manual (HTML) and its questions from ../shared/data/manuals when present, else the
sample knowledge base.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import (
    REPO,
    S10_HTML,
    S10_QUESTIONS,
    contention_check,
    environment,
    fresh_home,
    percentile,
    progress,
    table,
    write_json,
)

SAMPLE_QUESTIONS = [
    "How do I reset my router to factory settings?", "What does a solid amber light mean?",
    "How do I turn on the guest network?", "How long is the warranty?", "Can I use the router without the app?",
    "How do I add a mesh satellite?", "How do I update the firmware?", "Does it support WPA3?",
]


def stats(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "mean": statistics.fmean(values)}


def time_stream(stream) -> tuple[float, float]:
    """(time to first non-empty piece, total) in seconds for an iterator of text pieces."""
    start = time.perf_counter()
    first = None
    for piece in stream:
        if first is None and piece:
            first = time.perf_counter() - start
    return first if first is not None else float("nan"), time.perf_counter() - start


def over_http(url: str, questions: list[str], users: int) -> dict[str, list[float]]:
    import httpx

    ttft: list[float] = []
    total: list[float] = []
    lock = threading.Lock()

    def one(question: str) -> None:
        body = {"model": "supportbot", "stream": True, "messages": [{"role": "user", "content": question}]}
        start = time.perf_counter()
        first = None
        with httpx.Client(timeout=300) as client, client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
            for line in r.iter_lines():
                has_text = '"content": "' in line and '"content": ""' not in line
                if first is None and line.startswith("data: {") and has_text:
                    first = time.perf_counter() - start
        with lock:
            ttft.append(first if first is not None else float("nan"))
            total.append(time.perf_counter() - start)

    started = time.perf_counter()
    with ThreadPoolExecutor(users) as pool:
        list(pool.map(one, questions))
    return {"ttft": ttft, "total": total, "wall": [time.perf_counter() - started]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manual", type=Path, default=S10_HTML if S10_HTML.exists() else None)
    parser.add_argument("--questions", type=Path, default=S10_QUESTIONS if S10_QUESTIONS.exists() else None)
    parser.add_argument("--sample-kb", action="store_true",
                        help="the sample knowledge base and its questions, even where the S10 manual is present")
    parser.add_argument("-n", type=int, default=20, help="questions to time (default 20)")
    parser.add_argument("--users", type=int, default=8, help="concurrent users for the HTTP run (default 8)")
    args = parser.parse_args()
    if args.sample_kb:
        args.manual = args.questions = None
    load = contention_check()

    with fresh_home() as (settings, db):
        from langchain_core.messages import HumanMessage

        from bot.api import create_app
        from bot.background_server import live_server
        from bot.chain import SupportChain, final_answer
        from bot.service import SupportService
        from ingestion.pipeline import Ingestor

        service = SupportService(settings, db=db)
        kb = args.manual or REPO / "bot" / "sample_kb"
        Ingestor(db, service.embedder, settings).ingest_paths([kb])
        if args.questions:
            with args.questions.open(encoding="utf-8") as f:
                questions = [row["question"] for row in csv.DictReader(f)][: args.n]
        else:
            questions = (SAMPLE_QUESTIONS * 3)[: args.n]
        progress(f"knowledge base {kb.name}, {len(questions)} questions; warming up")
        service.ask(questions[0])  # first-call costs (lazy imports, allocator) out of the figures

        bare_ttft, bare_total = [], []
        for q in questions:
            pieces = (c.content for c in service.chat_model.stream([HumanMessage(q)]))
            first, total = time_stream(pieces)
            bare_ttft.append(first)
            bare_total.append(total)
        progress("bare model done")

        # The model writing the answer (generate mode, as every answer was before compose mode): the
        # previous figures, measured in the same run.
        written = SupportChain.from_settings(service.searcher, service.chat_model,
                                             settings.model_copy(update={"answer_mode": "generate"}))
        gen_ttft, gen_total = [], []
        for q in questions:
            answer = final_answer(written.stream(q))
            gen_ttft.append((answer.ttft_ms or answer.total_ms) / 1000)
            gen_total.append(answer.total_ms / 1000)
        progress("chain in process, generate mode done")

        chain_ttft, chain_total, retrieval = [], [], []
        handoffs = 0
        for q in questions:
            answer = final_answer(service.chain.stream(q))
            retrieval.append(answer.retrieval_ms / 1000)
            chain_ttft.append((answer.ttft_ms or 0) / 1000)
            chain_total.append(answer.total_ms / 1000)
            handoffs += answer.handoff is not None
        progress(f"chain in process ({service.chain.mode} mode) done")

        http = {}
        with live_server(create_app(service, mount_chat=False)) as url:
            for users in (1, args.users):
                http[users] = over_http(url, questions, users)
                progress(f"HTTP with {users} users done")

    results = {
        "environment": {**environment(), "load_before": load},
        "knowledge_base": str(kb), "questions": len(questions), "chain_handoffs": handoffs,
        "bare_model": {"ttft": stats(bare_ttft), "total": stats(bare_total)},
        "chain_in_process": {"ttft": stats(chain_ttft), "total": stats(chain_total), "retrieval": stats(retrieval),
                             "mode": settings.answer_mode},
        "chain_generate_mode": {"ttft": stats(gen_ttft), "total": stats(gen_total)},
        "http": {str(u): {"ttft": stats(v["ttft"]), "total": stats(v["total"]),
                          "answers_per_s": len(questions) / v["wall"][0]} for u, v in http.items()},
    }
    rows = [
        ["bare model (in process)", *(results["bare_model"]["ttft"][k] for k in ("p50", "p95")),
         *(results["bare_model"]["total"][k] for k in ("p50", "p95")), None],
        ["full chain, generate mode (in process)", *(results["chain_generate_mode"]["ttft"][k] for k in ("p50", "p95")),
         *(results["chain_generate_mode"]["total"][k] for k in ("p50", "p95")), None],
        [f"full chain, {settings.answer_mode} mode (in process)",
         *(results["chain_in_process"]["ttft"][k] for k in ("p50", "p95")),
         *(results["chain_in_process"]["total"][k] for k in ("p50", "p95")), None],
        *[[f"full chain, HTTP, {u} user(s)", *(r["ttft"][k] for k in ("p50", "p95")),
           *(r["total"][k] for k in ("p50", "p95")), r["answers_per_s"]] for u, r in results["http"].items()],
    ]
    print(table(["run", "TTFT p50 s", "TTFT p95 s", "total p50 s", "total p95 s", "answers/s"], rows,
                title=f"Answer latency, {len(questions)} questions ({kb.name})"))
    chain = results["chain_in_process"]
    r, c, b = chain["retrieval"], chain["ttft"], results["bare_model"]["ttft"]
    print(f"\nretrieval step (embed, search, span): p50 {r['p50'] * 1000:.0f} ms, p95 {r['p95'] * 1000:.0f} ms "
          f"= {100 * r['p50'] / c['p50']:.1f}% of the chain's p50 TTFT")
    print(f"cost of RAG: chain TTFT p50 / bare TTFT p50 = {c['p50'] / b['p50']:.2f}x; "
          f"handoffs among the timed questions: {handoffs}")
    print(f"\nwritten to {write_json('answer_latency', results)}")


if __name__ == "__main__":
    main()
