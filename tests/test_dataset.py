"""The training set: hygiene drops by reason, PII report, split by conversation, agent-only loss masks with the
packaged model's real tokenizer, and saved files with their content hash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from finetune.dataset import (
    DatasetConfig,
    build_dataset,
    dataset_sha256,
    load_examples,
    save_dataset,
    validation_ids,
)
from finetune.hygiene import dedup_key, is_auto_reply, tidy_turns
from finetune.masking import IGNORE_INDEX, tokenize_example
from finetune.prepare import prepare_dataset
from finetune.tickets import Conversation, Turn
from supportbot.settings import get_settings


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    """The packaged SmolLM2's tokenizer (converted once into the test home, ~20 s)."""
    from transformers import AutoTokenizer

    from finetune.base_model import base_model_path

    return AutoTokenizer.from_pretrained(base_model_path(get_settings()))


def conv(id_: str, *turns: tuple[str, str], brand: str | None = "AcmeHelp", ids: tuple[str, ...] = ()) -> Conversation:
    return Conversation(id_, f"fixture {id_}", [Turn(r, t) for r, t in turns], brand, ids)  # type: ignore[arg-type]


def support_conversations() -> list[Conversation]:
    return [
        conv(
            "kettle",
            ("customer", "@AcmeHelp my kettle won't switch on, email me at sam.lee@example.com"),
            ("agent", "@samlee88 Sorry to hear that, Sam! Is the base plugged in? *JD"),
            ("customer", "@AcmeHelp yes, the light is on"),
            ("customer", "and I tried another socket"),
            ("agent", "@samlee88 Thanks. Please hold the button for 3 seconds: https://help.acme.com/kb/kettle-reset"),
            ids=("samlee88",),
        ),
        conv(
            "kettle-again",  # the same exchange, differing only in case, spacing, punctuation and digits
            ("customer", "@AcmeHelp My kettle won't switch on,  email me at sam.lee@example.com!"),
            ("agent", "@samlee88 sorry to hear that, Sam. Is the base plugged in? *JD"),
            ("customer", "@AcmeHelp Yes the light is on"),
            ("customer", "and I tried another socket"),
            ("agent", "@samlee88 Thanks! Please hold the button for 5 seconds: https://help.acme.com/kb/kettle-reset"),
            ids=("samlee88",),
        ),
        conv("auto", ("customer", "I was charged twice"), ("agent", "Thanks for reaching out! We've sent you a DM.")),
        conv("silent", ("customer", "@AcmeHelp hello??? call me on (415) 555-0132")),
        conv("empty", ("customer", "@AcmeHelp"), ("agent", "   ")),
        conv("no-question", ("agent", "Our stores open at 9 tomorrow.")),
        conv(
            "long",
            ("customer", "Here is my whole log: " + "error line " * 400),
            ("agent", "Thanks, we're looking at the log for you now."),
        ),
        conv(
            "refund",
            ("customer", "Refund my card 4111 1111 1111 1111 please, order #A1234567"),
            ("agent", "Hi Sam, the refund is on its way and shows in 3-5 days. ^Ana"),
        ),
    ]


