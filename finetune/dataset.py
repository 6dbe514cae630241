"""Build the chat-format training set from imported conversations: clean, redact, check, split, save.

Each kept conversation becomes one example, ``{"id", "source", "brand", "messages"}``, whose messages are
``[system, user, assistant, user, assistant, …]`` (user = customer, assistant = agent: the roles chat
templates know). Loss belongs on the assistant turns only: :func:`finetune.masking.tokenize_example`.

Order of the hygiene (nothing is stored before it): clean-up (:mod:`finetune.clean`), redaction
(:mod:`finetune.redact`), target rewriting (:mod:`finetune.targets`: links, contacts, names, prices, order
numbers out of the agent replies, counted per rule in ``report.targets``), then drops, each counted by reason:
``other_brand`` (``brands`` filter), ``empty``, ``no_customer_message``, ``no_agent_reply``, ``auto_reply_only``,
``no_target`` (no agent reply left a target), ``duplicate`` (exact or near-exact after normalising, see
:func:`finetune.hygiene.dedup_key`; the first one is kept) and ``too_long`` (more chat-template tokens
than ``max_tokens``), ``template`` (the first agent reply already at the template cap).
The split is by conversation id, so no conversation is on both sides.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from finetune.clean import CleanStats, clean_turn
from finetune.conversation import Conversation, ImportReport, Turn
from finetune.hygiene import dedup_key, is_auto_reply, tidy_turns
from finetune.masking import IGNORE_INDEX, tokenize_example
from finetune.redact import Redactor
from finetune.targets import TemplateCap, rewrite_turns
from supportbot.settings import Settings

TRAIN_FILE, VALIDATION_FILE, REPORT_FILE = "train.jsonl", "validation.jsonl", "report.json"
# Customer messages (redacted) of conversations that left no target: never trained on, so `eval tone` may
# generate replies for them (there is no real reply to compare with).
PROMPTS_FILE = "prompts.jsonl"
_CHAT_ROLES = {"customer": "user", "agent": "assistant"}


@dataclass(frozen=True)
class DatasetConfig:
    system_prompt: str = Settings.model_fields["finetune_system_prompt"].default
    max_tokens: int = Settings.model_fields["finetune_max_tokens"].default
    val_fraction: float = Settings.model_fields["finetune_val_fraction"].default
    seed: int = Settings.model_fields["finetune_seed"].default
    keep_handles: tuple[str, ...] = ()  # besides the brands named in the conversations
    template_cap: int = 3  # near-identical agent replies kept as targets (finetune.targets.TemplateCap)
    pleasantry_share: float = 0.05  # of the targets that may hold each class of pleasantry (TemplateCap.shape)
    brands: tuple[str, ...] = ()  # only conversations with these brands/accounts/queues (any case); empty: all

    @classmethod
    def from_settings(cls, settings: Settings) -> DatasetConfig:
        return cls(
            system_prompt=settings.finetune_system_prompt,
            max_tokens=settings.finetune_max_tokens,
            val_fraction=settings.finetune_val_fraction,
            seed=settings.finetune_seed,
            keep_handles=tuple(h.strip() for h in settings.finetune_keep_handles.split(",") if h.strip()),
        )


@dataclass
class Example:
    id: str
    source: str
    brand: str | None
    messages: list[dict[str, str]]

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)


@dataclass
class DatasetReport:
    conversations_in: int = 0
    examples: dict[str, int] = field(default_factory=lambda: {"train": 0, "validation": 0})
    dropped: Counter[str] = field(default_factory=Counter)
    pii_found: Counter[str] = field(default_factory=Counter)  # placeholder type → occurrences replaced
    # Target rewriting (finetune.targets): rule → sentences dropped or rewritten, turns left without a target,
    # replies over the template cap.
    targets: Counter[str] = field(default_factory=Counter)
    cleaned: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    imports: list[dict[str, Any]] = field(default_factory=list)  # ImportReport per file, bad rows included
    seconds: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # file name → sha256
    content_sha256: str = ""  # of the saved training data, see dataset_sha256()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["dropped"], data["pii_found"] = dict(sorted(self.dropped.items())), dict(sorted(self.pii_found.items()))
        data["targets"] = dict(sorted(self.targets.items()))
        return data


@dataclass
class Dataset:
    train: list[Example]
    validation: list[Example]
    report: DatasetReport
    prompts: list[Example] = field(default_factory=list)


def validation_ids(ids: Iterable[str], fraction: float, seed: int) -> set[str]:
    """The held-out conversation ids: the first ``fraction`` of the ids ranked by a seeded hash, so the split
    depends only on the ids and the seed (not on file order or the machine); at least one on each side when
    there are two or more conversations and *fraction* > 0."""
    unique = sorted(set(ids))
    if fraction <= 0 or len(unique) < 2:
        return set()
    count = min(len(unique) - 1, max(1, round(len(unique) * fraction)))
    ranked = sorted(unique, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    return set(ranked[:count])


def _prepare(
    conversation: Conversation, redactor: Redactor, brands: frozenset[str], clean: CleanStats, report: DatasetReport,
    prompts: list[list[Turn]],
) -> list[Turn] | str:
    """The conversation's cleaned, redacted, tidied turns, or the reason it is dropped."""
    turns = []
    for turn in conversation.turns:
        cleaned = clean_turn(turn, clean)
        redaction = redactor.redact(cleaned.text, keep_handles=brands, customer_ids=conversation.customer_ids)
        report.pii_found.update(redaction.found)
        turns.append(Turn(cleaned.role, redaction.text))
    if not any(t.text for t in turns):
        return "empty"
    if not any(t.text for t in turns if t.role == "customer"):
        return "no_customer_message"
    if not any(t.text for t in turns if t.role == "agent"):
        return "no_agent_reply"
    if all(is_auto_reply(t.text) for t in turns if t.role == "agent" and t.text):
        return "auto_reply_only"
    tidied = tidy_turns(turns)
    turns = tidy_turns(rewrite_turns(tidied, report.targets))
    if not any(t.role == "agent" for t in turns):
        prompts.append(_first_question(tidied))
        return "no_target"  # every agent reply was links, contacts or names (see report.targets)
    return turns


