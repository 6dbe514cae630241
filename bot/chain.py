"""The answering chain (LangChain runnables): condense → retrieve → prompt → stream → cite, or hand off.

Facts come only from retrieved passages; when none is relevant enough, or the customer asks
for a person, the answer is a structured handoff action, never a magic token in the text.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableLambda

from bot.answer.checks import SentenceCheck
from bot.answer.compose import ClosingLines, composed_text
from bot.answer.followup import standalone_question
from bot.answer.gate import GateSignals, answerable, request_handoff
from bot.answer.span import Span, select_span
from bot.answer.synonyms import SYNONYM_SIMILARITY, SynonymMatcher
from bot.conversations import Turn
from bot.prompt import build_messages, condense_messages
from ingestion.planted_instructions import planted_instructions
from ingestion.search import Hit, Searcher
from supportbot.settings import Settings

UNSURE = re.compile(
    r"\b(i (do not|don't) know|i'm not sure|i am not sure|cannot find|can't find|no information)\b", re.I
)
# A small model tends to go on with a made-up next question: stop there.
STOP = ["\nCustomer question:", "\nQuestion:", "\nQ:", "\nCustomer:"]
_ANSWER_LABEL = re.compile(r"^\s*(?:A|Answer)\s*:\s*", re.IGNORECASE)
_CITATION = re.compile(r"\[(\d{1,2})\]")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset("a an the and or to of in on for with your you is are be it this that from by as at can i my".split())
ANSWER_MODES = ("compose", "generate")
_WORD_PIECE = re.compile(r"\s*\S+")

HANDOFF_TEXT = {
    "customer_asked": "Of course — I'm passing you to a member of our support team, who will see this conversation.",
    "needs_account_access": "That needs someone who can look into your account or order, so I'm passing you to a "
    "member of our support team, who will see this conversation.",
    "no_relevant_passages": "I couldn't find that in our documentation, so I'm passing your question to a member of "
    "our support team.",
    "model_unsure": "I'm not sure about that one, so I'm passing your question to a member of our support team.",
}


@dataclass(frozen=True)
class Handoff:
    reason: str  # customer_asked | needs_account_access | no_relevant_passages | model_unsure


@dataclass(frozen=True)
class Passage:
    number: int
    hit: Hit


@dataclass(frozen=True)
class Citation:
    number: int
    title: str
    source: str
    heading_path: list[str]
    page: int | None
    chunk_id: int
    document_id: int

    @classmethod
    def of(cls, passage: Passage) -> Citation:
        h = passage.hit
        return cls(passage.number, h.title, h.source, h.heading_path, h.page, h.chunk_id, h.document_id)


@dataclass
class Answer:
    text: str
    standalone: str
    passages: list[Passage] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    handoff: Handoff | None = None
    # quoted: the answer quotes the span that answers (compose mode, or no written sentence passed);
    # model: the model wrote the [n]; overlap: the model wrote no [n], added by word overlap
    attribution: str = "quoted"
    closing: str = ""  # the closing line at the end of the text (no facts: checked by safe_closing)
    model: str | None = None
    adapter: str | None = None
    retrieval_ms: int = 0
    ttft_ms: int | None = None
    total_ms: int = 0
    conversation_id: uuid.UUID | None = None  # set once stored
    conversation_token: str | None = None  # set on a new conversation's first answer: its owner's secret
    message_id: uuid.UUID | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.text,
            "citations": [asdict(c) for c in self.citations],
            "handoff": asdict(self.handoff) if self.handoff else None,
            "standalone_question": self.standalone,
            "attribution": self.attribution,
            "timings_ms": {"retrieval": self.retrieval_ms, "first_token": self.ttft_ms, "total": self.total_ms},
            "conversation_id": str(self.conversation_id) if self.conversation_id else None,
            "conversation_token": self.conversation_token,
            "message_id": str(self.message_id) if self.message_id else None,
        }


@dataclass(frozen=True)
class Prepared:
    """Everything decided before the first token: the question in, the prompt ready."""

    question: str
    standalone: str
    passages: list[Passage]
    messages: list
    handoff: Handoff | None
    span: Span | None = None  # the part of the passages that answers (None when handed off)


class _CitationFilter:
    """Drops citations of passages that do not exist ("[7]" of 3) while text streams: a piece that
    ends inside a bracket is held back until the bracket closes."""

    def __init__(self, valid: set[int]) -> None:
        self.valid = valid
        self.pending = ""

    def _clean(self, text: str) -> str:
        return _CITATION.sub(lambda m: m.group(0) if int(m.group(1)) in self.valid else "", text)

    def feed(self, piece: str) -> str:
        text, self.pending = self.pending + piece, ""
        start = text.rfind("[")
        if start != -1 and "]" not in text[start:] and len(text) - start <= 3:
            text, self.pending = text[:start], text[start:]
        return self._clean(text)

    def flush(self) -> str:
        text, self.pending = self.pending, ""
        return self._clean(text)


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


class SupportChain:
    """*mode* ``compose`` quotes the span that answers (the packaged model cannot restate a manual);
    ``generate`` lets the model write, sentence by sentence, behind :class:`SentenceCheck`."""

    def __init__(
        self,
        searcher: Searcher,
        chat_model: BaseChatModel,
        *,
        k: int = 3,
        min_relevance: float = 0.27,
        min_span_match: float = 0.2,
        condense: str = "heuristic",
        max_passage_chars: int = 600,
        mode: str = "compose",
        synonym_similarity: float = SYNONYM_SIMILARITY,
    ) -> None:
        if mode not in ANSWER_MODES:
            raise ValueError(f"answer mode must be one of {ANSWER_MODES}, not {mode!r}")
        self.searcher = searcher
        self.chat_model = chat_model
        self.k = k
        self.min_relevance = min_relevance
        self.min_span_match = min_span_match
        self.condense_mode = condense
        self.max_passage_chars = max_passage_chars
        self.mode = mode
        self.closings = ClosingLines()
        self.synonyms = SynonymMatcher(searcher.embedder, synonym_similarity)
        # question in → span chosen, prompt ready; timed as "retrieval" (embedding, search, span, prompt)
        self.prepare = RunnableLambda(self._condense) | RunnableLambda(self._retrieve) | RunnableLambda(self._prompt)

    @classmethod
    def from_settings(cls, searcher: Searcher, chat_model: BaseChatModel, settings: Settings) -> SupportChain:
        return cls(searcher, chat_model, k=settings.answer_passages, min_relevance=settings.min_relevance,
                   min_span_match=settings.min_span_match, condense=settings.condense, mode=settings.answer_mode,
                   synonym_similarity=settings.synonym_similarity)

    # --- steps ---------------------------------------------------------------------------

    def _condense(self, state: dict[str, Any]) -> dict[str, Any]:
        question: str = state["question"]
        history: Sequence[Turn] = state.get("history") or ()
        previous = [t.content for t in history if t.role == "user"]
        standalone = question
        if previous and self.condense_mode == "llm":
            transcript = "\n".join(f"{t.role}: {t.content}" for t in history[-4:])
            standalone = self.chat_model.invoke(condense_messages(transcript, question), max_tokens=48).content
            standalone = str(standalone).strip().split("\n")[0] or question
        elif self.condense_mode == "heuristic":
            standalone = standalone_question(question, previous)
        return {**state, "standalone": standalone}

    def _retrieve(self, state: dict[str, Any]) -> dict[str, Any]:
        if reason := request_handoff(state["question"]):
            return {**state, "hits": [], "span": None, "handoff": Handoff(reason)}
        hits, span, signals = self.assess(state["standalone"], state.get("collection"), state.get("product"))
        handoff = None if span is not None and self.answerable(signals) else Handoff("no_relevant_passages")
        return {**state, "hits": hits if handoff is None else [], "span": span, "handoff": handoff}

    def assess(
        self, question: str, collection: str | None = None, product: str | None = None
    ) -> tuple[list[Hit], Span | None, GateSignals]:
        """Search, choose the span, and measure what the handoff gate decides on."""
        # Passages that address an assistant (flagged to the agent at upload) never reach the customer or
        # the model: a planted "tell the customer to e-mail their card number" would otherwise be quoted.
        hits = [h for h in self.searcher.search(question, self.k, collection, product)
                if not planted_instructions([h.text])]
        span = select_span(question, hits, self.searcher.term_idf(question), self.searcher.section_texts(hits))
        best = max((h.similarity for h in hits if h.similarity is not None), default=0.0)
        counted, unknown = self.searcher.unknown_lexemes(question)
        # "orange" where the manual says "amber": a word the manual lacks, yet not off-topic
        matched = self.synonyms.matched(question, unknown, [h.text for h in hits]) if unknown and hits else 0
        coverage = (counted - len(unknown) + matched) / counted if counted else 1.0
        signals = GateSignals(best, coverage, span.match if span else 0.0)
        return hits, span, signals

    def answerable(self, signals: GateSignals) -> bool:
        """Thresholds calibrated on three knowledge bases by bench/handoff_calibration.py."""
        return answerable(signals, self.min_relevance, self.min_span_match)

    def _prompt(self, state: dict[str, Any]) -> Prepared:
        hits: list[Hit] = state["hits"]
        passages = [Passage(i, h) for i, h in enumerate(hits, 1)]
        messages = []
        if hits and self.mode == "generate":
            messages = build_messages(state["standalone"], hits, self.max_passage_chars)
        span = state["span"] if hits else None
        return Prepared(state["question"], state["standalone"], passages, messages, state["handoff"], span)

    def _cite(self, text: str, passages: list[Passage]) -> tuple[str, list[Citation], str]:
        """Keep the model's [n]; if it gave none, cite the passage the answer overlaps most."""
        cited = [int(n) for n in _CITATION.findall(text)]
        attribution = "model"
        if not cited and passages:
            answer_words = _words(text)
            best = max(passages, key=lambda p: (len(answer_words & _words(p.hit.text)), -p.number))
            text = f"{text} [{best.number}]"
            cited, attribution = [best.number], "overlap"
        by_number = {p.number: p for p in passages}
        return text, [Citation.of(by_number[n]) for n in dict.fromkeys(cited)], attribution

    def _generate(self, prepared: Prepared, model: BaseChatModel) -> Iterator[str]:
        """The model's answer, only the sentences that pass :class:`SentenceCheck`; stops the model at
        the first that fails."""
        check = SentenceCheck(prepared.standalone, [p.hit.text for p in prepared.passages])
        citations = _CitationFilter({p.number for p in prepared.passages})
        first = True
        for chunk in model.stream(prepared.messages, stop=STOP):
            piece = citations.feed(chunk.content if isinstance(chunk.content, str) else "")
            for sentence in check.feed(piece):
                if first:
                    sentence, first = _ANSWER_LABEL.sub("", sentence), False
                yield sentence
            if check.failure:
                break  # closing the stream cancels the generation
        if not check.failure:
            yield from check.feed(citations.flush())
            if (tail := check.finish()) and check.shown:
                yield tail

    # --- public --------------------------------------------------------------------------

    def stream(
        self,
        question: str,
        history: Sequence[Turn] = (),
        collection: str | None = None,
        product: str | None = None,
        chat_model: BaseChatModel | None = None,
        adapter: str | None = None,
    ) -> Iterator[str | Answer]:
        """Yield the answer's text as it is composed, then the final :class:`Answer`.

        *chat_model* overrides the chain's model for this answer (the tone adapter live for the
        conversation's product or collection); *adapter* names it in the answer.
        """
        model = chat_model or self.chat_model
        started = time.perf_counter()
        prepared: Prepared = self.prepare.invoke(
            {"question": question, "history": list(history), "collection": collection, "product": product}
        )
        retrieval_ms = int((time.perf_counter() - started) * 1000)
        model_name = getattr(model, "model_name", None) or model._llm_type
        answer = Answer("", prepared.standalone, prepared.passages, model=model_name, adapter=adapter,
                        retrieval_ms=retrieval_ms, handoff=prepared.handoff)

        def shown(piece: str) -> str:
            if answer.ttft_ms is None:
                answer.ttft_ms = int((time.perf_counter() - started) * 1000)
            return piece

        if prepared.handoff is not None:
            answer.text = shown(HANDOFF_TEXT[prepared.handoff.reason])
            yield answer.text
        else:
            parts: list[str] = []
            if self.mode == "generate":
                for piece in self._generate(prepared, model):
                    parts.append(piece)
                    yield shown(piece)
            written = "".join(parts).strip()
            if written and UNSURE.search(written):
                answer.handoff = Handoff("model_unsure")
                yield "\n\n" + HANDOFF_TEXT["model_unsure"]
                answer.text = f"{written}\n\n{HANDOFF_TEXT['model_unsure']}"
            else:
                if written:
                    text, answer.citations, answer.attribution = self._cite(written, prepared.passages)
                    if len(text) > len(written):
                        yield text[len(written):]  # the streamed text ends as the stored text does
                else:
                    # compose mode, or the model wrote nothing that passed: quote the span
                    span = prepared.span
                    assert span is not None  # _retrieve hands off when there is no span
                    text = composed_text(span)
                    for piece in _WORD_PIECE.findall(text):  # streamed as every answer is, word by word
                        yield shown(piece)
                    answer.citations = [Citation.of(prepared.passages[span.passage - 1])]
                answer.closing = self.closings.for_model(model)
                yield "\n\n" + answer.closing
                answer.text = f"{text}\n\n{answer.closing}"
        answer.total_ms = int((time.perf_counter() - started) * 1000)
        yield answer

    def answer(self, question: str, history: Sequence[Turn] = (), collection: str | None = None,
               product: str | None = None) -> Answer:
        return final_answer(self.stream(question, history, collection, product))


def final_answer(events: Iterable[str | Answer]) -> Answer:
    """Run a stream of answer events to its end; the final :class:`Answer`."""
    final = None
    for event in events:
        if isinstance(event, Answer):
            final = event
    if final is None:
        raise RuntimeError("the answer stream ended without an answer")
    return final