def test_hygiene_drops_by_reason_and_counts_pii(tokenizer: Any) -> None:
    dataset = build_dataset(support_conversations(), tokenizer, DatasetConfig(max_tokens=512, val_fraction=0))
    report = dataset.report
    assert report.conversations_in == 8 and report.examples == {"train": 2, "validation": 0}
    assert report.dropped == {
        "duplicate": 1,
        "auto_reply_only": 1,
        "no_agent_reply": 1,
        "empty": 1,
        "no_customer_message": 1,
        "too_long": 1,
    }
    assert report.pii_found["EMAIL"] == 2 and report.pii_found["PHONE"] == 1 and report.pii_found["CARD"] == 1
    assert report.pii_found["NAME"] >= 3 and report.pii_found["ACCOUNT_ID"] == 1
    assert report.cleaned["signatures"] == 3 and report.cleaned["addressing"] >= 6

    kettle, refund = dataset.train
    assert kettle.id == "kettle" and kettle.brand == "AcmeHelp"
    assert [m["role"] for m in kettle.messages] == ["system", "user", "assistant"]
    assert kettle.messages[0]["content"] == DatasetConfig().system_prompt
    assert kettle.messages[1]["content"] == "my kettle won't switch on, email me at <EMAIL>"
    # The target loses the customer's name; the second reply was a link and "Thanks.": no target, so the
    # conversation ends before it (finetune.targets).
    assert kettle.messages[2]["content"] == "Sorry to hear that! Is the base plugged in?"
    assert refund.messages[1]["content"] == "Refund my card <CARD> please, order <ACCOUNT_ID>"
    assert refund.messages[2]["content"] == "Hi there, the refund is on its way and shows in 3-5 days."
    assert report.targets == {"link": 2, "nothing_left": 2, "name": 3}  # the duplicate is rewritten too
    assert report.tokens["max"] <= 512 and report.tokens["agent"] > 0


def test_split_keeps_each_conversation_on_one_side(tokenizer: Any) -> None:
    topics = ["password", "refund", "delivery", "invoice", "login", "battery", "screen", "wifi", "update", "app"]
    devices = ["phone", "tablet", "laptop", "watch"]  # distinct words: digits alone would make near-duplicates
    conversations = [
        conv(
            f"{device}-{topic}",
            ("customer", f"My {device} {topic} stopped working after the {topic} change."),
            ("agent", f"Sorry about the {topic} trouble! Restart the {device}, then check the {topic} settings."),
            ("customer", f"Still broken, the {device} shows nothing."),
            ("agent", f"Thanks for trying. Let's reset the {topic} cache on your {device}."),
        )
        for device in devices
        for topic in topics
    ]
    config = DatasetConfig(val_fraction=0.25, seed=7)
    dataset = build_dataset(conversations, tokenizer, config)
    train_ids = {e.id for e in dataset.train}
    val_ids = {e.id for e in dataset.validation}
    assert not train_ids & val_ids
    assert len(train_ids) + len(val_ids) == 40 and len(val_ids) == 10
    again = build_dataset(list(reversed(conversations)), tokenizer, config)
    assert {e.id for e in again.validation} == val_ids  # independent of input order
    other = validation_ids(train_ids | val_ids, 0.25, seed=8)
    assert other != val_ids and len(other) == 10
    assert validation_ids(["only"], 0.5, 1) == set() and len(validation_ids(["a", "b"], 0.01, 1)) == 1


def test_agent_only_loss_mask_decodes_to_agent_text(tokenizer: Any) -> None:
    messages = [
        {"role": "system", "content": DatasetConfig().system_prompt},
        {"role": "user", "content": "My app crashes when I open the camera."},
        {"role": "assistant", "content": "Sorry about that! Which version of the app are you on?"},
        {"role": "user", "content": "4.2.1 on Android 14"},
        {"role": "assistant", "content": "Thanks! Please update to 4.3, which fixes the camera crash."},
    ]
    encoded = tokenize_example(messages, tokenizer)
    ids, labels = encoded["input_ids"], encoded["labels"]
    assert len(ids) == len(labels) == len(encoded["attention_mask"])
    assert ids == tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
    runs: list[list[int]] = []
    for index, label in enumerate(labels):
        if label == IGNORE_INDEX:
            continue
        assert label == ids[index]
        if index and labels[index - 1] != IGNORE_INDEX:
            runs[-1].append(label)
        else:
            runs.append([label])
    decoded = [tokenizer.decode(run) for run in runs]
    end = tokenizer.eos_token  # SmolLM2: <|im_end|>, the end of an assistant turn
    assert decoded == [messages[2]["content"] + end, messages[4]["content"] + end]
    prompt = tokenizer.decode([i for i, label in zip(ids, labels, strict=True) if label == IGNORE_INDEX])
    assert "My app crashes" in prompt and "Sorry about that" not in prompt


