"""Retrieval quality that does not depend on chunking: a question counts as answered by its top-k
passages when they hold at least half of the word trigrams of its gold answer."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    answer: str  # empty for a question the bot should hand off on
    group: str = ""
    answerable: bool = True


_TRUE = frozenset({"", "true", "1", "yes", "y"})  # empty: the column is optional, answerable by default
_FALSE = frozenset({"false", "0", "no", "n"})


def _answerable(value: object, where: str) -> bool:
    if value is None or isinstance(value, bool):
        return value is not False
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text not in _FALSE
    raise ValueError(f"{where}: 'answerable' must be true/false (or 1/0, yes/no), not {value!r}")


def _rows(path: Path) -> list[dict]:
    try:
        if path.suffix.lower() != ".jsonl":
            with path.open(encoding="utf-8-sig", newline="") as f:
                return list(csv.DictReader(f))
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: cannot read the questions file ({exc})") from exc
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: line {number} is not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise ValueError(f"{path}: line {number} must be a JSON object")
        rows.append(row)
    return rows


def load_questions(path: Path) -> list[Question]:
    """CSV or JSONL with `question` and gold `answer` (optional `question_id`/`id`, `collection`/`product`,
    `answerable`: false marks a question the bot should hand off on, whose answer may be empty)."""
    questions = []
    for i, row in enumerate(_rows(path), 1):
        where = f"{path}: row {i}"
        answerable = _answerable(row.get("answerable"), where)
        if not row.get("question"):
            raise ValueError(f"{where} needs a non-empty 'question'")
        if answerable and not row.get("answer"):
            raise ValueError(f"{where} needs a non-empty 'answer' (or answerable=false for a handoff question)")
        qid = str(row.get("question_id") or row.get("id") or i)
        group = row.get("collection") or row.get("product") or ""
        questions.append(Question(qid, row["question"], row.get("answer") or "", group, answerable))
    return questions


@dataclass
class RetrievalReport:
    n: int  # answerable questions scored
    hits_at: dict[int, float]
    mrr: float
    ranks: dict[str, int | None] = field(default_factory=dict)
    by_group: dict[str, dict[int, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Metrics as nested dicts ("hit@1", "mrr", "by_group"); ranks go in the per_question list so
        that a regression gate does not read them as scores."""
        return {
            "n": self.n,
            **{f"hit@{k}": v for k, v in self.hits_at.items()},
            "mrr": self.mrr,
            "by_group": {g: {f"hit@{k}": v for k, v in hits.items()} for g, hits in self.by_group.items()},
            "per_question": [{"id": qid, "rank": rank} for qid, rank in self.ranks.items()],
        }


def evaluate(questions: Sequence[Question], retrieve: Callable[[Question], list[str]]) -> RetrievalReport:
    """*retrieve* returns the passage texts for a question, best first (at least max(KS) of them).
    Unanswerable questions are skipped: there is no gold text to find for them."""
    questions = [q for q in questions if q.answerable]
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
