"""The answering strategies a user can choose between, each turned into "question in, scored record out".

- ``base``: the base model alone, no retrieval;
- ``rag``: the full chain (retrieval, citations, handoff) on the base model;
- ``<method>`` (qlora, lora, full, ia3): a fine-tuned model alone, no retrieval;
- ``rag+<method>``: the full chain on the fine-tuned model (facts from retrieval, tone from the adapter).

Strategies without retrieval still get the top passages recorded, so their faithfulness is measured
against the same manual text the RAG strategies saw.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from bot.chain import STOP, UNSURE, SupportChain, final_answer
from bot.evals.answers import AnswerRecord
from bot.evals.retrieval import Question
from finetune.registry import Adapter
from ingestion.search import Searcher
from supportbot.chat_control import neutralise
from supportbot.settings import Settings


@dataclass(frozen=True)
class Strategy:
    name: str
    retrieval: bool
    adapter: Adapter | None = None  # None: the base model

    @property
    def method(self) -> str:
        return self.adapter.method if self.adapter else "base"


def strategy_name(method: str | None, retrieval: bool) -> str:
    name = method or "base"
    if retrieval:
        return "rag" if name == "base" else f"rag+{name}"
    return name


class StrategyAnswerer:
    """Answers evaluation questions with one strategy; times each answer like a customer would see it."""

    def __init__(self, strategy: Strategy, searcher: Searcher, chat_model: BaseChatModel, settings: Settings,
                 collection: str | None = None) -> None:
        self.strategy = strategy
        self.searcher = searcher
        self.chat_model = chat_model
        self.settings = settings
        self.collection = collection
        self.chain = SupportChain.from_settings(searcher, chat_model, settings)

    def __call__(self, question: Question) -> AnswerRecord:
        if self.strategy.retrieval:
            return self._with_retrieval(question)
        return self._without_retrieval(question)

    def _with_retrieval(self, q: Question) -> AnswerRecord:
        answer = final_answer(self.chain.stream(q.question, collection=self.collection))
        by_number = {p.number: p.hit.text for p in answer.passages}
        return AnswerRecord(
            question_id=q.id, text=answer.text, handed_off=answer.handoff is not None,
            cited=[by_number[c.number] for c in answer.citations if c.number in by_number],
            passages=list(by_number.values()), ttft_ms=answer.ttft_ms, total_ms=answer.total_ms or 0,
            claims=answer.text.removesuffix(answer.closing).rstrip() if answer.closing else None,
        )

    def _without_retrieval(self, q: Question) -> AnswerRecord:
        # The persona the adapters were trained with, so a tuned model is asked the way it learned.
        messages = [SystemMessage(self.settings.finetune_system_prompt), HumanMessage(neutralise(q.question))]
        started = time.perf_counter()
        ttft_ms: float | None = None
        parts: list[str] = []
        for chunk in self.chat_model.stream(messages, stop=STOP):
            piece = chunk.content if isinstance(chunk.content, str) else ""
            if piece and ttft_ms is None:
                ttft_ms = (time.perf_counter() - started) * 1000
            parts.append(piece)
        total_ms = (time.perf_counter() - started) * 1000
        text = "".join(parts).strip()
        reference = self.searcher.search(q.question, self.settings.answer_passages, self.collection)
        return AnswerRecord(
            question_id=q.id, text=text, handed_off=not text or bool(UNSURE.search(text)), cited=[],
            passages=[h.text for h in reference], ttft_ms=ttft_ms, total_ms=total_ms,
        )


def describe(strategy: Strategy) -> dict[str, Any]:
    """How a report names the model behind a strategy."""
    a = strategy.adapter
    return {"retrieval": strategy.retrieval, "method": strategy.method,
            "adapter": None if a is None else {"version": a.version, "path": a.path, "data_hash": a.data_hash}}
