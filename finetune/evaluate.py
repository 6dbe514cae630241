"""The evaluation gate: how well base, live and candidate models fit real agent replies.

Perplexity of the agent turns of the validation conversations (loss on agent tokens only, the same
redacted text every model sees), and replies generated for validation tickets scored against the
real ones (ROUGE-L, and cosine similarity with the packaged MiniLM). A candidate goes live only if
its perplexity beats the live model's by the configured margin (or the promotion is forced).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from finetune.masking import tokenize_example
from finetune.quantized_cpu import evaluating
from finetune.trainer import mean_loss


@dataclass
class ToneScores:
    perplexity: float
    rouge_l: float | None = None
    similarity: float | None = None
    samples: list[dict[str, str]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def perplexity(model: torch.nn.Module, tokenizer: Any, conversations: Sequence[list[dict[str, str]]],
               max_tokens: int = 512, batch_size: int = 4) -> float:
    examples = []
    for messages in conversations:
        tokens = tokenize_example(messages, tokenizer)
        examples.append({k: tokens[k][:max_tokens] for k in ("input_ids", "labels")})
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return math.exp(mean_loss(model, examples, pad, str(model.device.type), batch_size))


def generate_reply(model: torch.nn.Module, tokenizer: Any, context: list[dict[str, str]],
                   max_new_tokens: int = 64) -> str:
    inputs = tokenizer.apply_chat_template(context, add_generation_prompt=True, return_dict=True,
                                           return_tensors="pt").to(model.device)
    with evaluating(model):
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def reply_scores(model: torch.nn.Module, tokenizer: Any, conversations: Sequence[list[dict[str, str]]],
                 embed: Any = None, max_new_tokens: int = 64) -> tuple[float, float | None, list[dict[str, str]]]:
    """Generate the last agent reply of each conversation from what came before; score it."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    samples = []
    for messages in conversations:
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        reply = generate_reply(model, tokenizer, messages[:last], max_new_tokens)
        samples.append({"reference": messages[last]["content"], "generated": reply})
    rouge = sum(scorer.score(s["reference"], s["generated"])["rougeL"].fmeasure for s in samples) / len(samples)
    similarity = None
    if embed is not None:
        refs = embed([s["reference"] for s in samples])
        gens = embed([s["generated"] or "." for s in samples])
        similarity = float((refs * gens).sum(axis=1).mean())
    return rouge, similarity, samples


def score(model: torch.nn.Module, tokenizer: Any, conversations: Sequence[list[dict[str, str]]],
          generate: int = 0, embed: Any = None) -> ToneScores:
    scores = ToneScores(perplexity(model, tokenizer, conversations))
    if generate:
        scores.rouge_l, scores.similarity, scores.samples = reply_scores(model, tokenizer, conversations[:generate],
                                                                         embed)
    return scores


def gate(candidate: ToneScores, live: ToneScores, margin: float) -> tuple[bool, str]:
    """Passes when the candidate's perplexity is at least *margin* (a fraction) below the live model's."""
    needed = live.perplexity * (1 - margin)
    if candidate.perplexity <= needed:
        return True, f"perplexity {candidate.perplexity:.1f} ≤ {needed:.1f} (live {live.perplexity:.1f} − {margin:.0%})"
    return False, (f"perplexity {candidate.perplexity:.1f} is not {margin:.0%} below the live model's "
                   f"{live.perplexity:.1f}: not promoted (use --force to promote anyway)")
