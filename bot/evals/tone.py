"""Tone: how close base and tuned models come to the company's real agent replies, and what they write.

The tickets go through the same import, PII redaction, target rewriting and train/validation split as
training. Only held-out conversations are scored, so an adapter is never graded on tickets it learned from:
the validation split of a file that was trained on, or the whole file (``all_conversations``) when it was
not. Scores: perplexity of the real agent replies; and generated replies — for the held-out conversations'
agent turns, then for held-out customer messages whose real reply was no target (links only) — compared
with the real ones (ROUGE-L, MiniLM cosine similarity with a 95 % confidence interval), checked for links,
e-mail addresses, phone numbers, placeholders, handles, names and requests for a password or code (their share),
and for template parroting (the share of the most frequent near-identical reply).
"""

from __future__ import annotations

import gc
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from finetune.dataset import PROMPTS_FILE, TRAIN_FILE, VALIDATION_FILE, load_examples
from finetune.evaluate import ToneScores, score
from finetune.prepare import load_tokenizer, prepare_dataset
from finetune.train import load_for_serving
from supportbot.settings import Settings

Messages = list[dict[str, str]]


def held_out_conversations(tickets: Sequence[Path], settings: Settings, tokenizer: Any, limit: int | None = None,
                           *, all_conversations: bool = False, mapping: dict[str, str] | None = None,
                           brands: Sequence[str] = ()) -> tuple[list[Messages], list[Messages], dict[str, Any]]:
    """The held-out conversations of *tickets* (redacted and rewritten as training saw them), the held-out
    customer messages without a target (prompts), and the dataset report. *all_conversations*: the whole file
    is held out (it was not trained on): no split."""
    if all_conversations:
        settings = settings.model_copy(update={"finetune_val_fraction": 0.0})
    with tempfile.TemporaryDirectory(prefix="supportbot-tone-") as folder:
        report = prepare_dataset(tickets, folder, settings, tokenizer, mapping, brands=brands)
        train = [e.messages for e in load_examples(Path(folder) / TRAIN_FILE)]
        conversations = train if all_conversations else [e.messages for e in load_examples(Path(folder) /
                                                                                            VALIDATION_FILE)]
        prompts = [e.messages for e in load_examples(Path(folder) / PROMPTS_FILE)]
        if not conversations:  # no held-out split configured: the last training ones stand in
            conversations = train[-16:]
    return conversations[:limit] if limit else conversations, prompts, report.to_dict()


def evaluate_tone(
    models: dict[str, Path | None],
    conversations: Sequence[Messages],
    settings: Settings,
    *,
    generate: int = 64,
    prompts: Sequence[Messages] = (),
    embed: Callable[[list[str]], Any] | None = None,
    tokenizer: Any = None,
    progress: Callable[[str], None] | None = None,
    reply_done: Callable[[], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Score each model (name → adapter folder, None for the base model) on the same conversations;
    *reply_done* is called after each generated reply."""
    tokenizer = tokenizer or load_tokenizer(settings)
    results: dict[str, dict[str, Any]] = {}
    for name, path in models.items():
        if progress:
            progress(name)
        started = time.perf_counter()
        model = load_for_serving(settings, path)
        scores: ToneScores = score(model, tokenizer, list(conversations), generate, embed, prompts, reply_done)
        results[name] = {**scores.to_dict(), "seconds": round(time.perf_counter() - started, 1)}
        del model
        gc.collect()  # one model in memory at a time
    return results
