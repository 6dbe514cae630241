"""Throughput of the in-process model at 1, 4, 8 and 16 concurrent requests: continuous batching vs the single lock.

Both paths run in the same process, on the same weights, one after the other: ``LocalChatModel`` with
``batching="continuous"`` (bot/batching.py) and with ``batching="off"`` (a lock; one ``generate`` at a
time). Each request streams one answer through ``LocalChatModel.stream`` — the path /v1 and the chain's
generate mode use — to a RAG-sized prompt (bot/prompt.py ``build_messages`` with three passages of the
sample manual, ~350 tokens) with at most 64 new tokens. At each concurrency level, that many clients
each send ``--rounds`` requests back to back (a closed loop); the figures are new tokens/s, requests/s,
time to first token and mean answer length. No database: the passages are read from the sample manual.
"""

from __future__ import annotations

import argparse
import csv
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import REPO, contention_check, environment, percentile, progress, table, write_json

MANUAL = REPO / "bot" / "sample_kb" / "aurora-x2-manual.md"
QUESTIONS = REPO / "bot" / "evals" / "data" / "sample_kb_questions.csv"


def sample_hits(manual: Path) -> list[Any]:
    """The manual's ``###`` sections as search hits (what retrieval would hand the prompt)."""
    from ingestion.search import Hit

    hits = []
    chapter = ""
    for block in re.split(r"\n(?=##+ )", manual.read_text(encoding="utf-8")):
        heading, _, body = block.partition("\n")
        if heading.startswith("## "):
            chapter = heading[3:].strip()
        elif heading.startswith("### ") and body.strip():
            hits.append(
                Hit(
                    chunk_id=len(hits),
                    document_id=1,
                    text=" ".join(body.split()),
                    title=manual.stem,
                    source=manual.name,
                    heading_path=[chapter, heading[4:].strip()],
                    page=None,
                    collection="default",
                    product=None,
                    score=1.0,
                    similarity=None,
                    vector_rank=None,
                    text_rank=None,
                )
            )
    return hits


def prompts(count: int) -> list[list[Any]]:
    """*count* generate-mode prompts: a sample question each, with three consecutive sections as passages."""
    from bot.prompt import build_messages

    with QUESTIONS.open(encoding="utf-8") as handle:
        questions = [row["question"] for row in csv.DictReader(handle)]
    hits = sample_hits(MANUAL)
    return [
        build_messages(questions[i % len(questions)], [hits[(i + k) % len(hits)] for k in range(3)])
        for i in range(count)
    ]


