"""Evaluation metrics on small hand-made cases whose right values are worked out by hand."""

import json
from pathlib import Path

import pytest

from bot.evals.retrieval import KS, Question, evaluate, first_answering_rank, load_questions

# A gold answer that chunking split: chunk 1 ends mid-sentence, chunk 2 carries the rest.
GOLD = (
    "Hold the reset button for ten seconds until the light blinks white, then release it and wait for the fan "
    "to restart."
)
CHUNK_1 = "Resetting the fan. Unplug it first. Hold the reset button for ten seconds until the light"
CHUNK_2 = "blinks white, then release it and wait for the fan to restart. Cleaning: wipe the blades with a dry cloth."
UNRELATED = "The warranty lasts two years from the date of purchase and covers the motor and the blades."


# --- retrieval: the trigram rule and the question file ------------------------------------------


def test_gold_split_over_two_chunks_is_answered_at_rank_two():
    # 20 gold trigrams: chunk 1 holds 8 (40%), chunks 1+2 hold 18 (90%); the two spanning the cut are lost
    assert first_answering_rank(GOLD, [CHUNK_1, CHUNK_2, UNRELATED]) == 2
    assert first_answering_rank(GOLD, [UNRELATED, CHUNK_1, CHUNK_2]) == 3
    assert first_answering_rank(GOLD, [UNRELATED, CHUNK_1]) is None


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_load_questions_reads_unanswerable_rows(tmp_path):
    path = write_csv(
        tmp_path / "qs.csv",
        "id,question,answer,answerable,product\n"
        "a,How long is the warranty?,Two years.,true,fan\n"
        "b,How do I descale my espresso machine?,,false,\n"
        "c,What is the towing capacity?,,No,\n"
        "d,How do I reset it?,Hold the button.,,fan\n",
    )
    qs = load_questions(path)
    assert [(q.id, q.answerable, q.answer, q.group) for q in qs] == [
        ("a", True, "Two years.", "fan"),
        ("b", False, "", ""),
        ("c", False, "", ""),
        ("d", True, "Hold the button.", "fan"),
    ]


def test_load_questions_jsonl_takes_json_booleans(tmp_path):
    path = tmp_path / "qs.jsonl"
    rows = [{"question": "Warranty?", "answer": "Two years."}, {"question": "Espresso?", "answerable": False}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    assert [(q.id, q.answerable) for q in load_questions(path)] == [("1", True), ("2", False)]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("empty.csv", "question,answer,answerable\nWarranty?,,yes\n", r"empty\.csv: row 1 needs a non-empty 'answer"),
        ("noq.csv", "question,answer\nWarranty?,Two years.\n,Hold it.\n", r"noq\.csv: row 2 needs a non-empty 'q"),
        ("odd.csv", "question,answer,answerable\nWarranty?,Two years.,maybe\n", r"odd\.csv: row 1: 'answerable' mu"),
        ("bad.jsonl", '{"question": "a", "answer": "b"}\n{"question": \n', r"bad\.jsonl: line 2 is not valid JSON"),
        ("list.jsonl", '["a", "b"]\n', r"list\.jsonl: line 1 must be a JSON object"),
    ],
)
def test_load_questions_errors_name_the_file_and_row(tmp_path, name, text, message):
    path = write_csv(tmp_path / name, text)
    with pytest.raises(ValueError, match=message):
        load_questions(path)


def test_load_questions_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.csv: cannot read"):
        load_questions(tmp_path / "nope.csv")


def test_evaluate_scores_only_answerable_questions():
    questions = [
        Question("split", "How do I reset the fan?", GOLD, "fan"),
        Question("miss", "How long is the warranty?", "The warranty lasts two years from the date of purchase", "fan"),
        Question("off", "How do I descale my espresso machine?", "", answerable=False),
    ]
    passages = {"split": [CHUNK_1, CHUNK_2], "miss": [CHUNK_1, CHUNK_2]}
    asked = []

    def retrieve(q: Question) -> list[str]:
        asked.append(q.id)
        return passages[q.id]

    report = evaluate(questions, retrieve)
    assert asked == ["split", "miss"]  # never retrieves for a handoff question
    assert report.n == 2 and report.ranks == {"split": 2, "miss": None}
    assert report.hits_at == {1: 0.0, 3: 0.5, 5: 0.5, 10: 0.5} and report.mrr == pytest.approx(0.25)
    assert report.by_group == {"fan": {k: report.hits_at[k] for k in KS}}
    flat = report.to_dict()
    assert flat["hit@3"] == 0.5 and flat["by_group"]["fan"]["hit@1"] == 0.0
    assert flat["per_question"] == [{"id": "split", "rank": 2}, {"id": "miss", "rank": None}]
