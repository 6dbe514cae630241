"""The regression gate on planted baselines: drops, tolerance, direction, missing metrics, bad files."""

import json

import pytest

from bot.evals.answers import AnswerRecord, score_answers
from bot.evals.baseline import Drop, check, describe, flatten, load_baseline, save_baseline
from bot.evals.retrieval import Question

RESULTS = {
    "retrieval": {"n": 40, "hit@1": 0.8, "mrr": 0.85, "by_group": {"fan": {"hit@1": 0.75}}, "per_question": [1, 2]},
    "answers": {"f1": 0.41, "false_handoff_rate": 0.10, "faithfulness": None, "total_p50_ms": 900.0},
    "tone": {"perplexity": 12.0, "adapter": True, "model": "qwen"},
}


def changed(changes: dict[str, float | None]) -> dict:
    """RESULTS with some metrics changed ({"answers.f1": 0.3}), or removed where None."""
    results = json.loads(json.dumps(RESULTS))
    for name, value in changes.items():
        *path, leaf = name.split(".")
        node = results
        for key in path:
            node = node[key]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    return results


@pytest.fixture
def baseline(tmp_path):
    path = tmp_path / "baseline.json"
    save_baseline(path, RESULTS, {"model": "qwen", "commit": "abc123"})
    return path


def test_flatten_keeps_numeric_leaves_only():
    assert flatten(RESULTS) == {
        "retrieval.n": 40.0,
        "retrieval.hit@1": 0.8,
        "retrieval.mrr": 0.85,
        "retrieval.by_group.fan.hit@1": 0.75,
        "answers.f1": 0.41,
        "answers.false_handoff_rate": 0.10,
        "answers.total_p50_ms": 900.0,
        "tone.perplexity": 12.0,
    }


def test_saved_baseline_holds_metrics_and_provenance(baseline):
    document = load_baseline(baseline)
    assert document["metrics"] == flatten(RESULTS)
    assert document["provenance"] == {"model": "qwen", "commit": "abc123"}
    assert document["saved_at"].endswith("+00:00")


def test_unchanged_results_pass(baseline):
    assert check(baseline, RESULTS) == []


def test_a_planted_drop_fails_naming_the_metric(baseline):
    drops = check(baseline, changed({"answers.f1": 0.35}))
    assert drops == [Drop("answers.f1", 0.41, 0.35, pytest.approx(0.39))]
    assert describe(drops) == "answers.f1: 0.41 → 0.35 (allowed ≥ 0.39)"


def test_a_drop_in_a_group_is_caught(baseline):
    drops = check(baseline, changed({"retrieval.by_group.fan.hit@1": 0.5}))
    assert [d.metric for d in drops] == ["retrieval.by_group.fan.hit@1"]


def test_within_tolerance_and_improvements_pass(baseline):
    assert check(baseline, changed({"answers.f1": 0.39, "retrieval.hit@1": 0.78})) == []  # exactly 0.02 worse
    assert check(baseline, changed({"answers.f1": 0.9, "answers.false_handoff_rate": 0.0})) == []
    assert check(baseline, changed({"answers.f1": 0.385}), tolerance=0.05) == []
    assert len(check(baseline, changed({"answers.f1": 0.385}), tolerance=0.0)) == 1


def test_exactly_at_the_tolerance_passes_despite_float_rounding(tmp_path):
    path = tmp_path / "baseline.json"
    save_baseline(path, {"answers": {"f1": 0.2}}, {})
    assert check(path, {"answers": {"f1": 0.18}}) == []  # 0.2 - 0.02 is 0.18000000000000002
    assert len(check(path, {"answers": {"f1": 0.179}})) == 1


def test_false_handoff_rate_is_better_lower(baseline):
    drops = check(baseline, changed({"answers.false_handoff_rate": 0.2}))
    assert describe(drops) == "answers.false_handoff_rate: 0.1 → 0.2 (allowed ≤ 0.12)"
    assert check(baseline, changed({"answers.false_handoff_rate": 0.12})) == []


