"""Which tone adapter answers a chat: the registry's live deployments, picked per product or
collection, re-read when they change (no restart), each adapter's model loaded once."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from langchain_core.language_models import BaseChatModel

from finetune.registry import DEFAULT_SCOPE, Adapter, AdapterRegistry
from supportbot.settings import Settings

log = logging.getLogger(__name__)


def chat_model_for(settings: Settings, adapter: Adapter | None) -> BaseChatModel:
    """The base model with *adapter* on top (a PEFT folder), or the adapter's own weights (full)."""
    from bot.llm import OpenAIChatModel, get_chat_model

    if adapter is None:
        return get_chat_model(settings)
    if settings.llm_backend == "openai":
        # vLLM serves each LoRA adapter under its own model name (--lora-modules NAME=PATH).
        return OpenAIChatModel(base_url=settings.llm_url, api_key=settings.llm_api_key, model_name=adapter.version,
                               max_new_tokens=settings.max_new_tokens)
    if (Path(adapter.path) / "adapter_config.json").exists():
        return get_chat_model(settings, adapter.path)
    return get_chat_model(settings.model_copy(update={"base_model": adapter.path}))  # full fine-tune


class LiveAdapters:
    def __init__(self, registry: AdapterRegistry, settings: Settings, poll_seconds: float = 2.0) -> None:
        self.registry = registry
        self.settings = settings
        self.poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._generation = -1
        self._checked = 0.0
        self._live: dict[str, Adapter | None] = {}

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.poll_seconds:
            return
        self._checked = now
        generation = self.registry.generation()  # one indexed max(): cheap enough per poll
        if generation != self._generation:
            self._live = self.registry.live()
            self._generation = generation
            log.warning("live adapters: %s", {k: (v.version if v else "base") for k, v in self._live.items()})

    def for_chat(self, collection: str | None, product: str | None) -> tuple[str | None, BaseChatModel]:
        """(adapter version or None, chat model) for a chat about *product* in *collection*."""
        with self._lock:
            self._refresh()
            live = self._live
        for scope in (f"product:{product}" if product else None, f"collection:{collection}" if collection else None,
                      DEFAULT_SCOPE):
            if scope in live:
                adapter = live[scope]
                return (adapter.version if adapter else None), chat_model_for(self.settings, adapter)
        return None, chat_model_for(self.settings, None)
