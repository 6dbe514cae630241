"""The evaluation gate: how well base, live and candidate models fit real agent replies.

Perplexity of the agent turns of the validation conversations (loss on agent tokens only, the same
redacted text every model sees), and replies generated for validation tickets scored against the
real ones (ROUGE-L, and cosine similarity with the packaged MiniLM, with a confidence interval) and for what
no reply may hold (links, contacts, placeholders, handles, names) and template parroting. A candidate goes live only if
its perplexity beats the live model's by the configured margin (or the promotion is forced).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
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
    similarity_ci: list[float] | None = None  # 95 % confidence interval of the mean similarity
    generated: int | None = None  # replies generated
    flagged_share: float | None = None  # replies with a link, contact, placeholder, handle or name
    flags: dict[str, int] | None = None  # kind → replies holding it
    template_share: float | None = None  # replies that are the most frequent near-identical template
    template: str | None = None  # that template's first reply
    generic_share: float | None = None  # replies of greetings, apologies and closers only
    samples: list[dict[str, Any]] | None = None

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


Context = tuple[list[dict[str, str]], str | None]  # the messages before a reply, and the real reply (if any)


def reply_contexts(conversations: Sequence[list[dict[str, str]]],
                   prompts: Sequence[list[dict[str, str]]] = ()) -> list[Context]:
    """Where to generate a reply: the last agent turn of each conversation first (one per conversation), then
    *prompts* (held-out customer messages whose real reply was no target: no reference), then earlier turns."""
    last, earlier = [], []
    for messages in conversations:
        turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        for i in turns:
            (last if i == turns[-1] else earlier).append((list(messages[:i]), messages[i]["content"]))
    return last + [(list(p), None) for p in prompts] + earlier


def mean_ci(values: Sequence[float]) -> tuple[float, list[float]]:
    """The mean and its 95 % confidence interval (normal approximation)."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    half = 1.96 * sd / math.sqrt(n)
    return mean, [round(mean - half, 4), round(mean + half, 4)]


def reply_scores(model: torch.nn.Module, tokenizer: Any, contexts: Sequence[Context], embed: Any = None,
                 max_new_tokens: int = 64, progress: Callable[[], None] | None = None) -> ToneScores:
    """Generate a reply for each context; score those with a real reply (ROUGE-L, MiniLM similarity and its
    confidence interval), and all of them for what they must not hold (:func:`finetune.targets.reply_flags`)
    and for the share of the most frequent template."""
    from rouge_score import rouge_scorer

    from finetune.targets import is_generic, reply_flags, template_share

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    samples: list[dict[str, Any]] = []
    for context, reference in contexts:
        reply = generate_reply(model, tokenizer, context, max_new_tokens)
        flags = sorted(reply_flags(reply))
        samples.append({"customer": context[-1]["content"] if context else "", "reference": reference,
                        "generated": reply, "flags": flags})
        if progress:
            progress()
    scores = ToneScores(perplexity=math.nan, generated=len(samples), samples=samples)
    if not samples:
        return scores
    counted = Counter(flag for s in samples for flag in s["flags"])
    scores.flags = dict(sorted(counted.items()))
    scores.flagged_share = round(sum(bool(s["flags"]) for s in samples) / len(samples), 4)
    share, first = template_share([s["generated"] for s in samples])
    scores.template_share, scores.template = round(share, 4), first
    scores.generic_share = round(sum(is_generic(s["generated"]) for s in samples) / len(samples), 4)
    paired = [s for s in samples if s["reference"]]
    if paired:
        scores.rouge_l = sum(scorer.score(s["reference"], s["generated"])["rougeL"].fmeasure for s in paired) / len(
            paired)
        if embed is not None:
            refs = embed([s["reference"] for s in paired])
            gens = embed([s["generated"] or "." for s in paired])
            sims = [float(x) for x in (refs * gens).sum(axis=1)]
            scores.similarity, scores.similarity_ci = mean_ci(sims)
    return scores


def score(model: torch.nn.Module, tokenizer: Any, conversations: Sequence[list[dict[str, str]]],
          generate: int = 0, embed: Any = None, prompts: Sequence[list[dict[str, str]]] = (),
          progress: Callable[[], None] | None = None) -> ToneScores:
    """Perplexity of the real agent replies of *conversations*, and *generate* replies scored."""
    ppl = perplexity(model, tokenizer, conversations) if conversations else math.nan
    if not generate:
        return ToneScores(ppl)
    scores = reply_scores(model, tokenizer, reply_contexts(conversations, prompts)[:generate], embed,
                          progress=progress)
    scores.perplexity = ppl
    return scores


def gate(candidate: ToneScores, live: ToneScores, margin: float) -> tuple[bool, str]:
    """Passes when the candidate's perplexity is at least *margin* (a fraction) below the live model's."""
    needed = live.perplexity * (1 - margin)
    if candidate.perplexity <= needed:
        return True, f"perplexity {candidate.perplexity:.1f} ≤ {needed:.1f} (live {live.perplexity:.1f} − {margin:.0%})"
    return False, (f"perplexity {candidate.perplexity:.1f} is not {margin:.0%} below the live model's "
                   f"{live.perplexity:.1f}: not promoted (use --force to promote anyway)")
