"""Tone: how close base and tuned models come to the company's real agent replies.

The tickets go through the same import, PII redaction and train/validation split as training, and
only the held-out (validation) conversations are scored, so an adapter is never graded on tickets it
learned from: perplexity of the real agent replies, and generated replies compared with them
(ROUGE-L, MiniLM cosine similarity).
"""

from __future__ import annotations

import gc
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from finetune.dataset import TRAIN_FILE, VALIDATION_FILE, load_examples
from finetune.evaluate import ToneScores, score
from finetune.prepare import load_tokenizer, prepare_dataset
from finetune.train import load_for_serving
from supportbot.settings import Settings


def held_out_conversations(tickets: Sequence[Path], settings: Settings, tokenizer: Any,
                           limit: int | None = None) -> tuple[list[list[dict[str, str]]], dict[str, Any]]:
    """The validation conversations of *tickets* (redacted, as training saw them) and the dataset report."""
    with tempfile.TemporaryDirectory(prefix="supportbot-tone-") as folder:
        report = prepare_dataset(tickets, folder, settings, tokenizer)
        conversations = [e.messages for e in load_examples(Path(folder) / VALIDATION_FILE)]
        if not conversations:  # no held-out split configured: the last training ones stand in
            conversations = [e.messages for e in load_examples(Path(folder) / TRAIN_FILE)][-16:]
    return conversations[:limit] if limit else conversations, report.to_dict()


def evaluate_tone(
    models: dict[str, Path | None],
    conversations: Sequence[list[dict[str, str]]],
    settings: Settings,
    *,
    generate: int = 8,
    embed: Callable[[list[str]], Any] | None = None,
    tokenizer: Any = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Score each model (name → adapter folder, None for the base model) on the same conversations."""
    tokenizer = tokenizer or load_tokenizer(settings)
    results: dict[str, dict[str, Any]] = {}
    for name, path in models.items():
        if progress:
            progress(name)
        started = time.perf_counter()
        model = load_for_serving(settings, path)
        scores: ToneScores = score(model, tokenizer, list(conversations), generate, embed)
        results[name] = {**scores.to_dict(), "seconds": round(time.perf_counter() - started, 1)}
        del model
        gc.collect()  # one model in memory at a time
    return results
