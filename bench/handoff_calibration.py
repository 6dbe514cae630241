"""Calibrates and checks the handoff gate per knowledge base: its signals (relevance = best passage
similarity × vocabulary coverage; span match = IDF-weighted share of the question's terms the chosen
span and its heading hold) for every answerable question of each knowledge base and for the off-topic
questions asked of each, then a grid of thresholds: answerable questions kept, off-topic handed off
(a question the request patterns hand off — a person, an order, a refund — is handed off at every
threshold).

Knowledge bases as in bench/answer_quality.py (S10, the sample KB, and each fetched by
bench/kbs/fetch_kb.sh). Retrieval only, no generation: a few minutes. ``--signals`` re-reads the JSON
of an earlier run instead of recomputing.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from _common import environment, fresh_home, progress, table, write_json
from answer_quality import DATA, knowledge_bases

CALIBRATION_OFF_TOPIC = [DATA / "off_topic_questions.txt", DATA / "off_topic_questions_30.txt"]
RELEVANCE = [0.0, 0.2, 0.24, 0.27, 0.3]
SPAN_MATCH = [0.0, 0.2, 0.3, 0.4, 0.5]


def _signals(chain: Any, question: str, collection: str, gold: str | None) -> dict[str, Any]:
    from bot.answer.compose import span_text
    from bot.answer.gate import request_handoff
    from bot.evals.answers import holds_gold

    _, span, s = chain.assess(question, collection)
    return {"question": question, "request": request_handoff(question), "similarity": s.similarity,
            "coverage": s.coverage, "relevance": s.relevance, "span_match": s.span_match,
            "span_holds_gold": bool(span and gold and holds_gold(span_text(span), gold))}


def collect(kb_names: list[str] | None, off_topic: list[str]) -> dict[str, Any]:
    from bot.evals.retrieval import load_questions

    kbs = knowledge_bases()
    chosen = [kbs[n] for n in (kb_names or kbs)]
    out: dict[str, Any] = {}
    with fresh_home() as (settings, db):
        from bot.service import SupportService

        service = SupportService(settings, db=db)
        for kb in chosen:
            service.ingestor.ingest_paths(kb.documents, collection=kb.name)
            answerable = [q for q in load_questions(kb.questions) if q.answerable]
            out[kb.name] = {
                "answerable": [_signals(service.chain, q.question, kb.name, q.answer) for q in answerable],
                "off_topic": [_signals(service.chain, q, kb.name, None) for q in off_topic],
            }
            progress(f"{kb.name}: {len(answerable)} answerable, {len(off_topic)} off-topic")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kb", action="append", help="knowledge bases (default: all found)")
    parser.add_argument("--off-topic", type=Path, action="append",
                        help="off-topic question files (default: the 20 + 30 of bot/evals/data; the held-out "
                        "file is for checking, not calibrating)")
    parser.add_argument("--signals", type=Path, help="re-read the signals of an earlier run's JSON")
    args = parser.parse_args()
    os.environ.setdefault("SUPPORTBOT_LOG_LEVEL", "WARNING")
    from supportbot.settings import Settings

    configured = Settings()
    if args.signals:
        signals = json.loads(args.signals.read_text())["signals"]
    else:
        files = args.off_topic or CALIBRATION_OFF_TOPIC
        off_topic = list(dict.fromkeys(q for f in files for q in f.read_text().splitlines() if q.strip()))
        signals = collect(args.kb, off_topic)

    def passes(row: dict[str, Any], relevance: float, span_match: float) -> bool:
        return row["request"] is None and row["relevance"] >= relevance and row["span_match"] >= span_match

    rows = []
    for r in sorted({*RELEVANCE, configured.min_relevance}):
        for m in sorted({*SPAN_MATCH, configured.min_span_match}):
            mark = " (configured)" if (r, m) == (configured.min_relevance, configured.min_span_match) else ""
            cells = [f"{r:.2f}/{m:.2f}{mark}"]
            for kb in signals.values():
                kept = sum(passes(x, r, m) for x in kb["answerable"])
                caught = sum(not passes(x, r, m) for x in kb["off_topic"])
                cells += [f"{kept}/{len(kb['answerable'])}", f"{caught}/{len(kb['off_topic'])}"]
            rows.append(cells)
    headers = ["relevance/span"] + [f"{name} {what}" for name in signals for what in ("kept", "off-topic out")]
    print(table(headers, rows, title="Handoff gate: answerable questions kept, off-topic questions handed off"))
    for name, kb in signals.items():
        r, m = configured.min_relevance, configured.min_span_match
        lost = [x for x in kb["answerable"] if not passes(x, r, m)]
        through = [x for x in kb["off_topic"] if passes(x, r, m)]
        print(f"\n{name}: answerable handed off {len(lost)}, off-topic answered {len(through)}")
        for x in lost + through:
            print(f"  rel={x['relevance']:.3f} span={x['span_match']:.2f} {x['request'] or ''} {x['question']}")
    path = write_json("handoff_calibration", {"environment": environment(), "signals": signals,
                                              "configured": [configured.min_relevance, configured.min_span_match]})
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
