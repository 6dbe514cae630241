"""``supportbot compare``: RAG, fine-tuning and both, side by side, on the user's own data.

One set of questions (answerable ones with gold answers, plus unanswerable ones the bot should hand
off) and one ticket set. Each fine-tuning method is trained on the tickets (or its earlier run with
the same data and configuration is reused), then every strategy answers the same questions:

    base · rag · <method> for each method · rag+<method> for the methods combined with retrieval

and the results (answer quality, faithfulness, handoff correctness, tone, latency, training time,
peak memory, adapter size) go into one report with charts and a recommendation.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.evals.answers import AnswerRecord, score_answers
from bot.evals.provenance import provenance
from bot.evals.recommendation import recommend
from bot.evals.retrieval import Question
from bot.evals.retrieval import evaluate as evaluate_retrieval
from bot.evals.strategies import Strategy, StrategyAnswerer, describe, strategy_name
from finetune.registry import AdapterRegistry
from finetune.train import TrainReport, train
from finetune.train_config import TrainConfig
from ingestion.search import Searcher
from supportbot.database import Database
from supportbot.settings import Settings

log = logging.getLogger(__name__)

METHODS = ("qlora", "lora", "full", "ia3")


@dataclass
class CompareOptions:
    methods: Sequence[str] = METHODS
    rag_with: Sequence[str] = ("qlora",)  # methods also run behind retrieval
    configs: dict[str, TrainConfig] = field(default_factory=dict)  # per method
    collection: str | None = None
    tone_generate: int = 8  # generated replies per model scored against real ones
    reuse: bool = True


# A progress callback: (stage, done, total).
Progress = Callable[[str, int, int], None]


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


def run_compare(
    questions: Sequence[Question],
    tickets: Sequence[Path],
    settings: Settings,
    db: Database,
    options: CompareOptions,
    *,
    data_files: Sequence[Path] = (),
    progress: Progress = _no_progress,
    retrieval_questions: Sequence[Question] | None = None,
) -> dict[str, Any]:
    """Train (or reuse) each method, answer every question with every strategy, score it all.

    *retrieval_questions*: scored for retrieval (default: the answerable ones of *questions*).
    """
    from bot.adapters import chat_model_for
    from ingestion.embed import get_embedder

    embedder = get_embedder(settings)
    searcher = Searcher.from_settings(db, embedder, settings)
    answerable = [q for q in questions if q.answerable]

    # Retrieval does not depend on the model: measured once.
    progress("retrieval", 0, 1)
    retrieval = evaluate_retrieval(
        [q for q in (retrieval_questions or answerable) if q.answerable],
        lambda q: [h.text for h in searcher.search(q.question, 10, options.collection)],
    )
    progress("retrieval", 1, 1)

    # Training (or reuse), one method at a time.
    reports: dict[str, TrainReport] = {}
    registry = AdapterRegistry(db, settings.home)
    for i, method in enumerate(options.methods):
        progress(f"training {method}", i, len(options.methods))
        config = options.configs.get(method) or TrainConfig(method=method)
        reports[method] = train(tickets, config, settings, db, generate=options.tone_generate, reuse=options.reuse)
        gc.collect()
    progress("training", len(options.methods), len(options.methods))

    strategies = [Strategy("base", False), Strategy("rag", True)]
    for method in options.methods:
        adapter = registry.get(reports[method].version)
        strategies.append(Strategy(strategy_name(method, False), False, adapter))
        if method in options.rag_with:
            strategies.append(Strategy(strategy_name(method, True), True, adapter))

    results: dict[str, dict[str, Any]] = {}
    for strategy in strategies:
        model = chat_model_for(settings, strategy.adapter)
        answerer = StrategyAnswerer(strategy, searcher, model, settings, options.collection)
        records: dict[str, AnswerRecord] = {}
        for i, q in enumerate(questions):
            progress(f"answering: {strategy.name}", i, len(questions))
            records[q.id] = answerer(q)
        progress(f"answering: {strategy.name}", len(questions), len(questions))
        answers = score_answers(questions, records, embedder.embed).to_dict()
        results[strategy.name] = {"model": describe(strategy), "answers": answers,
                                  **_training_figures(reports.get(strategy.method))}
    _add_tone(results, reports)
    summary = summarise(results)
    return {
        "retrieval": {"n": retrieval.n, "hits_at": retrieval.hits_at, "mrr": retrieval.mrr,
                      "ranks": retrieval.ranks, "by_group": retrieval.by_group},
        "strategies": results,
        "summary": summary,
        "recommendation": recommend(summary),
        "provenance": provenance(
            settings, data=data_files, db=db,
            models={name: r["model"] for name, r in results.items()},
            extra={"methods": list(options.methods), "rag_with": list(options.rag_with),
                   "training_configs": {m: _config_of(options, m) for m in reports},
                   "training_data_sha256": {m: r.data_hash for m, r in reports.items()},
                   "questions": {"answerable": len(answerable), "unanswerable": len(questions) - len(answerable)}},
        ),
    }


def _config_of(options: CompareOptions, method: str) -> dict[str, Any]:
    return (options.configs.get(method) or TrainConfig(method=method)).model_dump()


def _training_figures(report: TrainReport | None) -> dict[str, Any]:
    if report is None:
        return {"training": None}
    t = report.training
    return {"training": {"seconds": t.get("seconds"), "steps": t.get("steps"),
                         "peak_memory_mb": t.get("peak_memory_mb"),
                         "adapter_mb": report.adapter_mb, "resumed_from": t.get("resumed_from"),
                         "run_dir": report.run_dir, "version": report.version}}


def _add_tone(results: dict[str, dict[str, Any]], reports: dict[str, TrainReport]) -> None:
    """Tone comes from each run's held-out evaluation: the same validation tickets for every model."""
    base = next((r.scores.get("base") for r in reports.values() if r.scores.get("base")), None)
    for result in results.values():
        method = result["model"]["method"]
        scores = base if method == "base" else reports[method].scores.get("candidate")
        # Figures only: the per-reply flags and the template text are details, not gated numbers.
        result["tone"] = {k: v for k, v in (scores or {}).items()
                          if k not in ("samples", "flags", "template", "generated")} or None
        result["tone_samples"] = (scores or {}).get("samples", [])[:3]


def summarise(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One flat row of headline figures per strategy (the report's table)."""
    rows = {}
    for name, r in results.items():
        a, tone, training = r["answers"], r.get("tone") or {}, r.get("training") or {}
        rows[name] = {
            "retrieval": r["model"]["retrieval"],
            "method": r["model"]["method"],
            "f1": a.get("f1"),
            "rouge_l": a.get("rouge_l"),
            "faithfulness": a.get("faithfulness"),
            "citation_precision": a.get("citation_precision"),
            "handoff_accuracy": a.get("handoff_accuracy"),
            "perplexity": tone.get("perplexity"),
            "tone_similarity": tone.get("similarity"),
            "ttft_p50_ms": a.get("ttft_p50_ms"),
            "total_p50_ms": a.get("total_p50_ms"),
            "training_s": training.get("seconds"),
            "peak_memory_mb": training.get("peak_memory_mb"),
            "adapter_mb": training.get("adapter_mb"),
        }
    return rows
