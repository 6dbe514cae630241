"""Words the manual does not use, matched to words it does: the handoff gate's vocabulary coverage
should not punish a customer for saying "orange" and "blinking" where the manual says "amber" and
"pulsing".

A question word that occurs nowhere in the knowledge base counts as covered when the embedder puts it
close to a word of the retrieved passages. Only the passages' own words are candidates, so an
off-topic word finds nothing close enough ("dishwasher" lands at 0.54 from "clean", "tuesday" at 0.87
from "monday", but a weekday alone does not make a question relevant: the similarity × coverage
threshold still has to be met). The threshold was set on four knowledge bases and their 60 off-topic
questions each (bench/handoff_calibration.py; figures in the README): at 0.55 no off-topic question
changes side and two false handoffs go.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import numpy as np

from bot.answer.span import _STOP, _stem
from ingestion.embed import Embedder

SYNONYM_SIMILARITY = 0.55
_WORD = re.compile(r"[a-z]+")
_MIN_LETTERS = 3  # "on", "tv": too short for a word vector to mean much


class SynonymMatcher:
    """Counts the question's unknown words that the embedder matches to a word of the passages."""

    def __init__(self, embedder: Embedder, threshold: float = SYNONYM_SIMILARITY, cache_size: int = 50_000) -> None:
        self.embedder = embedder
        self.threshold = threshold
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()  # word → unit vector, least recent first
        self._cache_size = cache_size
        # answers are composed on several threads at once; the cache is shared by them
        self._lock = threading.Lock()

    def _embed(self, words: Sequence[str]) -> np.ndarray:
        with self._lock:
            found = {w: self._vectors[w] for w in words if w in self._vectors}
        missing = [w for w in words if w not in found]
        # Embedded outside the lock: a cold question (up to ~0.8 s) must not hold up the warm ones of other chats.
        if missing:
            found.update(zip(missing, self.embedder.embed(missing), strict=True))
        with self._lock:
            for word in words:
                self._vectors[word] = found[word]
                self._vectors.move_to_end(word)
            while len(self._vectors) > self._cache_size:
                self._vectors.popitem(last=False)
        return np.stack([found[w] for w in words])

    def matched(self, question: str, unknown_lexemes: Iterable[str], passages: Iterable[str]) -> int:
        """How many of *unknown_lexemes* (the question's lexemes the knowledge base lacks) have a word
        of *passages* within the threshold."""
        if self.threshold <= 0:
            return 0
        unknown = set(unknown_lexemes)
        # the question's own spelling of each unknown lexeme: a stem ("orang") embeds poorly
        asked = list(dict.fromkeys(
            w for w in _WORD.findall(question.lower())
            if len(w) >= _MIN_LETTERS and w not in _STOP and _stem(w) in unknown
        ))
        if not asked:
            return 0
        candidates = sorted({
            w for text in passages for w in _WORD.findall(text.lower()) if len(w) >= _MIN_LETTERS and w not in _STOP
        })
        if not candidates:
            return 0
        similarity = self._embed(asked) @ self._embed(candidates).T
        close = {_stem(w) for w, best in zip(asked, similarity.max(axis=1), strict=True) if best >= self.threshold}
        return len(close)
