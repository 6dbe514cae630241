"""Training configuration: defaults, a YAML/JSON file, then ``key=value`` command-line overrides.

Without ``--config``, :data:`DEFAULT_CONFIG` (``finetune/configs/qlora-cpu.yaml``) is the file: the documented
recipe is the one that runs, and the run report names the file it read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

# Adapters take large steps; (IA)^3 scales start at 1.0 and need larger ones still; all weights small ones.
DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "qlora-cpu.yaml"
DEFAULT_LEARNING_RATES = {"qlora": 1e-3, "lora": 1e-3, "ia3": 3e-3, "full": 2e-5}


class TrainConfig(BaseModel, extra="forbid"):
    method: str = Field(default="qlora", description="qlora | lora | full | ia3")
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many optimizer steps.")
    learning_rate: float | None = Field(default=None, gt=0, description="Empty: the method's default.")
    batch_size: int = Field(default=4, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    max_seq_len: int = Field(default=256, ge=16)
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    seed: int = 42
    # LoRA / QLoRA
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    # Every linear layer: on the twitter tickets, attention-only LoRA at 2e-4 lowered validation
    # perplexity 48% in one epoch; all layers at 1e-3, about two thirds (bench/README.md).
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    # Evaluation, checkpoints, early stopping
    eval_every: int = Field(default=40, ge=1, description="Optimizer steps between validation passes.")
    checkpoint_every: int = Field(default=20, ge=1)
    early_stop_patience: int = Field(default=3, ge=0, description="Validation passes without improvement; 0 = off.")
    max_eval_examples: int = Field(default=48, ge=1)
    gradient_checkpointing: bool = False

    @model_validator(mode="after")
    def _method_defaults(self) -> TrainConfig:
        if self.learning_rate is None:
            self.learning_rate = DEFAULT_LEARNING_RATES.get(self.method, 2e-4)
        return self


def _coerce(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def load_config(path: Path | None = None, overrides: list[str] | None = None, **fixed: Any) -> TrainConfig:
    """Defaults ← file (*path*, else :data:`DEFAULT_CONFIG`) ← ``key=value`` overrides ← *fixed*; errors name
    the file or the key."""
    data: dict[str, Any] = {}
    path = path or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    if path:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"{path}: cannot read the training config: {exc}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: the training config must be a mapping of settings")
        data.update(loaded)
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r}: use key=value, e.g. learning_rate=1e-4")
        data[key.strip()] = _coerce(value.strip())
    data.update({k: v for k, v in fixed.items() if v is not None})
    try:
        return TrainConfig(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"training config: {where}: {first['msg']}") from None
