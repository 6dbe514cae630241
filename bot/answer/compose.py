"""The composed answer: the span of the manual that answers the question, verbatim, with its
citation, and a closing line in the live model's tone.

A 135M model cannot restate a manual (it loops, invents steps, contradicts its passage), so it never
writes a fact here. What it does write, the closing line, is generated once per live model or
adapter from a prompt that holds no question and no passage, and is kept only when it passes
:func:`safe_closing`: one or two short sentences with no links, numbers, placeholders, names of
things or instructions, and nothing the serving guard (:func:`bot.answer.checks.guard`) cuts: no names or
sign-offs either. Otherwise the answer ends with :data:`FALLBACK_CLOSING`.
"""

from __future__ import annotations

import logging
import re
import threading

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from bot.answer.checks import guard
from bot.answer.span import Span

log = logging.getLogger(__name__)

FALLBACK_CLOSING = "Is there anything else I can help you with?"
_FAQ_QUESTION = re.compile(r"^Q:\s")
_FAQ_ANSWER = re.compile(r"^A:\s*")
_LIST_ITEM = re.compile(r"^(?:[-*•]|\d+[.)])\s")
_FIGURE_CAPTION = re.compile(r"^(?:Figure|Fig\.|Table)\s+\d+[.:]", re.IGNORECASE)  # the image is not shown

# A closing that a customer may read: one or two sentences, short, about helping — no facts.
_CLOSING_MAX_WORDS = 22
_UNSAFE_CLOSING = re.compile(
    r"https?:|www\.|@|<[^>]*>|\[|\]|\d|\b(?:click|tap|open|go to|select|press|download|install|email|e-mail|"
    r"call|phone|sorry|apolog\w*|unfortunately|not|no|yes|cannot|can't|don't|won't|welcome|glad|i'm an? |"
    r"ai|language model|customer support ai)\b|[*`#_|]",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

# The closing prompt holds no question of a customer's and no passage: nothing in it invites a fact.
_CLOSING_PROMPT: list[BaseMessage] = [
    SystemMessage("You are a friendly customer support agent."),
    HumanMessage("Write the last line of a support reply, inviting the customer to ask more questions."),
]


def span_text(span: Span) -> str:
    """The span's lines as the customer reads them: FAQ labels and figure captions dropped, paragraphs
    apart, list items together."""
    out: list[str] = []
    seen: set[str] = set()
    lines = span.text.split("\n")
    for line in lines:
        if (_FAQ_QUESTION.match(line) and len(lines) > 1) or _FIGURE_CAPTION.match(line):
            continue  # the FAQ's own question restates the customer's; a caption without its figure
        key = " ".join(line.split()).lower()
        if key in seen and len(key) > 20:
            continue  # consecutive chunks of a section overlap: a line they share is read once
        seen.add(key)
        line = _FAQ_ANSWER.sub("", line)
        if out and not (_LIST_ITEM.match(line) and _LIST_ITEM.match(out[-1].lstrip("\n"))):
            line = "\n" + line  # a blank line between paragraphs (Markdown joins single newlines)
        out.append(line)
    return "\n".join(out)


def composed_text(span: Span) -> str:
    """The answer's body: the verbatim span and its citation."""
    return f"{span_text(span)} [{span.passage}]"


def safe_closing(text: str) -> str | None:
    """What a customer may read of a generated closing (its safe, complete sentences), else None."""
    sentences = [s.strip() for s in _SENTENCE_END.split(" ".join(text.split())) if s.strip()]
    kept: list[str] = []
    for sentence in sentences:
        if not sentence.endswith((".", "!", "?")) or not guard(sentence) or _UNSAFE_CLOSING.search(sentence):
            continue  # a cut-off or unsafe sentence is left out; the others may stand
        if len(" ".join([*kept, sentence]).split()) > _CLOSING_MAX_WORDS:
            break
        kept.append(sentence)
    closing = " ".join(kept)
    return closing if len(closing.split()) >= 3 else None


class ClosingLines:
    """One checked closing line per live model (the base model, or each tone adapter), generated on
    first use and kept: the tone costs no time per answer."""

    def __init__(self) -> None:
        self._lines: dict[int, str] = {}
        self._lock = threading.Lock()

    def for_model(self, model: BaseChatModel) -> str:
        key = id(model)
        with self._lock:
            if key not in self._lines:
                self._lines[key] = self._generate(model)
            return self._lines[key]

    @staticmethod
    def _generate(model: BaseChatModel) -> str:
        try:
            raw = str(model.invoke(_CLOSING_PROMPT, max_new_tokens=32).content)
        except Exception:  # a closing line is not worth failing an answer for
            log.exception("closing line generation failed; using the fixed one")
            return FALLBACK_CLOSING
        closing = safe_closing(raw)
        if closing is None:
            log.info("generated closing line rejected (%r); using the fixed one", raw[:120])
            return FALLBACK_CLOSING
        return closing

