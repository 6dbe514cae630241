"""LoRA: low-rank adapters on the attention projections of the bf16 base model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from finetune.recipes.base import load_causal_lm, training_dtype
from finetune.train_config import TrainConfig

if TYPE_CHECKING:
    from peft import LoraConfig


def lora_config(config: TrainConfig) -> LoraConfig:
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        task_type="CAUSAL_LM",
    )


class LoRA:
    name = "lora"
    saves_adapter = True

    def build(self, base_path: Path, config: TrainConfig, device: str) -> torch.nn.Module:
        from peft import get_peft_model

        model = load_causal_lm(base_path, device, training_dtype(device))
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()
        return get_peft_model(model, lora_config(config))
