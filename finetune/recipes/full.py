"""Full fine-tuning: every weight trains (fp32 master weights; sensible for small models only)."""

from __future__ import annotations

from pathlib import Path

import torch

from finetune.recipes.base import load_causal_lm
from finetune.train_config import TrainConfig


class FullFineTune:
    name = "full"
    saves_adapter = False

    def build(self, base_path: Path, config: TrainConfig, device: str) -> torch.nn.Module:
        # fp32: bf16 weights lose small AdamW updates; 135M parameters × 16 bytes fit easily.
        model = load_causal_lm(base_path, device, torch.float32)
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        model.train()
        return model
