"""Answer quality against gold answers: token F1 and ROUGE-L, faithfulness to the passages the answer
came from, citation precision, handoff accuracy and latency percentiles."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from itertools import pairwise
from typing import Any

import numpy as np

from bot.answer.span import terms
from bot.evals.retrieval import Question, coverage, trigrams

Embed = Callable[[list[str]], np.ndarray]

_MARKER = re.compile(r"\s*\[\d{1,3}(?:\s*,\s*\d{1,3})*\]")  # "[1]", "[2, 3]" as the chain writes them
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
# A sentence ends at .!? before whitespace; a blank line or a list item also starts a new one, since
# answers are often bullet lists whose items carry no final stop.
_SPLIT = re.compile(r"(?<=[.!?])\s+|\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_WORD = re.compile(r"\w+")
_MIN_SENTENCE_WORDS = 3

# all-MiniLM-L6-v2 cosine on the sample manual (cases in tests/test_eval_metrics.py): answer sentences
# copied or paraphrased from a passage score 0.69-1.0 against their best window; sentences on another
# subject, even about the same router, score 0.03-0.49. 0.6 sits in the gap. Embeddings cannot see a
# changed fact ("90 days" for "30 days" scores 0.94): F1 against the gold answer catches those.
FAITHFULNESS_THRESHOLD = 0.6


def strip_markers(text: str) -> str:
    return _MARKER.sub("", text)


def normalize(text: str) -> list[str]:
    """SQuAD normalisation: lowercase, no punctuation, no articles, whitespace tokens."""
    text = strip_markers(text).lower().translate(_PUNCT)
    return _ARTICLES.sub(" ", text).split()


def token_f1(prediction: str, gold: str) -> float:
    """Bag-of-tokens F1 (SQuAD): 1.0 when both are empty, 0.0 when only one is."""
    pred, ref = normalize(prediction), normalize(gold)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, gold: str) -> float:
    """ROUGE-L F-measure (longest common subsequence of stemmed words)."""
    return float(_rouge_scorer().score(gold, strip_markers(prediction))["rougeL"].fmeasure)


def sentences(text: str) -> list[str]:
    """The sentences of *text* with at least three words, citation markers removed."""
    out = []
    for piece in _SPLIT.split(strip_markers(text)):
        piece = " ".join(_BULLET.sub("", piece).split())
        if len(_WORD.findall(piece)) >= _MIN_SENTENCE_WORDS:
            out.append(piece)
    return out


def _windows(passages: Sequence[str]) -> list[str]:
    """What an answer sentence may paraphrase: each passage sentence, each pair of neighbouring
    sentences (one answer sentence often merges two) and the whole passage."""
    out: list[str] = []
    for passage in passages:
        parts = sentences(passage)
        out += parts
        out += [f"{a} {b}" for a, b in pairwise(parts)]
        whole = " ".join(passage.split())
        if whole and whole not in out:
            out.append(whole)
    return out


def faithfulness(
    answer: str, passages: Sequence[str], embed: Embed, threshold: float = FAITHFULNESS_THRESHOLD
) -> float | None:
    """Share of the answer's sentences that some passage window supports; None when there is nothing to
    judge (no sentences or no passages).

    A sentence is supported when its cosine to a window is at least *threshold* and that window holds at
    least half of its content words, so that a vague sentence near the passage's topic does not count.
    A repeated sentence counts once: each repeat is an unsupported sentence (a loop of one copied
    sentence is not a faithful answer).
    """
    claims, windows = sentences(answer), _windows(passages)
    if not claims or not windows:
        return None
    vectors = np.asarray(embed(claims + windows), dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)  # any embedder: cosine
    similarity = vectors[: len(claims)] @ vectors[len(claims) :].T
    window_words = [terms(w) for w in windows]
    seen: set[str] = set()
    supported = 0
    for i, claim in enumerate(claims):
        key = " ".join(normalize(claim))
        if key in seen:
            continue  # a repeat: counted in the denominator only
        seen.add(key)
        words = terms(claim)
        supported += any(
            similarity[i, j] >= threshold and len(words & window_words[j]) >= len(words) / 2
            for j in range(len(windows))
        )
    return supported / len(claims)


def holds_gold(answer: str, gold: str, threshold: float = 0.5) -> bool:
    """The answer text itself holds at least *threshold* of the gold answer's word trigrams: what a
    customer reads carries the manual's answer (the retrieval rule, applied to the answer)."""
    return coverage(gold, [strip_markers(answer)]) >= threshold


_LOOP_NGRAM = 8


def loops(text: str, repeats: int = 3) -> bool:
    """The answer repeats itself: one sentence *repeats* times or more, or one run of eight words
    that often (a loop without sentence punctuation: "tap the icon tap the icon …")."""
    counted = Counter(" ".join(normalize(s)) for s in sentences(text))
    if counted and counted.most_common(1)[0][1] >= repeats:
        return True
    words = normalize(text)
    grams = Counter(tuple(words[i : i + _LOOP_NGRAM]) for i in range(len(words) - _LOOP_NGRAM + 1))
    return bool(grams) and grams.most_common(1)[0][1] >= repeats


PARTIAL_GOLD = 0.1  # below this share of the gold trigrams an answer carries nothing of the gold answer


def verdict(answer: str, gold: str, handed_off: bool) -> str:
    """The automatic grade of an answer to an answerable question, on the by-hand scale: A (holds half
    the gold answer's trigrams), B (holds some of them), C (handed off, loops, or holds none). Checked
    against grades given by reading in tests/test_graded_answers.py."""
    if handed_off or loops(answer):
        return "C"
    held = coverage(gold, [strip_markers(answer)])
    return "A" if held >= 0.5 else "B" if held >= PARTIAL_GOLD else "C"


