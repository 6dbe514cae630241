"""Span selection: the part of the retrieved passages that answers the question, kept verbatim.

Passages arrive as lines (the chunker keeps one sentence, list item or table row a line). Each line is
scored by the question's terms it holds, weighted by their IDF in the knowledge base; the passage's
heading counts too (manual headings name the task: "Time zone converter"). The best passage among the
top retrieved ones is chosen by that match plus its cosine similarity to the question, and the span is the whole passage
when it is short, else its two opening lines (the what-and-where: "From Settings, tap Display") and the
run of lines around the best match, within a word budget. A passage stands for its whole manual
section: the chunker cuts a long section into several chunks, and the answer may sit in one that
ranked lower.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from ingestion.search import Hit

_WORD = re.compile(r"[a-z0-9]+")
# Postgres' english stop words, the ones questions use: what the full-text side ignores, this ignores.
_STOP = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her
    here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
    now of off on once only or other our ours out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    """.split()
)
SHORT_PASSAGE_WORDS = 110  # quote such a passage whole: a manual section this short is the answer
# Otherwise the opening lines and the best-matching run of lines, within this budget. With whole sections
# as candidates, 120 words held the gold answer more often than 90 on three of four knowledge bases
# and as often on the fourth (S10 41 → 41 of 50, KeePassXC 21 → 23 of 40, Nextcloud 12 → 13 of 30).
SPAN_WORDS = 120
# Weight of the passage's cosine similarity to the question against the term match (which runs 0-3):
# the embedder knows that "dark mode" is about themes and a "fingerprint" about biometric unlocking.
# Swept over 0.5-5 on three knowledge bases (S10, KeePassXC, sample): 2 holds the answer most often
# on both manuals (S10 36 → 41 of 50, KeePassXC 18 → 21 of 40, against a 0.15-per-rank prior).
SIMILARITY_WEIGHT = 2.0
# A long section's first two lines are kept: the first often only introduces ("Use the icons … to
# configure your camera's settings"), the second gives the way in ("From Camera, tap Settings for the
# following options"). Against one line: S10 41 → 42, Nextcloud 13 → 15, KeePassXC 23 and the sample
# KB 12 unchanged (gold held by the span), no answer lost. When neither gives a way in, the opening
# runs on to the third or fourth line that does ("Manage your apps." "Options vary by app." "From
# Settings, tap Apps."): read on the S10, a customer was otherwise told of an option but not where it is.
OPENING_LINES = 2
_WAY_IN = re.compile(r"\b(?:from|tap|click|go to|open|select|navigate|choose|press)\b|>|→|»", re.IGNORECASE)
_WAY_IN_WORDS = 40  # a way in is one short line, not a paragraph that happens to say "select"


def _opening(lines: list[str]) -> int:
    """How many of a long section's first lines the span keeps whatever the question."""
    opening = min(OPENING_LINES, len(lines))
    if any(_WAY_IN.search(line) for line in lines[:opening]):
        return opening
    for i in range(opening, min(opening + 2, len(lines))):
        if _WAY_IN.search(lines[i]) and len(lines[i].split()) <= _WAY_IN_WORDS:
            return i + 1
    return opening


@lru_cache(maxsize=1)
def _stemmer():
    from nltk.stem.snowball import SnowballStemmer

    return SnowballStemmer("english")  # the Snowball English stemmer, as Postgres' 'english' text search


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return _stemmer().stem(word)


def terms(text: str) -> set[str]:
    """The stemmed content words of *text* (comparable with Postgres 'english' lexemes)."""
    return {_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP}


@dataclass(frozen=True)
class Span:
    passage: int  # the passage's number in the prompt / citation (1-based)
    text: str  # verbatim lines of the passage, joined by newlines
    match: float  # IDF-weighted share of the question's terms that the span and its heading hold
    heading_match: float
    whole: bool  # the whole passage


