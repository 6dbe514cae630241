"""Chainlit's data layer for supportbot: thumbs up/down go into our ``feedback`` table; nothing else
is stored by Chainlit (conversations are stored by the service)."""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from bot import metrics
from bot.agent_auth import prepare_chainlit_env
from bot.service import SupportService, get_service

prepare_chainlit_env()  # Chainlit reads CHAINLIT_APP_ROOT once, when first imported

from chainlit.data.base import BaseDataLayer  # noqa: E402
from chainlit.types import Feedback, PageInfo, PaginatedResponse, Pagination, ThreadDict, ThreadFilter  # noqa: E402
from chainlit.user import PersistedUser, User  # noqa: E402


class _Rated:
    # A plain class: Chainlit executes this file before registering it as a module, which
    # dataclasses (with postponed annotations) cannot cope with.
    __slots__ = ("feedback_id", "message_id", "thread_id")

    def __init__(self, thread_id: str, message_id: uuid.UUID) -> None:
        self.thread_id = thread_id
        self.message_id = message_id
        self.feedback_id: int | None = None


class ChatDataLayer(BaseDataLayer):
    """Chainlit shows thumbs up/down only when a data layer exists. This one stores feedback in
    supportbot's ``feedback`` table and nothing else: conversations are already stored by the
    service (and without it, DATABASE_URL would make Chainlit look for its own tables)."""

    max_answers = 10_000

    def __init__(self, service: SupportService | None = None) -> None:
        self.service = service
        self._answers: OrderedDict[str, _Rated] = OrderedDict()

    def get_service(self) -> SupportService:
        return self.service or get_service()

    def remember_answer(self, run_id: str, thread_id: str, message_id: uuid.UUID) -> None:
        """Chainlit's feedback names the run of an answer, not our message: keep the mapping
        (bounded, in process, like Chainlit's sessions, which already need sticky routing)."""
        self._answers[run_id] = _Rated(thread_id, message_id)
        while len(self._answers) > self.max_answers:
            self._answers.popitem(last=False)

    async def upsert_feedback(self, feedback: Feedback) -> str:
        rated = self._answers.get(feedback.forId)
        if rated is None or (feedback.threadId and feedback.threadId != rated.thread_id):
            raise ValueError("feedback for an unknown answer")
        rating = 1 if feedback.value == 1 else -1
        comment = (feedback.comment or "")[:2000] or None  # as the HTTP API allows
        rated.feedback_id = await asyncio.to_thread(self._store, rated, rating, comment)
        return feedback.forId  # the id the UI sends back to change or withdraw this rating

    async def delete_feedback(self, feedback_id: str) -> bool:
        rated = self._answers.get(feedback_id)
        if rated is None or rated.feedback_id is None:
            return False
        await asyncio.to_thread(self._delete, rated.feedback_id)
        rated.feedback_id = None
        return True

    def _store(self, rated: _Rated, rating: int, comment: str | None) -> int:
        conversations = self.get_service().conversations
        # a changed vote replaces the earlier one
        if rated.feedback_id is not None and conversations.update_feedback(rated.feedback_id, rating, comment):
            return rated.feedback_id
        stored = conversations.add_feedback(rated.message_id, rating, comment)
        if stored.new:  # counted as the API counts them: ratings, not changes of mind
            metrics.count_rating(rating)
        return stored.feedback_id

    def _delete(self, feedback_id: int) -> None:
        self.get_service().conversations.delete_feedback(feedback_id)

    # Users are the signed JWT's; threads are not kept (no history sidebar, see config.toml).
    async def get_user(self, identifier: str) -> PersistedUser | None:
        return None

    async def create_user(self, user: User) -> PersistedUser | None:
        return PersistedUser(id=user.identifier, createdAt=datetime.now(UTC).isoformat(),
                             identifier=user.identifier, display_name=user.display_name, metadata=user.metadata)

    async def create_element(self, element: Any) -> None:
        return None

    async def get_element(self, thread_id: str, element_id: str) -> None:
        return None

    async def delete_element(self, element_id: str, thread_id: str | None = None) -> None:
        return None

    async def create_step(self, step_dict: Any) -> None:
        return None

    async def update_step(self, step_dict: Any) -> None:
        return None

    async def delete_step(self, step_id: str) -> None:
        return None

    async def get_thread_author(self, thread_id: str) -> str:
        return ""

    async def delete_thread(self, thread_id: str) -> None:
        return None

    async def list_threads(self, pagination: Pagination, filters: ThreadFilter) -> PaginatedResponse[ThreadDict]:
        return PaginatedResponse(pageInfo=PageInfo(hasNextPage=False, startCursor=None, endCursor=None), data=[])

    async def get_thread(self, thread_id: str) -> ThreadDict | None:
        return None

    async def update_thread(self, thread_id: str, name: str | None = None, user_id: str | None = None,
                            metadata: dict | None = None, tags: list[str] | None = None) -> None:
        return None

    async def build_debug_url(self) -> str:
        return ""

    async def close(self) -> None:
        return None

    async def get_favorite_steps(self, user_id: str) -> list:
        return []
