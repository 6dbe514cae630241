"""The checks a model-written answer passes sentence by sentence while it streams.

Only whole sentences reach the customer, each one after it passed: supported by the passages (its
content words are theirs), not a repeat of an earlier one (a loop ends the answer there), and no
"no" or negation the passages do not hold (a 135M model says "No, it does not support WPA3" next
to a passage that says it does), and nothing the passages do not hold that a tone adapter writes from
its training tickets (:func:`guard`: links, e-mail addresses, phone numbers, prices, order numbers, handles,
placeholders such as <EMAIL>, names and sign-offs, requests for a password or code; each cut is counted in
``supportbot_guard_cuts_total``).
The first sentence that fails ends the answer; an answer with no
sentence that passed is replaced by the quoted span. An unfinished sentence at the token limit is
dropped, so an answer never stops mid-sentence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.answer.span import terms
from bot.metrics import GUARD_CUTS
from finetune.targets import leaks

GUARD_KINDS = ("link", "email", "phone", "price", "order_number", "handle", "placeholder", "name", "credential")

_CITATION = re.compile(r"\s*\[\d{1,2}\]")
# A sentence ends at .!? before whitespace, or at a line break (list items carry no final stop).
_BOUNDARY = re.compile(r"(?<=[.!?])\s+|\n+")
_NEGATION = re.compile(r"\b(?:no|not|never|cannot|can't|don't|doesn't|isn't|aren't|won't|none|nothing)\b", re.I)
_WORDS = re.compile(r"[a-z0-9]+")
SUPPORT_SHARE = 0.75  # share of a sentence's content terms the passages (or the question) must hold
_MIN_TERMS = 2  # "Sure!" and "Here's how:" hold too few terms to judge: they pass as framing


def guard(text: str, allowed: str = "") -> bool:
    """True when model-written *text* holds nothing that *allowed* (passages and question) does not; else
    False, and each kind found is counted in the metrics."""
    found = leaks(text, allowed)
    for kind in dict.fromkeys(kind for kind, _ in found):
        GUARD_CUTS.labels(kind if kind in GUARD_KINDS else "other").inc()
    return not found


def _key(sentence: str) -> str:
    return " ".join(_WORDS.findall(_CITATION.sub("", sentence).lower()))


@dataclass
class SentenceCheck:
    """Feed streamed text; get back the sentences that may be shown, in order."""

    question: str
    passages: Sequence[str]
    failure: str | None = None  # why the answer ended early: unsupported | repeated | contradicts | leak
    _pending: str = ""
    _seen: set[str] = field(default_factory=set)
    _allowed: set[str] = field(default_factory=set)
    _allowed_text: str = ""
    _negation_ok: bool = False
    _shown: int = 0

    def __post_init__(self) -> None:
        self._allowed = terms(" ".join(self.passages)) | terms(self.question)
        self._allowed_text = "\n".join([*self.passages, self.question])
        self._negation_ok = any(_NEGATION.search(p) for p in self.passages)

    @property
    def shown(self) -> int:
        """How many sentences passed."""
        return self._shown

    def feed(self, piece: str) -> list[str]:
        """The sentences completed by *piece* that passed (with the whitespace that follows them)."""
        if self.failure:
            return []
        self._pending += piece
        out: list[str] = []
        while (m := _BOUNDARY.search(self._pending)) is not None:
            sentence, self._pending = self._pending[: m.end()], self._pending[m.end() :]
            if not sentence.strip():
                if self._shown:
                    out.append(sentence)  # the line break between shown sentences
                continue
            if not self._passes(sentence):
                return out
            out.append(sentence)
        return out

    def finish(self) -> str:
        """The last piece if it is a whole sentence that passes (one cut off by the limit is dropped)."""
        tail, self._pending = self._pending, ""
        if self.failure or not tail.strip():
            return ""
        bare = _CITATION.sub("", tail).rstrip()
        if not bare.endswith((".", "!", "?", ":")):
            guard(bare, self._allowed_text)  # cut anyway; what it held is counted
            return ""
        return tail if self._passes(tail) else ""

    def _passes(self, sentence: str) -> bool:
        key = _key(sentence)
        if key and key in self._seen:
            self.failure = "repeated"
            return False
        if not guard(_CITATION.sub("", sentence), self._allowed_text):
            self.failure = "leak"
            return False
        own = terms(_CITATION.sub("", sentence))
        if len(own) >= _MIN_TERMS and len(own & self._allowed) < SUPPORT_SHARE * len(own):
            self.failure = "unsupported"
            return False
        if not self._negation_ok and _NEGATION.search(sentence):
            self.failure = "contradicts"
            return False
        if key:
            self._seen.add(key)
        self._shown += 1
        return True
