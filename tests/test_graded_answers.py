"""The automatic verdict against answers graded by reading (bot/evals/data/graded_answers.jsonl: the
bot's answers on the Galaxy S10 manual, the KeePassXC user guide and the Nextcloud client manual, each
graded A correct and helpful, B partly, C wrong/invented/looping/wrongly handed off, with a one-line
reason)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from bot.evals.answers import verdict

GRADED = Path(__file__).resolve().parents[1] / "bot" / "evals" / "data" / "graded_answers.jsonl"


def graded() -> list[dict]:
    return [json.loads(line) for line in GRADED.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_graded_set_covers_two_manuals_with_a_reason_for_every_grade():
    rows = graded()
    assert len(rows) >= 60
    assert Counter(r["kb"] for r in rows).keys() >= {"s10", "keepassxc"}
    assert all(r["grade"] in {"A", "B", "C"} and r["reason"].strip() for r in rows)


def test_the_automatic_verdict_agrees_with_the_readers_grades():
    rows = graded()
    agree = [verdict(r["answer"], r["gold"], r["handed_off"]) == r["grade"] for r in rows]
    assert sum(agree) / len(rows) >= 0.85, f"{sum(agree)}/{len(rows)} agree"
    # the line that matters to a customer, correct and helpful or not, agrees more often still
    a_or_not = [(verdict(r["answer"], r["gold"], r["handed_off"]) == "A") == (r["grade"] == "A") for r in rows]
    assert sum(a_or_not) / len(rows) >= 0.9
