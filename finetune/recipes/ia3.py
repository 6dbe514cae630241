"""(IA)^3: learned rescaling vectors on keys, values and the feed-forward output — about a
hundred times fewer trainable parameters than LoRA."""

from __future__ import annotations

from pathlib import Path

import torch

from finetune.recipes.base import load_causal_lm, training_dtype
from finetune.train_config import TrainConfig


class IA3:
    name = "ia3"
    saves_adapter = True

    def build(self, base_path: Path, config: TrainConfig, device: str) -> torch.nn.Module:
        from peft import IA3Config, get_peft_model

        model = load_causal_lm(base_path, device, training_dtype(device))
        ia3 = IA3Config(
            target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"], task_type="CAUSAL_LM"
        )
        return get_peft_model(model, ia3)