def _first_question(turns: list[Turn]) -> list[Turn]:
    """The customer turns before the first agent reply."""
    return turns[: next((i for i, t in enumerate(turns) if t.role == "agent"), len(turns))]


def _capped(turns: list[Turn], cap: TemplateCap, report: DatasetReport) -> list[Turn]:
    """*turns* up to the first agent reply whose template is already at the cap; agent replies without the
    pleasantries over their share (:meth:`TemplateCap.shape`)."""
    out: list[Turn] = []
    for turn in turns:
        if turn.role == "agent":
            text = cap.shape(turn.text, report.targets)
            if not cap.admit(text):
                report.targets["template"] += 1
                return tidy_turns(out)
            turn = Turn("agent", text)
        out.append(turn)
    return out


def build_dataset(
    conversations: Sequence[Conversation],
    tokenizer: Any,
    config: DatasetConfig | None = None,
    imports: Sequence[ImportReport] = (),
) -> Dataset:
    """Hygiene, examples and split; *tokenizer* (with a chat template) measures lengths."""
    config = config or DatasetConfig()
    report = DatasetReport(conversations_in=len(conversations), config=asdict(config))
    report.imports = [r.to_dict() for r in imports]
    brands = frozenset(c.brand for c in conversations if c.brand)
    redactor = Redactor(keep_handles=config.keep_handles)
    clean = CleanStats()
    seen: set[str] = set()
    cap = TemplateCap(config.template_cap, pleasantry_share=config.pleasantry_share)
    unused: list[tuple[Conversation, list[Turn]]] = []
    wanted = {b.lstrip("@").lower() for b in config.brands}
    kept: list[Example] = []
    lengths, agent_tokens = [], 0
    started = time.perf_counter()
    for conversation in conversations:
        if wanted and (conversation.brand or "").lstrip("@").lower() not in wanted:
            report.dropped["other_brand"] += 1
            continue
        found: list[list[Turn]] = []
        turns = _prepare(conversation, redactor, brands, clean, report, found)
        unused += [(conversation, p) for p in found]
        if isinstance(turns, str):
            report.dropped[turns] += 1
            continue
        key = dedup_key(turns)
        if key in seen:
            report.dropped["duplicate"] += 1
            continue
        seen.add(key)
        first = _first_question(turns)
        turns = _capped(turns, cap, report)
        if not turns:
            report.dropped["template"] += 1
            unused.append((conversation, first))
            continue
        messages = [{"role": "system", "content": config.system_prompt}]
        messages += [{"role": _CHAT_ROLES[t.role], "content": t.text} for t in turns]
        encoded = tokenize_example(messages, tokenizer)
        if len(encoded["input_ids"]) > config.max_tokens:
            report.dropped["too_long"] += 1
            continue
        lengths.append(len(encoded["input_ids"]))
        agent_tokens += sum(label != IGNORE_INDEX for label in encoded["labels"])
        kept.append(Example(conversation.id, conversation.source, conversation.brand, messages))
    report.cleaned = asdict(clean)
    held_out = validation_ids((e.id for e in kept), config.val_fraction, config.seed)
    train = [e for e in kept if e.id not in held_out]
    validation = [e for e in kept if e.id in held_out]
    report.examples = {"train": len(train), "validation": len(validation)}
    if lengths:
        report.tokens = {
            "max": max(lengths),
            "mean": round(statistics.fmean(lengths), 1),
            "total": sum(lengths),
            "agent": agent_tokens,
        }
    report.seconds["build"] = round(time.perf_counter() - started, 2)
    system = [{"role": "system", "content": config.system_prompt}]
    prompts = [Example(c.id, c.source, c.brand, system + [{"role": "user", "content": t.text} for t in turns])
               for c, turns in unused if turns]
    return Dataset(train, validation, report, prompts)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # a reader never sees half a file


def dataset_sha256(folder: str | Path) -> str:
    """The content hash of a saved dataset: sha256 over "name sha256" lines of its train and validation files,
    so the adapter registry can record it and check a folder later."""
    folder = Path(folder)
    lines = "".join(
        f"{name} {hashlib.sha256((folder / name).read_bytes()).hexdigest()}\n" for name in (TRAIN_FILE, VALIDATION_FILE)
    )
    return hashlib.sha256(lines.encode()).hexdigest()


def save_dataset(dataset: Dataset, folder: str | Path) -> str:
    """Write train.jsonl, validation.jsonl and report.json into *folder*; returns the content hash."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, examples in ((TRAIN_FILE, dataset.train), (VALIDATION_FILE, dataset.validation),
                           (PROMPTS_FILE, dataset.prompts)):
        data = "".join(f"{e.to_json()}\n" for e in examples).encode()
        _write(folder / name, data)
        if name != PROMPTS_FILE:
            dataset.report.files[name] = hashlib.sha256(data).hexdigest()
    dataset.report.content_sha256 = dataset_sha256(folder)
    _write(folder / REPORT_FILE, (json.dumps(dataset.report.to_dict(), indent=2, ensure_ascii=False) + "\n").encode())
    return dataset.report.content_sha256


def load_examples(path: str | Path) -> list[Example]:
    """Read a saved train/validation file back."""
    with Path(path).open(encoding="utf-8") as handle:
        return [Example(**json.loads(line)) for line in handle if line.strip()]
