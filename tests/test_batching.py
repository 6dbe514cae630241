"""Continuous batching (bot/batching.py) with the real packaged SmolLM2 on CPU, in float32.

float32 because batched greedy decoding must give exactly the single-request answer, and bf16 matrix
products of a padded batch round differently (the answers may drift after a few tokens).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from langchain_core.messages import HumanMessage

from bot.batching import ContinuousBatcher
from bot.llm import LocalChatModel
from supportbot.settings import Settings

NEW_TOKENS = 16
# Different lengths on purpose: the batch left-pads them to a common width.
PROMPTS = [
    "How do I reset my password?",
    "What is the capital of France? Answer in one sentence.",
    "Write a haiku about a quiet desk fan.",
    "My order has not arrived after two weeks and the tracking page says it is stuck in customs. "
    "I already wrote to the carrier twice. What else can I do?",
    "Hi!",
    "Explain in two sentences why the sky is blue.",
    "The fan makes a clicking noise at the highest speed setting, but not at the lower ones. "
    "Is that normal, or should I send it back for repair?",
    "List three colours.",
]


@pytest.fixture(scope="module")
def batched() -> LocalChatModel:
    return LocalChatModel.from_settings(
        Settings(llm_dtype="float32"), max_new_tokens=NEW_TOKENS, batching="continuous", max_batch_size=16
    )


@pytest.fixture(scope="module")
def single(batched: LocalChatModel) -> LocalChatModel:
    """The single-lock path (plain ``model.generate``) on the same weights: the reference."""
    return LocalChatModel(model=batched.model, tokenizer=batched.tokenizer, max_new_tokens=NEW_TOKENS, batching="off")


@pytest.fixture(scope="module")
def references(single: LocalChatModel) -> list[str]:
    """Each prompt's greedy answer generated alone."""
    return [single.invoke([HumanMessage(p)]).content for p in PROMPTS]


def streamed(chat: LocalChatModel, prompt: str, **kwargs: object) -> str:
    return "".join(str(c.content) for c in chat.stream([HumanMessage(prompt)], **kwargs))


def prompt_ids(chat: LocalChatModel, prompt: str) -> list[int]:
    chat_ids = chat.tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, return_dict=True
    )
    return chat_ids["input_ids"]


def greedy_tokens(chat: LocalChatModel, ids: list[int], new_tokens: int) -> list[int]:
    """The new tokens of a plain single-request ``generate`` (greedy)."""
    output = chat.model.generate(
        torch.tensor([ids]), max_new_tokens=new_tokens, do_sample=False, pad_token_id=chat.tokenizer.pad_token_id
    )
    return output[0, len(ids) :].tolist()


def test_eight_concurrent_streams_equal_their_single_answers(batched: LocalChatModel, references: list[str]) -> None:
    steps = batched.batcher.steps
    start = threading.Barrier(len(PROMPTS))

    def one(prompt: str) -> str:
        start.wait()  # submitted together, so that they really share the forward passes
        return streamed(batched, prompt)

    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        answers = list(pool.map(one, PROMPTS))
    assert answers == references
    assert all(a.strip() for a in answers)
    # Decoded together: far fewer forward passes than one per token of every answer.
    assert batched.batcher.steps - steps < len(PROMPTS) * NEW_TOKENS / 2


def test_a_request_joins_while_another_decodes(
    batched: LocalChatModel, single: LocalChatModel, references: list[str]
) -> None:
    batcher: ContinuousBatcher = batched.batcher
    long_ids, short_ids = prompt_ids(batched, PROMPTS[3]), prompt_ids(batched, PROMPTS[1])
    long_ref = greedy_tokens(single, long_ids, 32)
    assert len(long_ref) == 32  # no early EOS: it is still decoding when the second request arrives

    first = batcher.submit(long_ids, max_new_tokens=32)
    tokens: Iterator[int] = iter(first)
    head = [next(tokens) for _ in range(3)]  # the first one is decoding now
    second = batcher.submit(short_ids, max_new_tokens=NEW_TOKENS)
    second_tokens = list(second)
    first_tokens = head + list(tokens)

    assert second.joined_running == 1  # it joined the running batch instead of waiting for the first
    assert first_tokens == long_ref  # and did not disturb it
    assert batched.tokenizer.decode(second_tokens, skip_special_tokens=True) == references[1]
    assert first.finish_reason in {"stop", "length"} and second.finish_reason in {"stop", "length"}


def test_cancelling_one_stream_leaves_the_others_unchanged(batched: LocalChatModel, references: list[str]) -> None:
    cancelled = batched.batcher.cancelled
    start = threading.Barrier(3)

    def abandon() -> str:
        start.wait()
        stream = batched.stream([HumanMessage(PROMPTS[6])], max_new_tokens=96)
        first = str(next(stream).content)
        stream.close()  # the client went away mid-answer
        return first

    def complete(i: int) -> str:
        start.wait()
        return streamed(batched, PROMPTS[i])

    with ThreadPoolExecutor(3) as pool:
        gone = pool.submit(abandon)
        kept = [pool.submit(complete, 0), pool.submit(complete, 2)]
        assert gone.result(timeout=120)
        assert [k.result(timeout=120) for k in kept] == [references[0], references[2]]
    assert batched.batcher.cancelled == cancelled + 1
    assert batched.batcher.running == 0


def test_stop_strings_and_limits_in_a_batch(batched: LocalChatModel, references: list[str]) -> None:
    reference = references[3]
    stop = reference.split()[4]  # a word from the middle: its first occurrence bounds the answer
    expected = reference[: reference.index(stop)]
    messages = [HumanMessage(PROMPTS[3])]
    with ThreadPoolExecutor(4) as pool:
        cut = pool.submit(batched.invoke, messages, stop=[stop])
        cut_stream = pool.submit(lambda: list(batched.stream(messages, stop=[stop])))
        short = pool.submit(batched.invoke, messages, max_new_tokens=5)
        other = pool.submit(streamed, batched, PROMPTS[5])

        assert cut.result(timeout=120).content == expected
        assert cut.result().response_metadata["finish_reason"] == "stop"
        chunks = cut_stream.result(timeout=120)
        assert "".join(str(c.content) for c in chunks) == expected
        assert chunks[-1].response_metadata["finish_reason"] == "stop"
        reply = short.result(timeout=120)
        assert reply.usage_metadata["output_tokens"] == 5
        assert reply.response_metadata["finish_reason"] == "length"
        assert reference.startswith(reply.content)
        assert other.result(timeout=120) == references[5]


def test_sampling_and_greedy_rows_share_a_batch(batched: LocalChatModel, single: LocalChatModel) -> None:
    batcher: ContinuousBatcher = batched.batcher
    ids = prompt_ids(batched, PROMPTS[2])
    sampled = [batcher.submit(ids, max_new_tokens=8, temperature=0.8, top_p=0.9) for _ in range(2)]
    greedy = batcher.submit(ids, max_new_tokens=8)
    for generation in [*sampled, greedy]:
        assert 1 <= len(list(generation)) <= 8
    assert greedy.tokens == greedy_tokens(single, ids, 8)  # the sampled rows did not leak into it
    vocabulary = len(batched.tokenizer)
    assert all(0 <= t < vocabulary for g in sampled for t in g.tokens)


def test_the_single_lock_path_stays_selectable(single: LocalChatModel, references: list[str]) -> None:
    assert Settings(batching="off").batching == "off"  # SUPPORTBOT_BATCHING=off
    assert streamed(single, PROMPTS[0]) == references[0]
    assert single._batcher is None  # never started a scheduler