def contains_gold(passage: str, gold: str, min_trigrams: int = 5) -> bool:
    """The passage holds gold text: at least min(*min_trigrams*, all) of the gold answer's word trigrams.
    A few trigrams, not a share, so that a chunk holding only part of a split gold answer still counts."""
    wanted = trigrams(gold)
    if not wanted:  # a gold answer under three words: it must appear whole
        words, have = _WORD.findall(gold.lower()), _WORD.findall(passage.lower())
        return bool(words) and any(have[i : i + len(words)] == words for i in range(len(have)))
    return len(wanted & trigrams(passage)) >= min(min_trigrams, len(wanted))


def citation_precision(cited: Sequence[str], gold: str) -> float | None:
    """Share of the cited passages that hold gold text; None when nothing is cited."""
    if not cited:
        return None
    return sum(contains_gold(p, gold) for p in cited) / len(cited)


@dataclass
class AnswerRecord:
    question_id: str
    text: str
    handed_off: bool
    cited: list[str] = field(default_factory=list)  # texts of the cited passages
    passages: list[str] = field(default_factory=list)  # what the answer was generated from (retrieved)
    ttft_ms: float | None = None
    total_ms: float = 0.0
    claims: str | None = None  # the part of the text that states facts (without the closing line); None: all


@dataclass
class AnswersReport:
    n: int
    n_answerable: int
    n_unanswerable: int
    gold_held: float | None  # answerable questions whose answer text holds half the gold trigrams (handoff: no)
    loop_rate: float | None  # written answers (not handed off) that loop
    f1: float | None  # answerable questions; a handoff scores 0
    rouge_l: float | None
    f1_answered: float | None  # answerable questions the bot answered
    rouge_l_answered: float | None
    faithfulness: float | None  # answered questions with passages
    citation_precision: float | None  # answered answerable questions with citations
    handoff_accuracy: float | None  # handed off exactly when unanswerable
    off_topic_handoff_rate: float | None  # unanswerable (off-topic) questions handed off
    false_handoff_rate: float | None  # answerable questions handed off
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    total_p50_ms: float | None
    total_p95_ms: float | None
    per_question: list[dict[str, Any]] = field(default_factory=list)
    by_group: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def _percentile(values: Sequence[float | None], q: float) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.percentile(kept, q)) if kept else None


def _score_one(q: Question, r: AnswerRecord, embed: Embed | None) -> dict[str, Any]:
    answered = not r.handed_off
    row: dict[str, Any] = {
        "id": q.id,
        "group": q.group,
        "question": q.question,
        "gold": q.answer,
        "answerable": q.answerable,
        "answer": r.text,
        "handed_off": r.handed_off,
        "handoff_correct": r.handed_off == (not q.answerable),
        "holds_gold": None,
        "loops": loops(r.text) if answered else None,
        "f1": None,
        "rouge_l": None,
        "faithfulness": None,
        "citation_precision": None,
        "ttft_ms": r.ttft_ms,
        "total_ms": r.total_ms,
    }
    if q.answerable:
        row["holds_gold"] = answered and holds_gold(r.text, q.answer)
        row["f1"] = token_f1(r.text, q.answer) if answered else 0.0
        row["rouge_l"] = rouge_l(r.text, q.answer) if answered else 0.0
        if answered:
            row["citation_precision"] = citation_precision(r.cited, q.answer)
    if answered and embed is not None:
        # an answer to an unanswerable question is scored too: it shows whether the model made it up
        row["faithfulness"] = faithfulness(r.text if r.claims is None else r.claims, r.passages or r.cited, embed)
    return row


def score_answers(
    questions: Sequence[Question], records: Mapping[str, AnswerRecord], embed: Embed | None
) -> AnswersReport:
    """Score one strategy's answers; every question needs a record (keyed by question id)."""
    missing = [q.id for q in questions if q.id not in records]
    if missing:
        raise ValueError(f"no answer recorded for {len(missing)} question(s): {', '.join(missing[:10])}")
    rows = [_score_one(q, records[q.id], embed) for q in questions]
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    answered = [r for r in answerable if not r["handed_off"]]

    def share(subset: list[dict[str, Any]], key: str) -> float | None:
        return sum(bool(r[key]) for r in subset) / len(subset) if subset else None

    groups = sorted({r["group"] for r in rows if r["group"]})
    return AnswersReport(
        n=len(rows),
        n_answerable=len(answerable),
        n_unanswerable=len(unanswerable),
        gold_held=share(answerable, "holds_gold"),
        loop_rate=share([r for r in rows if not r["handed_off"]], "loops"),
        f1=_mean([r["f1"] for r in answerable]),
        rouge_l=_mean([r["rouge_l"] for r in answerable]),
        f1_answered=_mean([r["f1"] for r in answered]),
        rouge_l_answered=_mean([r["rouge_l"] for r in answered]),
        faithfulness=_mean([r["faithfulness"] for r in rows]),
        citation_precision=_mean([r["citation_precision"] for r in rows]),
        handoff_accuracy=share(rows, "handoff_correct"),
        off_topic_handoff_rate=share(unanswerable, "handed_off"),
        false_handoff_rate=share(answerable, "handed_off"),
        ttft_p50_ms=_percentile([r["ttft_ms"] for r in rows], 50),
        ttft_p95_ms=_percentile([r["ttft_ms"] for r in rows], 95),
        total_p50_ms=_percentile([r["total_ms"] for r in rows], 50),
        total_p95_ms=_percentile([r["total_ms"] for r in rows], 95),
        per_question=rows,
        by_group={
            g: {
                "f1": _mean([r["f1"] for r in rows if r["group"] == g and r["answerable"]]),
                "handoff_accuracy": share([r for r in rows if r["group"] == g], "handoff_correct"),
            }
            for g in groups
        },
    )
