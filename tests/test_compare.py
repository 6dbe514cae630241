"""`supportbot compare` end to end on a tiny knowledge base and ticket set, on CPU: real training
(a step per method), real answers from every strategy, the report with its table and charts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import SAMPLE_KB, app
from finetune.base_model import base_model_path
from supportbot.settings import get_settings

EXCHANGES = [
    ("My router light is amber, help!", "Sorry about that! Please check the cable in the yellow port and restart "
                                        "your modem. Let us know how it goes."),
    ("How do I reset my router?", "Happy to help! Hold the reset button for 10 seconds until the light flashes."),
    ("Is there a warranty?", "Yes, two years from purchase. Keep your receipt and we will sort it out."),
    ("Wifi keeps dropping", "Sorry to hear that! Try moving the router off the floor, and run a speed test."),
    ("Can guests use my wifi?", "Of course! Turn on the guest network in the app, it keeps your devices private."),
    ("Where is my wifi password?", "No worries! It is printed on the label under the router."),
]


def _questions(path: Path) -> Path:
    path.write_text(
        "question_id,question,answer,answerable\n"
        "reset,How do I factory reset the router?,\"press and hold the recessed RESET button on the back with a "
        "paperclip for 10 seconds\",true\n"
        "warranty,How long is the warranty?,The Aurora X2 has a two-year limited warranty from the date of purchase."
        ",true\n"
        "pizza,How long should I bake a frozen pizza?,,false\n",
        encoding="utf-8",
    )
    return path


def test_compare_trains_answers_and_writes_its_report(database_url: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    tickets = tmp_path / "tickets.jsonl"
    tickets.write_text("".join(
        json.dumps({"id": f"T-{i}", "brand": "Northwind", "messages": [
            {"role": "user", "content": customer}, {"role": "assistant", "content": agent}]}) + "\n"
        for i, (customer, agent) in enumerate(EXCHANGES * 3, 1)), encoding="utf-8")
    base = base_model_path(get_settings())  # converted once for the session
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SUPPORTBOT_HOME", str(tmp_path / "home"))  # its own registry and run folders
    monkeypatch.setenv("SUPPORTBOT_BASE_MODEL", str(base))
    monkeypatch.setenv("SUPPORTBOT_MAX_NEW_TOKENS", "24")
    get_settings.cache_clear()
    out = tmp_path / "report"
    args = ["compare", "--questions", str(_questions(tmp_path / "q.csv")), "--tickets", str(tickets),
            "--kb", str(SAMPLE_KB), "--unanswerable", str(tmp_path / "none.txt"), "--methods", "lora,ia3",
            "--rag-with", "lora", "--set", "max_steps=1", "--set", "max_seq_len=64", "--tone-generate", "1",
            "--out", str(out)]
    (tmp_path / "none.txt").write_text("What is the capital of Peru?\n", encoding="utf-8")
    try:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        report = json.loads((out / "compare.json").read_text())
        again = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "again")])  # reuses both training runs
        assert again.exit_code == 0, again.output
    finally:
        get_settings.cache_clear()

    assert list(report["strategies"]) == ["base", "rag", "lora", "rag+lora", "ia3"]
    assert report["retrieval"]["n"] == 2 and report["retrieval"]["hits_at"]["5"] == 1.0
    rag = report["strategies"]["rag"]
    assert rag["answers"]["n"] == 4 and rag["answers"]["n_unanswerable"] == 2
    # The off-topic questions are handed off by the chain; a model without retrieval answers them anyway.
    rows = {r["id"]: r for r in rag["answers"]["per_question"]}
    assert rows["pizza"]["handed_off"] and rows["unanswerable-1"]["handed_off"]
    assert report["strategies"]["base"]["answers"]["off_topic_handoff_rate"] < 1.0
    for name in ("lora", "ia3"):
        figures = report["strategies"][name]
        assert figures["training"]["steps"] == 1 and figures["training"]["adapter_mb"] > 0
        assert figures["tone"]["perplexity"] > 1
    assert report["summary"]["rag+lora"]["method"] == "lora" and report["summary"]["rag"]["training_s"] is None
    assert report["recommendation"]["text"][0].startswith("Recommended: ")
    prov = report["provenance"]
    assert prov["knowledge_base"]["documents"] and str(tickets) in prov["data"]
    assert prov["models"]["rag+lora"]["adapter"]["version"] == report["strategies"]["lora"]["training"]["version"]
    # The table and the charts; the HTML page embeds them.
    table = (out / "compare.md").read_text()
    assert "| rag+lora |" in table and "answer F1" in table
    for chart in ("quality", "tone", "latency", "cost"):
        assert (out / f"{chart}.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 4
    second = json.loads((tmp_path / "again" / "compare.json").read_text())
    assert {n: s["training"]["version"] for n, s in second["strategies"].items() if s["training"]} == \
        {n: s["training"]["version"] for n, s in report["strategies"].items() if s["training"]}