def test_shares_of_flagged_and_template_replies_are_better_lower(tmp_path):
    from bot.evals.baseline import lower_is_better

    assert all(lower_is_better(f"tone.{name}") for name in ("flagged_share", "template_share", "generic_share"))
    assert not lower_is_better("tone.similarity")


def test_perplexity_is_better_lower_with_a_relative_tolerance(baseline):
    assert check(baseline, changed({"tone.perplexity": 12.24})) == []  # 2% of 12 is 0.24
    assert check(baseline, changed({"tone.perplexity": 6.0})) == []
    drops = check(baseline, changed({"tone.perplexity": 12.3}))
    assert describe(drops) == "tone.perplexity: 12 → 12.3 (allowed ≤ 12.24)"


def test_latency_and_counts_are_recorded_but_not_gated(baseline):
    slower = changed({"answers.total_p50_ms": 5000.0, "retrieval.n": 10})
    assert check(baseline, slower) == []
    assert [d.metric for d in check(baseline, slower, gate_latency=True)] == ["answers.total_p50_ms"]
    assert check(baseline, changed({"answers.total_p50_ms": None})) == []  # not gated, so not missed


def test_missing_metric_is_a_drop_and_new_metrics_pass(baseline):
    results = changed({"retrieval.mrr": None})
    results["answers"]["rouge_l"] = 0.1  # new since the baseline
    drops = check(baseline, results)
    assert drops == [Drop("retrieval.mrr", 0.85, None, pytest.approx(0.83))]
    assert describe(drops) == "retrieval.mrr: 0.85 → missing (allowed ≥ 0.83)"
    assert [d.metric for d in check(baseline, changed({"answers.f1": None}) | {"retrieval": {}})] == [
        "answers.f1",
        "retrieval.by_group.fan.hit@1",
        "retrieval.hit@1",
        "retrieval.mrr",
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"no baseline file; save one with --save-baseline"),
        ("{not json", r"not a baseline file \(invalid JSON at line 1: .*\); save one with --save-baseline"),
        ('{"f1": 0.4}', r"not a baseline file \(no 'metrics' object\)"),
        ("[1, 2]", r"not a baseline file \(no 'metrics' object\)"),
        ('{"metrics": {"answers.f1": "high"}}', r"baseline metric 'answers.f1' is 'high', not a number"),
    ],
)
def test_bad_baseline_files_are_one_line_errors_naming_the_path(tmp_path, content, message):
    path = tmp_path / "gate" / "baseline.json"
    if content is not None:
        path.parent.mkdir()
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as caught:
        check(path, RESULTS)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


def test_save_replaces_the_file_atomically(baseline, monkeypatch):
    before = baseline.read_text(encoding="utf-8")

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("bot.evals.baseline.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_baseline(baseline, changed({"answers.f1": 0.1}), {})
    assert baseline.read_text(encoding="utf-8") == before  # the old baseline is whole
    assert [p.name for p in baseline.parent.iterdir()] == ["baseline.json"]  # and no temp file is left
    monkeypatch.undo()
    save_baseline(baseline, changed({"answers.f1": 0.1}), {})
    assert load_baseline(baseline)["metrics"]["answers.f1"] == 0.1
    assert [p.name for p in baseline.parent.iterdir()] == ["baseline.json"]


def test_gate_on_a_real_answers_report(tmp_path):
    """The report's to_dict() goes straight in: per-question rows and None means are left out."""
    questions = [Question("a", "When does it stop?", "after ten minutes"), Question("b", "Espresso?", "", "", False)]
    good = {
        "a": AnswerRecord("a", "It stops after ten minutes [1].", False, total_ms=10),
        "b": AnswerRecord("b", "Passing you on.", True, total_ms=5),
    }
    bad = {**good, "b": AnswerRecord("b", "Descale it monthly.", False, total_ms=5)}
    path = tmp_path / "baseline.json"
    save_baseline(path, {"answers": score_answers(questions, good, None).to_dict()}, {})
    assert "answers.faithfulness" not in load_baseline(path)["metrics"]  # None without an embedder
    drops = check(path, {"answers": score_answers(questions, bad, None).to_dict()})
    assert [d.metric for d in drops] == ["answers.handoff_accuracy", "answers.off_topic_handoff_rate"]
