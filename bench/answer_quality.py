"""What a customer reads, per knowledge base: every question goes through ``POST /api/chat`` of a real
server on the embedded defaults (packaged model, no adapter), and the answer text is scored.

Per knowledge base (each ingested into its own collection of one fresh database):
- gold held: share of answerable questions whose answer text holds at least half of the gold
  answer's word trigrams (a handoff holds nothing);
- token F1 against the gold answer; loop rate (answers that repeat a sentence or an 8-word run 3+
  times) over written answers; answerable questions handed off;
- off-topic questions handed off (asked against the same collection);
- time to first token and total time, p50 (the server's own timings).

Every answer is written to the JSON (``bench/results/answer_quality.json``) so that it can be read.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import REPO, S10_HTML, S10_QUESTIONS, environment, fresh_home, percentile, progress, table, write_json

DATA = REPO / "bot" / "evals" / "data"
KB_DOWNLOADS = REPO / "bench" / "kbs" / "downloads"


@dataclass(frozen=True)
class KnowledgeBase:
    name: str
    documents: list[Path]
    questions: Path

    def missing(self) -> list[Path]:
        return [p for p in [*self.documents, self.questions] if not p.exists()]


def knowledge_bases() -> dict[str, KnowledgeBase]:
    kbs = {
        "s10": KnowledgeBase("s10", [S10_HTML], S10_QUESTIONS),
        "sample": KnowledgeBase("sample", sorted((REPO / "bot" / "sample_kb").iterdir()),
                                DATA / "sample_kb_questions.csv"),
    }
    # Knowledge bases fetched by bench/kbs/fetch_kb.sh: downloads/<name>/ + bot/evals/data/<name>_questions.csv
    if KB_DOWNLOADS.is_dir():
        for folder in sorted(p for p in KB_DOWNLOADS.iterdir() if p.is_dir()):
            kbs[folder.name] = KnowledgeBase(folder.name, sorted(folder.iterdir()),
                                             DATA / f"{folder.name}_questions.csv")
    return kbs


def _ask(client: Any, url: str, question: str, collection: str) -> dict[str, Any]:
    response = client.post(f"{url}/api/chat", json={"message": question, "collection": collection}, timeout=300)
    response.raise_for_status()
    return response.json()


def _summary(name: str, answered: list[dict[str, Any]], off_topic: list[dict[str, Any]]) -> dict[str, Any]:
    written = [a for a in answered if not a["handed_off"]]
    every = answered + off_topic
    return {
        "kb": name,
        "questions": len(answered),
        "gold_held": sum(a["holds_gold"] for a in answered) / max(len(answered), 1),
        "f1": sum(a["f1"] for a in answered) / max(len(answered), 1),
        "loop_rate": sum(a["loops"] for a in written) / max(len(written), 1),
        "handed_off": sum(a["handed_off"] for a in answered),
        "off_topic": len(off_topic),
        "off_topic_handed_off": sum(a["handed_off"] for a in off_topic),
        "ttft_p50_ms": percentile([a["ttft_ms"] for a in every if a["ttft_ms"] is not None], 50),
        "total_p50_ms": percentile([a["total_ms"] for a in every], 50),
    }


def main() -> None:
    kbs = knowledge_bases()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kb", action="append", choices=sorted(kbs), help="knowledge bases (default: all found)")
    parser.add_argument("--limit", type=int, help="at most this many questions per knowledge base")
    parser.add_argument("--off-topic", type=Path, default=DATA / "off_topic_questions_30.txt",
                        help="questions no manual answers (asked of every knowledge base)")
    parser.add_argument("--off-topic-limit", type=int)
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "answer_quality.json")
    args = parser.parse_args()
    chosen = [kbs[n] for n in (args.kb or kbs)]
    for kb in chosen:
        if kb.missing():
            parser.error(f"knowledge base {kb.name}: {', '.join(map(str, kb.missing()))} not found")
    off_topic = [q for q in args.off_topic.read_text().splitlines() if q.strip()] if args.off_topic.exists() else []
    off_topic = off_topic[: args.off_topic_limit] if args.off_topic_limit is not None else off_topic
    os.environ.setdefault("SUPPORTBOT_LOG_LEVEL", "WARNING")

    from bot.evals.answers import holds_gold, loops, token_f1
    from bot.evals.retrieval import load_questions

    results: dict[str, Any] = {"environment": environment(), "kbs": {}}
    with fresh_home() as (settings, db):
        import httpx

        from bot.api import create_app
        from bot.background_server import live_server
        from bot.service import SupportService

        service = SupportService(settings, db=db)
        for kb in chosen:
            outcomes = service.ingestor.ingest_paths(kb.documents, collection=kb.name)
            progress(f"{kb.name}: ingested {len(outcomes)} file(s)")
        with live_server(create_app(service, mount_chat=False)) as url, httpx.Client() as client:
            for kb in chosen:
                rows = []
                answerable = [q for q in load_questions(kb.questions) if q.answerable]
                for i, q in enumerate(answerable[: args.limit] if args.limit is not None else answerable, 1):
                    reply = _ask(client, url, q.question, kb.name)
                    rows.append({"id": q.id, "question": q.question, "gold": q.answer,
                                 "answer": reply["answer"], "handoff": reply["handoff"],
                                 "handed_off": reply["handoff"] is not None,
                                 "holds_gold": reply["handoff"] is None and holds_gold(reply["answer"], q.answer),
                                 "f1": 0.0 if reply["handoff"] else token_f1(reply["answer"], q.answer),
                                 "loops": loops(reply["answer"]), "attribution": reply.get("attribution"),
                                 "citations": [c["heading_path"] for c in reply["citations"]],
                                 "ttft_ms": reply["timings_ms"]["first_token"],
                                 "total_ms": reply["timings_ms"]["total"]})
                    progress(f"{kb.name} {i}: {'handoff' if rows[-1]['handed_off'] else 'answer'} "
                             f"gold={rows[-1]['holds_gold']} loops={rows[-1]['loops']} {rows[-1]['total_ms']} ms")
                offs = []
                for question in off_topic:
                    reply = _ask(client, url, question, kb.name)
                    offs.append({"question": question, "answer": reply["answer"], "handoff": reply["handoff"],
                                 "handed_off": reply["handoff"] is not None, "loops": loops(reply["answer"]),
                                 "ttft_ms": reply["timings_ms"]["first_token"],
                                 "total_ms": reply["timings_ms"]["total"]})
                results["kbs"][kb.name] = {"summary": _summary(kb.name, rows, offs), "answers": rows,
                                           "off_topic": offs}
    summaries = [r["summary"] for r in results["kbs"].values()]
    print(table(["kb", "questions", "gold held", "F1", "loop rate", "handed off", "off-topic handed off",
                 "TTFT p50 ms", "total p50 ms"],
                [[s["kb"], s["questions"], s["gold_held"], s["f1"], s["loop_rate"], s["handed_off"],
                  f"{s['off_topic_handed_off']}/{s['off_topic']}", s["ttft_p50_ms"], s["total_p50_ms"]]
                 for s in summaries], title="Answers through POST /api/chat (embedded defaults)"))
    print(f"\nwritten to {write_json('answer_quality', results, args.json)}")


if __name__ == "__main__":
    main()
