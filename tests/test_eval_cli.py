"""The `supportbot eval` commands as a deploying project uses them: results with provenance, a saved
baseline, and the gate failing on a planted drop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import SAMPLE_KB, app
from finetune.base_model import base_model_path
from supportbot.settings import get_settings
from tests.test_compare import EXCHANGES

QUESTIONS = Path(__file__).resolve().parents[1] / "bot" / "evals" / "data" / "sample_kb_questions.csv"


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    base = base_model_path(get_settings())  # converted once for the session
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SUPPORTBOT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SUPPORTBOT_BASE_MODEL", str(base))
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_retrieval_baseline_passes_then_fails_on_a_planted_drop(cli_env: CliRunner, tmp_path: Path) -> None:
    assert cli_env.invoke(app, ["ingest", str(SAMPLE_KB)]).exit_code == 0
    baseline, results = tmp_path / "baseline.json", tmp_path / "results.json"
    saved = cli_env.invoke(app, ["eval", "retrieval", "--questions", str(QUESTIONS), "--save-baseline", str(baseline),
                                 "--json", str(results)])
    assert saved.exit_code == 0, saved.output
    document = json.loads(results.read_text())
    assert document["retrieval"]["n"] == 12  # the four unanswerable rows are not retrieval questions
    assert document["provenance"]["data"][str(QUESTIONS)] and document["provenance"]["knowledge_base"]["documents"]
    same = cli_env.invoke(app, ["eval", "retrieval", "--questions", str(QUESTIONS), "--baseline", str(baseline)])
    assert same.exit_code == 0 and "no regression" in same.output

    # Plant a drop: the baseline claims a better top-1 than the knowledge base gives.
    stored = json.loads(baseline.read_text())
    assert stored["metrics"]["retrieval.hit@1"] < 1.0
    stored["metrics"]["retrieval.hit@1"] = min(1.0, stored["metrics"]["retrieval.hit@1"] + 0.1)
    baseline.write_text(json.dumps(stored))
    dropped = cli_env.invoke(app, ["eval", "retrieval", "--questions", str(QUESTIONS), "--baseline", str(baseline)])
    assert dropped.exit_code == 1
    assert "retrieval.hit@1" in dropped.output and "retrieval.mrr" not in dropped.output

    missing = cli_env.invoke(app, ["eval", "retrieval", "--questions", str(QUESTIONS),
                                   "--baseline", str(tmp_path / "nope.json")])
    assert missing.exit_code == 1 and "nope.json" in missing.output


def test_tone_scores_base_and_adapter_on_held_out_tickets(cli_env: CliRunner, tmp_path: Path) -> None:
    tickets = tmp_path / "tickets.jsonl"
    tickets.write_text("".join(
        json.dumps({"id": f"T-{i}", "brand": "Northwind", "messages": [
            {"role": "user", "content": customer}, {"role": "assistant", "content": agent}]}) + "\n"
        for i, (customer, agent) in enumerate(EXCHANGES * 4, 1)), encoding="utf-8")
    trained = cli_env.invoke(app, ["train", str(tickets), "--method", "lora", "--set", "max_steps=2",
                                   "--set", "max_seq_len=64", "--set", "learning_rate=0.002"])
    assert trained.exit_code == 0, trained.output
    out = tmp_path / "tone.json"
    scored = cli_env.invoke(app, ["eval", "tone", "--tickets", str(tickets), "--generate", "1", "--json", str(out)])
    assert scored.exit_code == 0, scored.output
    tone = json.loads(out.read_text())["tone"]
    assert set(tone) == {"base", "v1", "samples"}
    assert tone["base"]["perplexity"] > 1 and tone["v1"]["perplexity"] > 1
    assert tone["v1"]["perplexity"] != tone["base"]["perplexity"]  # the adapter changes what the model predicts
    assert 0 <= tone["v1"]["rouge_l"] <= 1
    assert tone["samples"]["v1"]["generated"] == 1 and 0 <= tone["samples"]["v1"]["flagged_share"] <= 1

    # A file no adapter was trained on is held out whole (--all): every conversation is scored.
    whole = cli_env.invoke(app, ["eval", "tone", "--tickets", str(tickets), "--all", "--adapter", "v1",
                                 "--generate", "3", "--json", str(out)])
    assert whole.exit_code == 0, whole.output
    document = json.loads(out.read_text())
    assert document["provenance"]["held_out"] == "whole file"
    assert document["provenance"]["conversations"] == len(EXCHANGES)  # the copies are duplicates
    replies = document["tone"]["samples"]["v1"]
    assert replies["generated"] == 3 and "template_share" in replies
    assert len(document["tone"]["v1"]["similarity_ci"]) == 2
