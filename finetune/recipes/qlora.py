"""QLoRA: the base model quantised to 4-bit NF4 (double quantisation, bf16 compute) by
bitsandbytes, frozen, with LoRA adapters trained on top.

On CPU this works with bitsandbytes 0.50.2, but see finetune/quantized_cpu.py: a 4-bit model
must never be evaluated outside ``evaluating()`` if it is to be trained again.
"""

from __future__ import annotations

from pathlib import Path

import torch

from finetune.recipes.base import load_causal_lm, training_dtype
from finetune.recipes.lora import lora_config
from finetune.train_config import TrainConfig


class QLoRA:
    name = "qlora"
    saves_adapter = True

    def build(self, base_path: Path, config: TrainConfig, device: str) -> torch.nn.Module:
        from peft import get_peft_model, prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        compute = training_dtype(device)
        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
        model = load_causal_lm(base_path, device, compute, quantization_config=quantization)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
        return get_peft_model(model, lora_config(config))