def run_level(chat: Any, messages: list[list[Any]], clients: int, rounds: int, new_tokens: int) -> dict[str, Any]:
    """*clients* threads, each streaming *rounds* answers back to back; throughput and latency figures."""
    ttft: list[float] = []
    totals: list[float] = []
    tokens: list[int] = []
    lock = threading.Lock()
    start_line = threading.Barrier(clients)

    def client(c: int) -> None:
        start_line.wait()
        for r in range(rounds):
            started = time.perf_counter()
            first = None
            usage = None
            for chunk in chat.stream(messages[(c * rounds + r) % len(messages)], max_new_tokens=new_tokens):
                if first is None and chunk.content:
                    first = time.perf_counter() - started
                usage = chunk.usage_metadata or usage
            with lock:
                ttft.append(first if first is not None else float("nan"))
                totals.append(time.perf_counter() - started)
                tokens.append(usage["output_tokens"] if usage else 0)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client, c) for c in range(clients)]:
            future.result()
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": len(totals),
        "wall_s": wall,
        "new_tokens": sum(tokens),
        "tokens_per_s": sum(tokens) / wall,
        "requests_per_s": len(totals) / wall,
        "mean_new_tokens": sum(tokens) / len(tokens),
        "ttft_p50_s": percentile(ttft, 50),
        "ttft_p95_s": percentile(ttft, 95),
        "answer_p50_s": percentile(totals, 50),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,4,8,16", help="concurrent requests, comma-separated")
    parser.add_argument("--rounds", type=int, default=1, help="requests each client sends back to back")
    parser.add_argument("--new-tokens", type=int, default=64, help="max_new_tokens of every request")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"], help="model dtype")
    parser.add_argument("--max-batch", type=int, default=16, help="max_batch_size of the batched path")
    parser.add_argument("--modes", default="continuous,off", help="paths to measure, in this order")
    parser.add_argument("--json", type=Path, default=None, help="default bench/results/batching_bench.json")
    args = parser.parse_args()
    levels = [int(n) for n in args.levels.split(",")]
    modes = list(dict.fromkeys(args.modes.split(",")))  # each path once: a closed batcher cannot restart

    load_before = contention_check()
    from bot.llm import LocalChatModel, to_chat
    from supportbot.settings import Settings

    settings = Settings(llm_dtype=args.dtype)
    started = time.perf_counter()
    base = LocalChatModel.from_settings(settings, max_batch_size=args.max_batch)
    progress(f"model loaded in {time.perf_counter() - started:.1f} s ({base.model.dtype}, {base.model.device})")
    models = {
        mode: LocalChatModel(
            model=base.model,
            tokenizer=base.tokenizer,
            model_name=base.model_name,
            batching=mode,
            max_batch_size=args.max_batch,
        )
        for mode in modes
    }
    messages = prompts(max(levels) * args.rounds)
    template = base.tokenizer.apply_chat_template
    prompt_tokens = [
        len(template(to_chat(m), add_generation_prompt=True, return_dict=True)["input_ids"]) for m in messages
    ]
    mean_prompt = sum(prompt_tokens) / len(prompt_tokens)
    progress(f"prompts: {min(prompt_tokens)}–{max(prompt_tokens)} tokens, mean {mean_prompt:.0f}")

    results: list[dict[str, Any]] = []
    for mode, chat in models.items():
        run_level(chat, messages, 1, 1, 8)  # warm-up: first-call costs stay out of the figures
        for clients in levels:
            progress(f"{mode}: {clients} concurrent × {args.rounds} round(s)…")
            figures = {"mode": mode, **run_level(chat, messages, clients, args.rounds, args.new_tokens)}
            progress(
                f"  {figures['tokens_per_s']:.1f} new tokens/s, {figures['requests_per_s']:.2f} requests/s, "
                f"TTFT p50 {figures['ttft_p50_s']:.2f} s"
            )
            results.append(figures)
        if mode == "continuous":
            chat.batcher.close()  # its thread must not hold the model while the other path runs

    by_key = {(r["mode"], r["clients"]): r for r in results}
    rows = []
    for clients in levels:
        for mode in modes:
            r = by_key[(mode, clients)]
            single = by_key.get(("off", clients))
            speedup = r["tokens_per_s"] / single["tokens_per_s"] if single and mode != "off" else None
            rows.append(
                [
                    clients,
                    mode,
                    r["tokens_per_s"],
                    r["requests_per_s"],
                    speedup,
                    r["ttft_p50_s"],
                    r["ttft_p95_s"],
                    r["answer_p50_s"],
                    r["mean_new_tokens"],
                ]
            )
    print(
        table(
            [
                "concurrent",
                "path",
                "new tok/s",
                "req/s",
                "× lock",
                "TTFT p50 s",
                "TTFT p95 s",
                "answer p50 s",
                "new tok/answer",
            ],
            rows,
            title=f"LocalChatModel.stream, prompt ~{mean_prompt:.0f} tokens, "
            f"≤{args.new_tokens} new tokens, {base.model.dtype}, {args.rounds} round(s) per client",
        )
    )
    facts = environment()
    facts["loadavg_before"] = load_before
    path = write_json(
        "batching_bench",
        {
            "environment": facts,
            "model": {"name": base.model_name, "dtype": str(base.model.dtype), "device": str(base.model.device)},
            "prompt_tokens": {"min": min(prompt_tokens), "max": max(prompt_tokens), "mean": mean_prompt},
            "options": vars(args),
            "results": results,
        },
        args.json,
    )
    progress(f"wrote {path}")


if __name__ == "__main__":
    main()
