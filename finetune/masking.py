"""Tokenize a chat example with the model's own chat template, with loss on the agent's turns only.

The agent's text is located by rendering the template on growing prefixes of the conversation: the span of
an assistant message is what rendering it adds after the prompt that asks for it (the generation prompt).
That span is the reply plus the template's end-of-turn marker (<|im_end|> in ChatML), so the model also
learns to stop. Character spans are mapped to tokens with the fast tokenizer's offsets; every other token
(system, customer turns, role headers) gets label -100 and is ignored by the loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

IGNORE_INDEX = -100  # what torch's cross-entropy and transformers' trainers skip


class ChatTemplateError(ValueError):
    """The tokenizer's chat template cannot be used for agent-only loss."""


def agent_spans(messages: Sequence[dict[str, str]], tokenizer: Any) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns (reply + end marker)."""
    full = tokenizer.apply_chat_template(list(messages), tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = tokenizer.apply_chat_template(list(messages[:i]), tokenize=False, add_generation_prompt=True)
        upto = tokenizer.apply_chat_template(list(messages[: i + 1]), tokenize=False)
        if not (full.startswith(upto) and upto.startswith(prompt)):
            raise ChatTemplateError(
                "the chat template renders earlier turns differently as the conversation grows; "
                "agent-only loss needs a prefix-stable template"
            )
        end = len(upto.rstrip())  # the newline after the end marker belongs to the next turn's header
        spans.append((len(prompt), end))
    return full, spans


def tokenize_example(messages: Sequence[dict[str, str]], tokenizer: Any) -> dict[str, list[int]]:
    """``input_ids``, ``attention_mask`` and ``labels`` (-100 everywhere but on assistant turns)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ChatTemplateError("agent-only loss needs a fast tokenizer (character offsets)")
    text, spans = agent_spans(messages, tokenizer)
    # The rendered template already holds its special tokens as text: add none.
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = []
    span_index = 0
    for token_id, (start, end) in zip(encoded["input_ids"], encoded["offset_mapping"], strict=True):
        while span_index < len(spans) and start >= spans[span_index][1]:
            span_index += 1
        inside = span_index < len(spans) and spans[span_index][0] <= start < spans[span_index][1] and end > start
        labels.append(token_id if inside else IGNORE_INDEX)
    return {
        "input_ids": list(encoded["input_ids"]),
        "attention_mask": list(encoded["attention_mask"]),
        "labels": labels,
    }
