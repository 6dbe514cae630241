"""The promotion gate looks at answers: before an adapter goes live it answers the knowledge base's own
questions, and one that writes links, placeholders or sign-offs into them fails whatever its perplexity.
Scripted chat models stand in for adapters with and without those habits (a real adapter that learnt them
takes a full training run)."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import cycle
from pathlib import Path

import pytest
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

import bot.adapters
from bot.inference_adapters import answer_gate
from finetune.registry import Adapter, AdapterRegistry
from supportbot.settings import get_settings
from tests.test_tone_guard import HABITS, SAMPLE_KB

CLEAN = "Thanks for reaching out! Let us know if there is anything else we can help with."


def adapter(version: str) -> Adapter:
    return Adapter(0, version, "qlora", "smollm2-135m-instruct", "", f"/nowhere/{version}", {}, {}, datetime.now(UTC))


@pytest.fixture
def registry(ingestor, db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AdapterRegistry:
    ingestor.ingest_paths([SAMPLE_KB])
    writes = {None: CLEAN, "clean": CLEAN, "habits": HABITS}

    def scripted(settings, chosen):
        return GenericFakeChatModel(messages=cycle([AIMessage(writes[chosen.version if chosen else None])]))

    monkeypatch.setattr(bot.adapters, "chat_model_for", scripted)
    return AdapterRegistry(db, tmp_path / "home")


def test_an_adapter_that_writes_links_and_sign_offs_fails_the_answer_gate(registry: AdapterRegistry) -> None:
    passed, reason, scores = answer_gate(registry, get_settings(), adapter("habits"))
    assert not passed and "wrote links" in reason, reason
    assert scores["candidate"]["guard_cuts"] > scores["reference"]["guard_cuts"] == 0
    assert scores["candidate"]["leaky_answers"] == 0  # the guard kept every answer clean
    assert scores["candidate"]["gold_held"] == scores["reference"]["gold_held"] > 0.5  # facts are the manual's


def test_an_adapter_that_only_changes_the_closing_passes(registry: AdapterRegistry) -> None:
    passed, reason, scores = answer_gate(registry, get_settings(), adapter("clean"))
    assert passed, reason
    assert scores["candidate"]["closing"] == CLEAN
