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

from bot.conversations import Turn
from bot.prompt import build_messages, condense_messages
from ingestion.search import Hit, Searcher

ASKS_FOR_PERSON = re.compile(
    r"\b(talk|speak|chat|connect|transfer|put)\b[^.?!]{0,30}\b(human|person|agent|someone|somebody|representative|"
    r"operator|people|staff)\b|\b(real|live|actual) (person|human|agent)\b|\bhuman (agent|support)\b",
    re.IGNORECASE,
)
_REFERS_BACK = re.compile(r"\b(it|its|that|this|these|those|they|them|there|one|same|also|too|else|instead)\b", re.I)
UNSURE = re.compile(
    r"\b(i (do not|don't) know|i'm not sure|i am not sure|cannot find|can't find|no information)\b", re.I
)
# A small model tends to go on with a made-up next question: stop there.
STOP = ["\nCustomer question:", "\nQuestion:", "\nQ:", "\nCustomer:"]
_MIN_WORDS = 3
_ANSWER_LABEL = re.compile(r"^\s*(?:A|Answer)\s*:\s*", re.IGNORECASE)
_CITATION = re.compile(r"\[(\d{1,2})\]")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset("a an the and or to of in on for with your you is are be it this that from by as at can i my".split())

HANDOFF_TEXT = {
    "customer_asked": "Of course — I'm passing you to a member of our support team, who will see this conversation.",
    "no_relevant_passages": "I couldn't find that in our documentation, so I'm passing your question to a member of "
    "our support team.",
    "model_unsure": "I'm not sure about that one, so I'm passing your question to a member of our support team.",
}


@dataclass(frozen=True)
class Handoff:
    reason: str  # customer_asked | no_relevant_passages | model_unsure


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
    # model: the model wrote the [n]; overlap: added by word overlap; extractive: the model said too
    # little, so the answer quotes the best passage
    attribution: str = "model"
    model: str | None = None
    adapter: str | None = None
    retrieval_ms: int = 0
    ttft_ms: int | None = None
    total_ms: int = 0
    conversation_id: uuid.UUID | None = None  # set once stored
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


def _lead(text: str, sentences: int = 2) -> str:
    """The first sentences of a passage (FAQ labels dropped)."""
    text = re.sub(r"^Q: .*?\nA: ", "", text, flags=re.DOTALL).replace("\n", " ")
    parts = re.split(r"(?<=[.!?])\s+", text.strip())
    return " ".join(parts[:sentences])


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


class SupportChain:
    def __init__(
        self,
        searcher: Searcher,
        chat_model: BaseChatModel,
        *,
        k: int = 3,
        min_relevance: float = 0.27,
        condense: str = "heuristic",
        max_passage_chars: int = 600,
    ) -> None:
        self.searcher = searcher
        self.chat_model = chat_model
        self.k = k
        self.min_relevance = min_relevance
        self.condense_mode = condense
        self.max_passage_chars = max_passage_chars
        # question in → prompt ready; timed as "retrieval" (embedding, search, prompt assembly)
        self.prepare = RunnableLambda(self._condense) | RunnableLambda(self._retrieve) | RunnableLambda(self._prompt)

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
        elif previous and self.condense_mode == "heuristic" and (
            len(question.split()) <= 6 or _REFERS_BACK.search(question)
        ):
            # A small model rewrites follow-ups unreliably; joining the previous question keeps
            # the topic for retrieval at no latency cost.
            standalone = f"{previous[-1]} {question}"
        return {**state, "standalone": standalone}

    def _retrieve(self, state: dict[str, Any]) -> dict[str, Any]:
        if ASKS_FOR_PERSON.search(state["question"]):
            return {**state, "hits": [], "handoff": Handoff("customer_asked")}
        hits = self.searcher.search(state["standalone"], self.k, state.get("collection"), state.get("product"))
        relevant = self.relevance(state["question"], hits) >= self.min_relevance
        handoff = None if relevant else Handoff("no_relevant_passages")
        return {**state, "hits": hits if handoff is None else [], "handoff": handoff}

    def relevance(self, question: str, hits: Sequence[Hit]) -> float:
        """The best passage's cosine similarity, discounted by the share of the question's words the
        knowledge base has never seen (calibrated by bench/handoff_calibration.py)."""
        best = max((h.similarity for h in hits if h.similarity is not None), default=0.0)
        return best * self.searcher.vocabulary_coverage(question)

    def _prompt(self, state: dict[str, Any]) -> Prepared:
        hits: list[Hit] = state["hits"]
        passages = [Passage(i, h) for i, h in enumerate(hits, 1)]
        messages = build_messages(state["standalone"], hits, self.max_passage_chars) if hits else []
        return Prepared(state["question"], state["standalone"], passages, messages, state["handoff"])

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
        """Yield the answer's text as it is generated, then the final :class:`Answer`.

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
        if prepared.handoff is None:
            parts: list[str] = []
            opening = ""  # held back until it has a few words: a bare "A: [1]" is no answer
            citations = _CitationFilter({p.number for p in prepared.passages})
            for chunk in model.stream(prepared.messages, stop=STOP):
                piece = citations.feed(chunk.content if isinstance(chunk.content, str) else "")
                if not parts:
                    opening += piece
                    if len(_CITATION.sub("", opening).split()) < _MIN_WORDS:
                        continue
                    piece = _ANSWER_LABEL.sub("", opening)
                if piece:
                    if answer.ttft_ms is None:
                        answer.ttft_ms = int((time.perf_counter() - started) * 1000)
                    parts.append(piece)
                    yield piece
            if tail := citations.flush():
                if parts:
                    parts.append(tail)
                    yield tail
                else:
                    opening += tail
            raw = "".join(parts)
            if not parts and prepared.passages:
                # Too short to be an answer: quote the best passage instead (facts from retrieval).
                raw = f"From our documentation: {_lead(prepared.passages[0].hit.text)} [1]"
                answer.ttft_ms = int((time.perf_counter() - started) * 1000)
                yield raw
                answer.attribution = "extractive"
            if UNSURE.search(raw) or not raw.strip():
                answer.handoff = Handoff("model_unsure")
                yield "\n\n" + HANDOFF_TEXT["model_unsure"]
                answer.text = f"{raw.strip()}\n\n{HANDOFF_TEXT['model_unsure']}".strip()
            else:
                text, answer.citations, attribution = self._cite(raw.strip(), prepared.passages)
                answer.attribution = answer.attribution if answer.attribution == "extractive" else attribution
                if text.startswith(raw.strip()) and len(text) > len(raw.strip()):
                    yield text[len(raw.strip()):]  # the streamed text ends as the stored text does
                answer.text = text
        else:
            answer.text = HANDOFF_TEXT[prepared.handoff.reason]
            answer.ttft_ms = int((time.perf_counter() - started) * 1000)
            yield answer.text
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
