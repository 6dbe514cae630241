"""Retrieval quality that does not depend on chunking: a question counts as answered by its top-k
passages when they hold at least half of the word trigrams of its gold answer."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_WORD = re.compile(r"\w+")
KS = (1, 3, 5, 10)


def trigrams(text: str) -> set[tuple[str, str, str]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + 3]) for i in range(len(words) - 2)}


def coverage(gold: str, passages: Sequence[str]) -> float:
    """Share of the gold answer's trigrams found in the passages (together)."""
    wanted = trigrams(gold)
    if not wanted:
        return 0.0
    have: set[tuple[str, str, str]] = set()
    for passage in passages:
        have |= trigrams(passage)
    return len(wanted & have) / len(wanted)


def first_answering_rank(gold: str, passages: Sequence[str], threshold: float = 0.5) -> int | None:
    """The smallest k whose top-k passages answer the question, or None."""
    for k in range(1, len(passages) + 1):
        if coverage(gold, passages[:k]) >= threshold:
            return k
    return None


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answer: str
    group: str = ""


def load_questions(path: Path) -> list[Question]:
    """CSV or JSONL with `question` and gold `answer` (optional `question_id`/`id`, `collection`/`product`)."""
    if path.suffix.lower() == ".jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        with path.open(encoding="utf-8-sig", newline="") as f:
            rows = list(csv.DictReader(f))
    questions = []
    for i, row in enumerate(rows, 1):
        if not row.get("question") or not row.get("answer"):
            raise ValueError(f"{path}: row {i} needs non-empty 'question' and 'answer'")
        qid = str(row.get("question_id") or row.get("id") or i)
        group = row.get("collection") or row.get("product") or ""
        questions.append(Question(qid, row["question"], row["answer"], group))
    return questions


@dataclass
class RetrievalReport:
    n: int
    hits_at: dict[int, float]
    mrr: float
    ranks: dict[str, int | None] = field(default_factory=dict)
    by_group: dict[str, dict[int, float]] = field(default_factory=dict)


def evaluate(questions: Sequence[Question], retrieve: Callable[[Question], list[str]]) -> RetrievalReport:
    """*retrieve* returns the passage texts for a question, best first (at least max(KS) of them)."""
    ranks: dict[str, int | None] = {}
    for q in questions:
        ranks[q.id] = first_answering_rank(q.answer, retrieve(q)[: max(KS)])

    def share(qs: Sequence[Question], k: int) -> float:
        return sum(1 for q in qs if ranks[q.id] is not None and ranks[q.id] <= k) / max(1, len(qs))

    groups = sorted({q.group for q in questions if q.group})
    return RetrievalReport(
        n=len(questions),
        hits_at={k: share(questions, k) for k in KS},
        mrr=sum(1 / r for r in ranks.values() if r) / max(1, len(questions)),
        ranks=ranks,
        by_group={g: {k: share([q for q in questions if q.group == g], k) for k in KS} for g in groups},
    )
