"""A plain-language recommendation from a comparison's figures (never from assumptions).

The rules follow the product's split: facts must come from retrieval, tone may come from an adapter.
So the answer-quality figures pick between "retrieval" and "no retrieval", the tone figures pick the
fine-tuning method, and RAG + adapter is recommended only when the adapter improves tone without
costing answer quality, faithfulness or handoff correctness beyond small tolerances.
"""

from __future__ import annotations

from typing import Any

# Differences smaller than these are noise on a few dozen questions.
QUALITY_TOLERANCE = 0.02  # F1, absolute
SAFETY_TOLERANCE = 0.05  # faithfulness and handoff accuracy, absolute
TONE_GAIN = 0.05  # perplexity must drop at least 5% to count as a tone gain


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _worse(a: float | None, b: float | None, tolerance: float) -> bool:
    """a is worse than b by more than the tolerance (missing figures never count as worse)."""
    return a is not None and b is not None and a < b - tolerance


def recommend(summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """*summary*: strategy name → headline figures (see compare.summarise). Returns the choice and why."""
    lines: list[str] = []
    rag, base = summary.get("rag"), summary.get("base")
    tuned = {n: r for n, r in summary.items() if not r["retrieval"] and r["method"] != "base"}
    combined = {n: r for n, r in summary.items() if r["retrieval"] and r["method"] != "base"}

    best_closed = max([base, *tuned.values()], key=lambda r: (r or {}).get("f1") or 0.0) if base else None
    if rag and best_closed:
        closed_name = next(n for n, r in summary.items() if r is best_closed)
        gap = (rag["f1"] or 0.0) - (best_closed["f1"] or 0.0)
        if gap > QUALITY_TOLERANCE:
            lines.append(f"Facts need retrieval: RAG answers score F1 {_fmt(rag['f1'])} against the manual's gold "
                         f"answers, the best model without retrieval ({closed_name}) {_fmt(best_closed['f1'])}. "
                         "Fine-tuning on tickets does not teach the manual.")
        else:
            lines.append(f"Retrieval did not beat the best model without it on answer quality (F1 {_fmt(rag['f1'])} "
                         f"vs {_fmt(best_closed['f1'])} for {closed_name}); check retrieval figures and questions.")

    best_tone = min(tuned.items(), key=lambda kv: kv[1].get("perplexity") or float("inf"), default=None)
    tone_method = None
    if best_tone and base and base.get("perplexity") and best_tone[1].get("perplexity"):
        name, row = best_tone
        gain = 1 - row["perplexity"] / base["perplexity"]
        if gain >= TONE_GAIN:
            tone_method = row["method"]
            lines.append(f"Tone: {name} fits the real agent replies best (perplexity {_fmt(row['perplexity'], 1)} vs "
                         f"{_fmt(base['perplexity'], 1)} for the base model, {gain:.0%} lower; training "
                         f"{_fmt(row.get('training_s'), 0)} s, adapter {_fmt(row.get('adapter_mb'), 1)} MB).")
            cheaper = [(n, r) for n, r in tuned.items() if n != name and r.get("perplexity")
                       and r["perplexity"] <= row["perplexity"] * (1 + TONE_GAIN)
                       and (r.get("adapter_mb") or 0) < (row.get("adapter_mb") or 0)]
            for n, r in cheaper:
                lines.append(f"{n} comes within {TONE_GAIN:.0%} of that perplexity ({_fmt(r['perplexity'], 1)}) "
                             f"with a smaller adapter ({_fmt(r.get('adapter_mb'), 1)} MB): a fair alternative.")
        else:
            lines.append(f"Tone: no method lowered the perplexity of real agent replies by {TONE_GAIN:.0%} "
                         f"(best: {name}, {_fmt(row['perplexity'], 1)} vs {_fmt(base['perplexity'], 1)}); more or "
                         "cleaner tickets are needed before an adapter is worth serving.")

    choice = "rag" if rag else (best_tone[0] if best_tone else "base")
    if rag:
        for name, row in combined.items():
            hurts = [label for label, key, tol in (("answer quality", "f1", QUALITY_TOLERANCE),
                                                   ("faithfulness", "faithfulness", SAFETY_TOLERANCE),
                                                   ("handoff correctness", "handoff_accuracy", SAFETY_TOLERANCE))
                     if _worse(row.get(key), rag.get(key), tol)]
            if hurts:
                lines.append(f"{name} costs {', '.join(hurts)} against RAG alone (F1 {_fmt(row['f1'])} vs "
                             f"{_fmt(rag['f1'])}, faithfulness {_fmt(row.get('faithfulness'))} vs "
                             f"{_fmt(rag.get('faithfulness'))}, handoff {_fmt(row.get('handoff_accuracy'))} vs "
                             f"{_fmt(rag.get('handoff_accuracy'))}).")
            elif tone_method and row["method"] == tone_method:
                choice = name
                lines.append(f"{name} keeps RAG's answer quality (F1 {_fmt(row['f1'])} vs {_fmt(rag['f1'])}) and "
                             "faithfulness while speaking in the company's tone.")
    lines.insert(0, f"Recommended: {choice}.")
    return {"choice": choice, "text": lines}
