"""A plain PyTorch training loop for every recipe: seeded, checkpointed and resumable, with a
progress bar (loss, ETA), periodic validation and early stopping on validation loss."""

from __future__ import annotations

import json
import logging
import math
import random
import resource
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from finetune.peak_memory import PeakMemory
from finetune.quantized_cpu import evaluating
from finetune.train_config import TrainConfig

log = logging.getLogger(__name__)

Example = dict[str, list[int]]  # input_ids and labels (-100 where no loss)


@dataclass
class TrainResult:
    steps: int = 0
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[tuple[int, float]] = field(default_factory=list)
    best_val_loss: float | None = None
    best_step: int | None = None
    stopped_early: bool = False
    resumed_from: int | None = None
    seconds: float = 0.0
    tokens: int = 0
    peak_memory_mb: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def collate(examples: Sequence[Example], pad_id: int, device: str) -> dict[str, torch.Tensor]:
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n] = torch.tensor(e["input_ids"])
        labels[row, :n] = torch.tensor(e["labels"])
        mask[row, :n] = 1
    return {"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}


def mean_loss(model: torch.nn.Module, examples: Sequence[Example], pad_id: int, device: str, batch_size: int) -> float:
    """Token-weighted mean cross-entropy over the labelled tokens (exp() of it is the perplexity)."""
    total, count = 0.0, 0
    with evaluating(model):
        for start in range(0, len(examples), batch_size):
            batch = collate(examples[start : start + batch_size], pad_id, device)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            shifted = batch["labels"][:, 1:]
            losses = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)), shifted.reshape(-1), ignore_index=-100, reduction="sum"
            )
            total += float(losses)
            count += int((shifted != -100).sum())
    return total / max(count, 1)


def peak_memory_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class Trainer:
    def __init__(
        self,
        model: torch.nn.Module,
        config: TrainConfig,
        train: Sequence[Example],
        validation: Sequence[Example],
        output_dir: Path,
        pad_id: int,
        device: str,
        save: Callable[[torch.nn.Module, Path], None],
    ) -> None:
        self.model, self.config, self.train_set, self.validation = model, config, list(train), list(validation)
        self.output_dir, self.pad_id, self.device, self.save = output_dir, pad_id, device, save
        self.checkpoints = output_dir / "checkpoints"
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters")
        self.params = params
        self.optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
        per_epoch = math.ceil(len(self.train_set) / config.batch_size / config.grad_accum)
        self.total_steps = max(1, math.ceil(per_epoch * config.epochs))
        if config.max_steps:
            self.total_steps = min(self.total_steps, config.max_steps)
        from transformers import get_linear_schedule_with_warmup

        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, int(config.warmup_ratio * self.total_steps), self.total_steps
        )

    # --- data order: a pure function of (seed, epoch), so a resumed run sees the same batches ---

    def _batches(self) -> list[list[Example]]:
        size = self.config.batch_size
        batches = []
        epoch = 0
        while len(batches) < self.total_steps * self.config.grad_accum:
            shuffle = torch.Generator().manual_seed(self.config.seed + epoch)
            order = torch.randperm(len(self.train_set), generator=shuffle)
            batches += [[self.train_set[i] for i in order[s : s + size].tolist()] for s in range(0, len(order), size)]
            epoch += 1
        return batches

    # --- checkpoints -------------------------------------------------------------------------

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        names = {id(p) for p in self.params}
        return {k: v for k, v in self.model.named_parameters() if id(v) in names}

    def _checkpoint(self, step: int, result: TrainResult) -> None:
        target = self.checkpoints / f"step-{step:06d}"
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        torch.save({k: v.detach().cpu() for k, v in self._trainable_state().items()}, partial / "trainable.pt")
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                    "rng": torch.get_rng_state()}, partial / "optimizer.pt")
        (partial / "state.json").write_text(json.dumps({"step": step, "result": result.to_dict()}))
        partial.rename(target)  # a checkpoint is complete or absent, even if the process dies here
        for old in sorted(self.checkpoints.glob("step-*"))[:-2]:
            if not old.name.endswith(".partial"):
                shutil.rmtree(old, ignore_errors=True)

    def _resume(self) -> tuple[int, TrainResult]:
        done = sorted(p for p in self.checkpoints.glob("step-*") if not p.name.endswith(".partial"))
        if not done:
            return 0, TrainResult()
        latest = done[-1]
        self.model.load_state_dict(torch.load(latest / "trainable.pt"), strict=False)
        state = torch.load(latest / "optimizer.pt", weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        saved = json.loads((latest / "state.json").read_text())
        result = TrainResult(**{**saved["result"], "val_losses": [tuple(v) for v in saved["result"]["val_losses"]]})
        result.resumed_from = saved["step"]
        log.warning("resuming from %s", latest)
        return saved["step"], result

    # --- the loop ------------------------------------------------------------------------------

    def train(self, resume: bool = True) -> TrainResult:
        seed_everything(self.config.seed)
        start_step, result = self._resume() if resume else (0, TrainResult())
        if start_step >= self.total_steps:
            return result
        batches = self._batches()
        started = time.perf_counter() - result.seconds
        patience = 0
        self.model.train()
        bar = tqdm(total=self.total_steps, initial=start_step, desc="training", unit="step", dynamic_ncols=True)
        with PeakMemory(self.device) as peak:
            for step in range(start_step, self.total_steps):
                self.optimizer.zero_grad(set_to_none=True)
                step_loss = 0.0
                for micro in range(self.config.grad_accum):
                    batch = collate(batches[step * self.config.grad_accum + micro], self.pad_id, self.device)
                    loss = self.model(**batch).loss / self.config.grad_accum
                    loss.backward()
                    step_loss += loss.item()
                    result.tokens += int(batch["attention_mask"].sum())
                torch.nn.utils.clip_grad_norm_(self.params, 1.0)
                self.optimizer.step()
                self.scheduler.step()
                result.steps = step + 1
                result.train_losses.append(round(step_loss, 5))
                bar.set_postfix(loss=f"{step_loss:.3f}")
                bar.update(1)
                last = result.steps == self.total_steps
                if self.validation and (result.steps % self.config.eval_every == 0 or last):
                    val = mean_loss(self.model, self.validation[: self.config.max_eval_examples], self.pad_id,
                                    self.device, self.config.batch_size)
                    result.val_losses.append((result.steps, round(val, 5)))
                    bar.set_postfix(loss=f"{step_loss:.3f}", val=f"{val:.3f}")
                    if result.best_val_loss is None or val < result.best_val_loss:
                        result.best_val_loss, result.best_step, patience = val, result.steps, 0
                        self.save(self.model, self.output_dir / "best")
                    else:
                        patience += 1
                        if self.config.early_stop_patience and patience >= self.config.early_stop_patience:
                            result.stopped_early = True
                            log.warning("early stop at step %d: validation loss has not improved", result.steps)
                result.seconds = time.perf_counter() - started
                result.peak_memory_mb = max(result.peak_memory_mb, peak.mb)
                if result.steps % self.config.checkpoint_every == 0 or last or result.stopped_early:
                    self._checkpoint(result.steps, result)
                if result.stopped_early:
                    break
        bar.close()
        if not self.validation:
            self.save(self.model, self.output_dir / "best")
        return result
