"""One per process: the database pool, the models and the chain, shared by the HTTP API, the chat
UI and the CLI. Conversation state lives in Postgres, never here."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

from bot.adapters import LiveAdapters
from bot.admission import AnswerSlots
from bot.chain import Answer, SupportChain, final_answer
from bot.conversations import ConversationStore, Turn, warm_redactor
from bot.rate_limits import RateLimiter
from finetune.registry import AdapterRegistry
from ingestion.pipeline import FileOutcome, Ingestor
from ingestion.search import Searcher
from ingestion.vector_index import stale_advice
from supportbot.database import Database, open_database
from supportbot.settings import Settings, get_settings

log = logging.getLogger(__name__)


class SupportService:
    def __init__(self, settings: Settings | None = None, db: Database | None = None) -> None:
        from bot.llm import get_chat_model
        from ingestion.embed import get_embedder

        self.settings = settings or get_settings()
        self.db = db or open_database(self.settings)
        self.embedder = get_embedder(self.settings)
        self.searcher = Searcher.from_settings(self.db, self.embedder, self.settings)
        self.chat_model = get_chat_model(self.settings)
        self.chain = SupportChain.from_settings(self.searcher, self.chat_model, self.settings)
        self.conversations = ConversationStore(self.db, self.settings.store_personal_data)
        if not self.settings.store_personal_data:  # load the redactor (~5 s) now, not on the first question
            threading.Thread(target=warm_redactor, name="redactor-warm-up", daemon=True).start()
        self.adapters = LiveAdapters(AdapterRegistry(self.db, self.settings.home), self.settings)
        self.ingestor = Ingestor(self.db, self.embedder, self.settings)
        self._ingest_lock = threading.Lock()  # one upload at a time per process keeps memory bounded
        # Shared by the HTTP API and the chat UI: both queue for the same model. Callers take a slot
        # before stream() (which stores the question), so a refused question leaves no trace.
        self.answer_slots = AnswerSlots(self.settings.max_queued_answers, self.settings.max_answer_wait_s)
        self.rate_limits = RateLimiter({"question": self.settings.rate_limit_questions,
                                        "feedback": self.settings.rate_limit_feedback,
                                        "handoff": self.settings.rate_limit_handoffs})

    def stream(
        self,
        question: str,
        conversation_id: uuid.UUID | None = None,
        *,
        channel: str = "api",
        user_ref: str | None = None,
        collection: str | None = None,
        product: str | None = None,
        history: list[Turn] | None = None,
    ) -> Iterator[str | Answer]:
        """Answer one turn of a conversation: its text as it streams, then the stored :class:`Answer`.

        Without *conversation_id* a new conversation starts, and its answer carries the owner's
        ``conversation_token``. A *conversation_id* must be one the caller made itself (the chat UI's
        session) or whose owner it checked (``conversations.check_owner``).
        The history comes from the database unless the caller brings it (OpenAI clients send the
        whole conversation with every request).
        """
        token = None
        if conversation_id is None:
            conversation_id, token = self.conversations.start(channel, user_ref, collection, product)
        else:
            self.conversations.ensure(conversation_id, channel, user_ref, collection, product)
        if history is None:
            history = self.conversations.history(conversation_id, self.settings.history_turns)
        else:
            history = history[-self.settings.history_turns:] if self.settings.history_turns else []
        question_id = self.conversations.add_user_message(conversation_id, question)
        adapter, chat_model = self.adapters.for_chat(collection, product)
        for event in self.chain.stream(question, history, collection, product, chat_model, adapter):
            if isinstance(event, Answer):
                event.conversation_id, event.conversation_token = conversation_id, token
                event.message_id = self.conversations.add_answer(conversation_id, question_id, event)
            yield event

    def ask(self, question: str, conversation_id: uuid.UUID | None = None, **kwargs: object) -> Answer:
        return final_answer(self.stream(question, conversation_id, **kwargs))  # type: ignore[arg-type]

    def ingest(self, path: Path, source: str, collection: str = "default", product: str | None = None) -> FileOutcome:
        with self._ingest_lock:
            outcome = self.ingestor.ingest_file(path, source, collection, product)
        if outcome.chunks:
            for advice in stale_advice(self.db):
                log.warning(advice)
        return outcome

    def close(self) -> None:
        self.db.close()


_service: SupportService | None = None
_service_lock = threading.Lock()


def get_service() -> SupportService:
    """The process-wide service, created on first use."""
    global _service
    with _service_lock:
        if _service is None:
            _service = SupportService()
        return _service
