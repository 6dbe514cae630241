"""One training run, end to end: tickets → redacted dataset → recipe → training loop → evaluation
gate → adapter registry (→ live, when asked and the gate passes).

The run folder is named after the data and the configuration, so running the same command again
after a crash resumes from the last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from finetune.dataset import TRAIN_FILE, VALIDATION_FILE, load_examples
from finetune.evaluate import ToneScores, gate, score
from finetune.masking import tokenize_example
from finetune.prepare import prepare_dataset
from finetune.recipes import get_recipe
from finetune.registry import Adapter, AdapterRegistry
from finetune.train_config import TrainConfig
from finetune.trainer import Trainer, TrainResult
from supportbot.database import Database
from supportbot.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class TrainReport:
    run_dir: str
    method: str
    data_hash: str
    dataset: dict[str, Any]
    training: dict[str, Any]
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    adapter_mb: float = 0.0
    gate_passed: bool = False
    gate_reason: str = ""
    version: str | None = None
    promoted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def _registered_report(run_dir: Path, registry: AdapterRegistry) -> TrainReport | None:
    """The finished run's report, if its adapter is still in the registry."""
    try:
        report = TrainReport(**json.loads((run_dir / "report.json").read_text(encoding="utf-8")))
        if report.version:
            registry.get(report.version)
            return report
    except (OSError, ValueError, TypeError):
        pass  # no finished run (or the adapter was removed): train
    return None


def load_for_serving(settings: Settings, adapter: Path | None) -> torch.nn.Module:
    """The model as the bot serves it: the base model (bf16) with the adapter on top, or full weights."""
    from finetune.base_model import load_base_model

    if adapter is not None and not (adapter / "adapter_config.json").exists():
        model, _ = load_base_model(settings.model_copy(update={"base_model": str(adapter)}))
        return model
    model, _ = load_base_model(settings)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    return model


def train(
    tickets: Sequence[Path],
    config: TrainConfig,
    settings: Settings,
    db: Database,
    *,
    mapping: Mapping[str, str] | None = None,
    promote: bool = False,
    force: bool = False,
    margin: float = 0.02,
    generate: int = 8,
    reuse: bool = False,
    brands: Sequence[str] = (),
) -> TrainReport:
    """*reuse*: when this data and configuration were already trained and registered, return that
    run's report instead of training again (``supportbot compare`` does). *brands*: train only on the
    conversations of these brands/accounts/queues (one company's own agents in a multi-brand export)."""
    from transformers import AutoTokenizer

    from finetune.base_model import base_model_path

    base_path = base_model_path(settings)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    staging = settings.home / "training" / "staging"
    dataset_report = prepare_dataset(tickets, staging, settings, tokenizer, mapping, brands=brands)
    data_hash = dataset_report.content_sha256
    key = hashlib.sha256(json.dumps([data_hash, config.model_dump()], sort_keys=True).encode()).hexdigest()[:12]
    run_dir = settings.home / "training" / f"{config.method}-{key}"
    if reuse and (stored := _registered_report(run_dir, AdapterRegistry(db, settings.home))):
        shutil.rmtree(staging, ignore_errors=True)
        return stored
    data_dir = run_dir / "data"
    if not data_dir.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        staging.rename(data_dir)
    train_conversations = [e.messages for e in load_examples(data_dir / TRAIN_FILE)]
    validation_conversations = [e.messages for e in load_examples(data_dir / VALIDATION_FILE)]
    if not train_conversations:
        raise ValueError("no training examples left after import and hygiene: see the dataset report")

    def tokenized(conversations: list[list[dict[str, str]]]) -> list[dict[str, list[int]]]:
        out = []
        for messages in conversations:
            t = tokenize_example(messages, tokenizer)
            out.append({"input_ids": t["input_ids"][: config.max_seq_len], "labels": t["labels"][: config.max_seq_len]})
        return [e for e in out if any(label != -100 for label in e["labels"])]

    recipe = get_recipe(config.method)
    torch.manual_seed(config.seed)
    model = recipe.build(base_path, config, device())
    adapter_dir = run_dir / "best"

    def save(m: torch.nn.Module, target: Path) -> None:
        m.save_pretrained(target)
        if not recipe.saves_adapter:
            tokenizer.save_pretrained(target)

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    trainer = Trainer(model, config, tokenized(train_conversations), tokenized(validation_conversations),
                      run_dir, pad, device(), save)
    result: TrainResult = trainer.train(resume=True)
    del model, trainer  # free the training copy before loading the served ones

    report = TrainReport(str(run_dir), config.method, data_hash, dataset_report.to_dict(), result.to_dict(),
                         adapter_mb=round(_folder_mb(adapter_dir), 2))
    registry = AdapterRegistry(db, settings.home)
    live = registry.live().get("*")
    from ingestion.embed import get_embedder

    embed = get_embedder(settings).embed
    held_out = validation_conversations or train_conversations[:16]
    scored: dict[str, ToneScores] = {}
    for name, path in (("base", None), ("live", Path(live.path) if live else None), ("candidate", adapter_dir)):
        if name == "live" and live is None:
            continue
        started = time.perf_counter()
        scored[name] = score(load_for_serving(settings, path), tokenizer, held_out, generate, embed)
        log.warning("%s: perplexity %.1f (%.0f s)", name, scored[name].perplexity, time.perf_counter() - started)
    report.scores = {k: v.to_dict() for k, v in scored.items()}
    report.gate_passed, report.gate_reason = gate(scored["candidate"], scored.get("live", scored["base"]), margin)
    adapter: Adapter = registry.register(
        adapter_dir, method=config.method, base_model=str(settings.base_model or "smollm2-135m-instruct"),
        data_hash=data_hash, config=config.model_dump(),
        metrics={"scores": {k: {m: v for m, v in s.items() if m != "samples"} for k, s in report.scores.items()},
                 "training": {k: v for k, v in result.to_dict().items() if k not in ("train_losses",)},
                 "adapter_mb": report.adapter_mb, "gate_passed": report.gate_passed, "gate": report.gate_reason},
    )
    report.version = adapter.version
    if promote and (report.gate_passed or force):
        registry.promote(adapter.version)
        report.promoted = True
    (run_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    return report