def test_saved_files_and_content_hash(tokenizer: Any, tmp_path: Path) -> None:
    dataset = build_dataset(support_conversations(), tokenizer, DatasetConfig(val_fraction=0.5))
    digest = save_dataset(dataset, tmp_path / "a")
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["prompts.jsonl", "report.json", "train.jsonl", "validation.jsonl"]  # prompts: no target
    assert digest == dataset_sha256(tmp_path / "a") and len(digest) == 64
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["content_sha256"] == digest and report["dropped"]["duplicate"] == 1
    train = load_examples(tmp_path / "a" / "train.jsonl")
    validation = load_examples(tmp_path / "a" / "validation.jsonl")
    assert [e.id for e in train + validation] == [e.id for e in dataset.train + dataset.validation]
    saved = (tmp_path / "a" / "train.jsonl").read_text() + (tmp_path / "a" / "validation.jsonl").read_text()
    assert "sam.lee@example.com" not in saved and "samlee88" not in saved and "4111" not in saved
    rebuilt = build_dataset(support_conversations(), tokenizer, DatasetConfig(val_fraction=0.5))
    assert save_dataset(rebuilt, tmp_path / "b") == digest  # same input and config, same hash


def test_prepare_from_an_export_file(tokenizer: Any, tmp_path: Path) -> None:
    export = tmp_path / "tickets.csv"
    export.write_text(
        "ticket_id,customer_message,agent_reply\n"
        "1,My parcel is late. Reach me at +44 20 7946 0958,Sorry! It ships tomorrow.\n"
        "2,,\n"
        '3,Can I pay by invoice?,"Yes, choose Invoice at checkout."\n',
        encoding="utf-8",
    )
    report = prepare_dataset([export], tmp_path / "out", settings=get_settings(), tokenizer=tokenizer)
    assert report.imports[0]["bad_rows"] == [{"location": "line 3", "reason": "empty customer message and agent reply"}]
    assert report.examples["train"] + report.examples["validation"] == 2 and report.pii_found == {"PHONE": 1}
    assert report.content_sha256 == dataset_sha256(tmp_path / "out")


@pytest.mark.parametrize(
    ("text", "auto"),
    [
        ("Thanks for reaching out! We've sent you a DM.", True),
        ("Hi <NAME>! Please check your DMs.", True),
        ("We have received your message and will get back to you shortly.", True),
        ("Send us a DM with your order number and we'll take a look.", False),
        ("We've sent you a DM. Meanwhile, restart the console and clear the cache.", False),
        ("Thanks!", False),
    ],
)
def test_auto_reply_detection(text: str, auto: bool) -> None:
    assert is_auto_reply(text) is auto


def test_turn_tidying_and_dedup_key() -> None:
    turns = [
        Turn("agent", "Welcome!"),
        Turn("customer", "Hi"),
        Turn("customer", ""),
        Turn("customer", "my order?"),
        Turn("agent", "On its way."),
        Turn("customer", "thanks"),
    ]
    assert tidy_turns(turns) == [Turn("customer", "Hi\nmy order?"), Turn("agent", "On its way.")]
    a = [Turn("customer", "Order 12 is late!!"), Turn("agent", "Sorry, <NAME>: it ships today.")]
    b = [Turn("customer", "order 34 is   late"), Turn("agent", "sorry <name> it ships today")]
    c = [Turn("customer", "Order 12 is late"), Turn("agent", "It ships tomorrow.")]
    assert dedup_key(a) == dedup_key(b) != dedup_key(c)


def test_a_brand_filter_keeps_one_companys_agents(tokenizer: Any) -> None:
    conversations = [
        conv("acme", ("customer", "My kettle is broken"), ("agent", "Sorry to hear that! Is the base plugged in?")),
        conv("other", ("customer", "My sofa is torn"), ("agent", "We're sorry! Could you share a photo of it?"),
             brand="SofaCare"),
    ]
    dataset = build_dataset(conversations, tokenizer, DatasetConfig(val_fraction=0, brands=("@acmehelp",)))
    assert [e.id for e in dataset.train] == ["acme"] and dataset.report.dropped == {"other_brand": 1}