def _weights(question: str, idf: Mapping[str, float]) -> dict[str, float]:
    # Terms the knowledge base never uses carry no weight here: the handoff gate judges those.
    weights = {t: idf[t] for t in terms(question) if idf.get(t, 0) > 0}
    total = sum(weights.values())
    return {t: w / total for t, w in weights.items()}  # normalised once, not per scored line


def _share(weights: Mapping[str, float], have: set[str]) -> float:
    """Share of the weighted question terms found in *have* (weights already sum to 1)."""
    return sum(w for t, w in weights.items() if t in have)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.split("\n") if line.strip()]


def _window(lines: list[str], scores: list[float], budget: int, opening: int) -> list[int]:
    """Indexes of the *opening* lines plus the best run of lines (by summed score) after them that fits
    *budget* (at least one line of the run, whatever its length)."""
    words = [len(line.split()) for line in lines]
    head = list(range(min(opening, len(lines))))
    best, best_score = head, -1.0
    for start in range(len(head), len(lines)):
        used, score = sum(words[i] for i in head), sum(scores[i] for i in head)
        chosen = list(head)
        for i in range(start, len(lines)):
            if used + words[i] > budget and len(chosen) > len(head):
                break
            chosen.append(i)
            used += words[i]
            score += scores[i]
        # a run that reaches a line before its best one starts earlier: prefer the earliest start
        if score > best_score + 1e-9:
            best, best_score = chosen, score
    return best


def _section_lines(texts: Sequence[str]) -> list[str]:
    """The lines of a section's chunks, each once (later chunks repeat the section's opening line and
    overlap their neighbour by a sentence)."""
    return list(dict.fromkeys(line for text in texts for line in _lines(text)))


def select_span(
    question: str,
    passages: Sequence[Hit],
    idf: Mapping[str, float],
    sections: Mapping[tuple[int, tuple[str, ...]], Sequence[str]] | None = None,
    short_words: int = SHORT_PASSAGE_WORDS,
    span_words: int = SPAN_WORDS,
) -> Span | None:
    """The span of *passages* (in retrieval order) that answers *question*; None without passages.

    With *sections* (``Searcher.section_texts``), a passage stands for its whole section: passages of
    one section are judged once, on all its lines, with the best of their similarities, and cited by
    the first of them."""
    if not passages:
        return None
    weights = _weights(question, idf)
    candidates: dict[object, tuple[int, Hit, list[str], float]] = {}
    for number, hit in enumerate(passages, 1):
        key = (hit.document_id, tuple(hit.heading_path))
        similarity = hit.similarity if hit.similarity is not None else 0.0  # found by full text alone
        if sections is None or key not in sections:
            candidates[number] = (number, hit, _lines(hit.text), similarity)
        elif key in candidates:
            first, first_hit, lines, best_similarity = candidates[key]
            candidates[key] = (first, first_hit, lines, max(best_similarity, similarity))
        else:
            candidates[key] = (number, hit, _section_lines(sections[key]) or _lines(hit.text), similarity)
    best: tuple[float, int, list[str], list[float]] | None = None
    for number, hit, lines, similarity in candidates.values():
        if not lines:
            continue
        heading = _share(weights, terms(" ".join(hit.heading_path[-2:])))
        line_scores = [_share(weights, terms(line)) for line in lines]
        whole = _share(weights, terms(" ".join(lines)))
        score = heading + max(line_scores) + whole + SIMILARITY_WEIGHT * similarity
        if best is None or score > best[0]:
            best = (score, number, lines, line_scores)
    if best is None:
        return None
    _, number, lines, line_scores = best
    heading = _share(weights, terms(" ".join(passages[number - 1].heading_path[-2:])))
    if sum(len(line.split()) for line in lines) <= short_words:
        chosen, whole_passage = list(range(len(lines))), True
    else:
        chosen, whole_passage = _window(lines, line_scores, span_words, _opening(lines)), False
    text = "\n".join(lines[i] for i in chosen)
    match = _share(weights, terms(text) | terms(" ".join(passages[number - 1].heading_path[-2:])))
    return Span(number, text, match, heading, whole_passage)
