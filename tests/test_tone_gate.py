"""The promotion gate looks at answers: before an adapter goes live it answers the knowledge base's own
questions, and one that writes links, placeholders or sign-offs into them fails whatever its perplexity.
Scripted chat models stand in for adapters with and without those habits (a real adapter that learnt them
takes a full training run)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import cycle
from pathlib import Path

import pytest
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from typer.testing import CliRunner

import bot.adapters
from bot.cli import app
from bot.inference_adapters import answer_gate
from finetune.registry import Adapter, AdapterRegistry
from supportbot.settings import get_settings
from tests.test_inference_adapters import adapter_folder
from tests.test_tone_guard import HABITS, SAMPLE_KB

CLEAN = "Thanks for reaching out! Let us know if there is anything else we can help with."


def adapter(version: str) -> Adapter:
    return Adapter(0, version, "qlora", "smollm2-135m-instruct", "", f"/nowhere/{version}", {}, {}, datetime.now(UTC))


@pytest.fixture
def registry(ingestor, db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AdapterRegistry:
    ingestor.ingest_paths([SAMPLE_KB])
    writes = {None: CLEAN, "clean": CLEAN, "habits": HABITS, "v1": HABITS, "v2": CLEAN}  # v1, v2: registered ones

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


def test_the_gate_fails_when_the_questions_find_nothing_ingested(db, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bot.adapters, "chat_model_for",
                        lambda settings, chosen: GenericFakeChatModel(messages=cycle([AIMessage(CLEAN)])))
    passed, reason, scores = answer_gate(AdapterRegistry(db, tmp_path / "home"), get_settings(), adapter("clean"))
    assert not passed and "base holds no gold answer to the 16 gate questions: ingest the knowledge base" in reason
    assert "candidate" not in scores  # nothing to compare with: the candidate is not run


def test_an_adapter_that_only_changes_the_closing_passes(registry: AdapterRegistry) -> None:
    passed, reason, scores = answer_gate(registry, get_settings(), adapter("clean"))
    assert passed, reason
    assert scores["candidate"]["closing"] == CLEAN


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`supportbot …` in this process on the test database, with the registry fixture's home."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SUPPORTBOT_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_promoting_by_hand_runs_the_answer_gate(registry: AdapterRegistry, cli_env: None, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    for i in (1, 2):  # v1 writes links and sign-offs, v2 only a clean closing (see the registry fixture)
        registry.register(adapter_folder(tmp_path / f"src{i}", "LORA"), method="qlora",
                          base_model="smollm2-135m-instruct", data_hash="test", metrics={"gate_passed": True},
                          config={})

    def promote(*args: str) -> tuple[int, list[str]]:
        result = CliRunner().invoke(app, ["adapters", "promote", *args])
        return result.exit_code, [line for line in result.output.splitlines() if line.strip()]

    code, lines = promote("v1")
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("error: v1 failed the answer gate (answers: the adapter wrote links"), lines
    assert lines[0].endswith("it was not promoted (--skip-answer-gate promotes it anyway)"), lines
    assert registry.live() == {}

    code, lines = promote("v1", "--gate-questions", str(tmp_path / "missing.csv"))
    assert (code, lines) == (1, [f"error: --gate-questions {tmp_path / 'missing.csv'}: no such file; v1 was not "
                                 "promoted"])

    code, lines = promote("v2")
    assert code == 0 and lines[0] == "v2 is live for *", lines
    assert lines[1].startswith("answer gate passed: answers: gold coverage 1.00 (reference 1.00)"), lines
    assert registry.live()["*"].version == "v2"

    with caplog.at_level("WARNING"):
        code, lines = promote("v1", "--skip-answer-gate")
    assert code == 0 and "v1 is live for *" in lines, lines
    assert "promoting v1 without the answer gate (--skip-answer-gate)" in caplog.text
    assert registry.live()["*"].version == "v1"

