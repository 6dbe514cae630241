"""Calibrates and checks the handoff threshold: relevance (best passage similarity × vocabulary
coverage) of answerable questions (the S10 dev set) vs. questions about products that are not in
the knowledge base (bot/evals/data/off_topic_questions.txt); with --generate, also runs the full
chain on every question and counts answers that cite at least one passage."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from _common import REPO, S10_HTML, S10_QUESTIONS, environment, fresh_home, progress, table, write_json

OFF_TOPIC = REPO / "bot" / "evals" / "data" / "off_topic_questions.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--manual", type=Path, default=S10_HTML)
    parser.add_argument("--questions", type=Path, default=S10_QUESTIONS)
    parser.add_argument("--off-topic", type=Path, default=OFF_TOPIC)
    parser.add_argument("--generate", action="store_true", help="also run the full chain and count citations")
    args = parser.parse_args()
    if not args.manual.exists() or not args.questions.exists():
        parser.error(f"{args.manual} or {args.questions} not found: pass --manual and --questions")

    with fresh_home() as (settings, db):
        from bot.service import SupportService
        from ingestion.pipeline import Ingestor

        service = SupportService(settings, db=db)
        Ingestor(db, service.embedder, settings).ingest_paths([args.manual])
        with args.questions.open(encoding="utf-8") as f:
            answerable = [row["question"] for row in csv.DictReader(f)]
        off_topic = [q for q in args.off_topic.read_text().splitlines() if q.strip()]
        chain = service.chain

        def relevance(q: str) -> float:
            return chain.relevance(q, service.searcher.search(q, chain.k))

        scores = {"answerable": [relevance(q) for q in answerable], "off_topic": [relevance(q) for q in off_topic]}
        progress("relevance computed")
        threshold = chain.min_relevance
        rows = []
        for t in sorted({0.2, 0.22, 0.24, 0.25, 0.26, 0.27, 0.28, 0.3, 0.32, threshold}):
            kept = sum(s >= t for s in scores["answerable"])
            caught = sum(s < t for s in scores["off_topic"])
            rows.append([f"{t:.2f}{' (configured)' if t == threshold else ''}",
                         f"{kept}/{len(answerable)}", f"{caught}/{len(off_topic)}"])
        print(table(["threshold", "answerable answered", "off-topic handed off"], rows,
                    title=f"Handoff threshold on {args.manual.name}"))
        low = sorted(zip(scores["answerable"], answerable, strict=True))[:3]
        high = sorted(zip(scores["off_topic"], off_topic, strict=True))[-3:]
        print("\nlowest answerable:", *(f"  {s:.3f} {q}" for s, q in low), sep="\n")
        print("highest off-topic:", *(f"  {s:.3f} {q}" for s, q in high), sep="\n")

        generated = {}
        if args.generate:
            answers = [service.chain.answer(q) for q in answerable]
            offs = [service.chain.answer(q) for q in off_topic]
            generated = {
                "answerable": len(answers),
                "answered_with_citation": sum(bool(a.citations) and a.handoff is None for a in answers),
                "handed_off": {r: sum(1 for a in answers if a.handoff and a.handoff.reason == r)
                               for r in ("no_relevant_passages", "model_unsure", "customer_asked")},
                "answers_without_citation": sum(not a.citations and a.handoff is None for a in answers),
                "citations_by_model": sum(a.attribution == "model" for a in answers if a.citations),
                "off_topic_handed_off": sum(a.handoff is not None for a in offs),
                "off_topic": len(offs),
            }
            print("\nfull chain:", generated)
    path = write_json("handoff_calibration", {"environment": environment(), "threshold": threshold,
                                              "scores": scores, "generated": generated})
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
