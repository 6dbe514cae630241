"""Fine-tuning with the real packaged SmolLM2 on CPU, no mocks: every recipe end to end, the QLoRA CPU
trap, a stored QLoRA loss curve, resuming after a crash, the adapter registry behind the bot, and
`supportbot train`. Everything is tiny (8 chats of ~50 tokens, 2-4 steps) so the module stays within
minutes on two cores."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from bot.adapters import LiveAdapters
from bot.cli import app
from finetune.base_model import base_model_path, load_base_model
from finetune.masking import tokenize_example
from finetune.quantized_cpu import unpack_4bit_for_training
from finetune.recipes import get_recipe
from finetune.registry import AdapterRegistry, RegistryError
from finetune.train_config import TrainConfig
from finetune.trainer import Trainer, TrainResult, collate, mean_loss
from supportbot.settings import Settings, get_settings

CHATS = [  # (customer, agent): short, so that a training step takes seconds
    ("My kettle will not switch on.", "Sorry about that! Is the base plugged in firmly?"),
    ("Where is my parcel?", "It left our depot this morning and should arrive tomorrow."),
    ("Can I change my delivery address?", "Yes, open your order page and choose Edit address."),
    ("The app keeps crashing on login.", "Please update to the latest version and try again."),
    ("How do I reset my password?", "Tap Forgot password on the sign-in screen and follow the email."),
    ("Do you ship to Canada?", "We do, and shipping takes about a week."),
    ("My order arrived damaged.", "We are sorry! Send us a photo and we will replace it."),
    ("Can I pay with PayPal?", "Absolutely, PayPal is available at checkout."),
]
PROMPT = [{"role": "user", "content": "How do I reset my password?"}]
MAX_SEQ_LEN = 64

# Steps per method. qlora and lora run 4: the stored loss curve, and the uninterrupted run a resumed one
# must reproduce. 8 chats in batches of 2 make 4 steps per epoch.
STEPS = {"qlora": 4, "lora": 4, "full": 2, "ia3": 2}

# The QLoRA curve of run_config("qlora") on CHATS (seed 42, torch 2.13 CPU, bitsandbytes 0.50.2, bf16 compute).
# After an intended change, regenerate: .venv/bin/python -m pytest tests/test_finetune.py -k loss_curve -s
# prints the new curve ("QLORA_LOSSES = [...]"); paste it here.
QLORA_LOSSES = [3.55077, 4.24483, 4.62834, 4.55306]


def run_config(method: str, **overrides: Any) -> TrainConfig:
    # Learning rate and targets pinned: the stored QLoRA curve was taken with them.
    settings = {"method": method, "batch_size": 2, "max_seq_len": MAX_SEQ_LEN, "max_steps": STEPS.get(method),
                "learning_rate": 2e-4, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
    if method == "ia3":
        # (IA)^3's usual rate. At the default 2e-4, two steps move its scales (init 1.0) by ~4e-4, less than
        # half a bf16 step near 1, so the bf16 model computes exactly what the base does.
        settings["learning_rate"] = 3e-3
    return TrainConfig(**{**settings, **overrides})


def tokenized(tokenizer: Any, chats: list[tuple[str, str]]) -> list[dict[str, list[int]]]:
    examples = []
    for customer, agent in chats:
        tokens = tokenize_example([{"role": "user", "content": customer}, {"role": "assistant", "content": agent}],
                                  tokenizer)
        examples.append({k: tokens[k][:MAX_SEQ_LEN] for k in ("input_ids", "labels")})
    assert all(any(label != -100 for label in e["labels"]) for e in examples)  # the reply fits in MAX_SEQ_LEN
    return examples


def pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


@dataclass
class Run:
    model: torch.nn.Module | None
    result: TrainResult
    out: Path


def build(method: str, config: TrainConfig, base_path: Path) -> torch.nn.Module:
    torch.manual_seed(config.seed)  # fresh adapter weights are seeded, as in finetune.train
    return get_recipe(method).build(base_path, config, "cpu")


def make_trainer(model: torch.nn.Module, config: TrainConfig, tokenizer: Any, examples: list, out: Path) -> Trainer:
    recipe = get_recipe(config.method)

    def save(m: torch.nn.Module, target: Path) -> None:  # as finetune.train saves
        m.save_pretrained(target)
        if not recipe.saves_adapter:
            tokenizer.save_pretrained(target)

    return Trainer(model, config, examples, [], out, pad_id(tokenizer), "cpu", save)


@pytest.fixture(scope="module")
def base_path() -> Path:
    return base_model_path(get_settings())  # converted once per test session into the test home


@pytest.fixture(scope="module")
def tokenizer(base_path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_path)


@pytest.fixture(scope="module")
def examples(tokenizer: Any) -> list[dict[str, list[int]]]:
    return tokenized(tokenizer, CHATS)


@pytest.fixture(scope="module")
def runs(base_path: Path, tokenizer: Any, examples: list, tmp_path_factory: pytest.TempPathFactory
         ) -> Callable[[str], Run]:
    """One training run per method, done when first asked for and shared by the tests that read it."""
    done: dict[str, Run] = {}

    def get(method: str) -> Run:
        if method not in done:
            config = run_config(method)
            out = tmp_path_factory.mktemp(method)
            model = build(method, config, base_path)
            result = make_trainer(model, config, tokenizer, examples, out).train()
            # Only the QLoRA model is kept: the trap test trains it again after an evaluation.
            done[method] = Run(model if method == "qlora" else None, result, out)
        return done[method]

    return get


def prompt_inputs(tokenizer: Any) -> dict[str, torch.Tensor]:
    return tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_dict=True, return_tensors="pt")


# --- 1. every method, end to end ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["qlora", "lora", "full", "ia3"])
def test_each_method_trains_and_what_it_saves_loads_and_generates(
    method: str, runs: Callable[[str], Run], tokenizer: Any
) -> None:
    run = runs(method)
    assert run.result.steps == STEPS[method] and run.result.resumed_from is None
    assert len(run.result.train_losses) == STEPS[method] and all(math.isfinite(x) for x in run.result.train_losses)
    saved = run.out / "best"
    inputs = prompt_inputs(tokenizer)
    model, _ = load_base_model(get_settings(), device="cpu")  # a fresh base model, as the bot loads it
    with torch.no_grad():
        base_logits = model(**inputs).logits[0, -1]
    if get_recipe(method).saves_adapter:
        from peft import PeftModel

        assert (saved / "adapter_config.json").exists()
        model = PeftModel.from_pretrained(model, str(saved)).eval()
    else:
        from transformers import AutoModelForCausalLM

        assert not (saved / "adapter_config.json").exists()
        model = AutoModelForCausalLM.from_pretrained(saved, dtype=torch.bfloat16).eval()
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
        output = model.generate(**inputs, max_new_tokens=8, do_sample=False, pad_token_id=pad_id(tokenizer))
    assert not torch.equal(logits, base_logits)  # the trained weights were saved, and loaded
    new = output[0, inputs["input_ids"].shape[1]:]
    assert len(new) > 0 and tokenizer.decode(new, skip_special_tokens=True).strip()


# --- 2. the QLoRA trap on CPU ----------------------------------------------------------------------


class Dequantized(torch.nn.Module):
    """A 4-bit layer's weights, dequantized once, as a plain matmul in its compute dtype."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else torch.nn.Parameter(bias.detach().to(weight.dtype), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x.to(self.weight.dtype), self.weight, self.bias).to(x.dtype)


def rel_diff(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> float:
    """‖actual − expected‖ / ‖expected‖ over all LoRA gradients together."""
    assert actual.keys() == expected.keys()
    num = sum(float((actual[k].float() - expected[k].float()).norm() ** 2) for k in expected)
    return math.sqrt(num / sum(float(expected[k].float().norm() ** 2) for k in expected))


def is_packed(layer: torch.nn.Module) -> bool:
    return bool(getattr(layer.weight.quant_state, "packing_format_for_cpu", False))


def input_grad_flows(layer: torch.nn.Module) -> bool:
    x = torch.randn(1, layer.in_features, requires_grad=True)
    layer(x).float().sum().backward()
    return x.grad is not None and bool(x.grad.abs().sum() > 0)


@dataclass
class TrapGradients:
    fresh: dict[str, torch.Tensor]  # before any evaluation
    after_guard: dict[str, torch.Tensor]  # after an evaluation through evaluating()
    reference: dict[str, torch.Tensor]  # the dequantized copy
    packed_after_guard: int
    repacks: bool  # whether bitsandbytes repacks in eval mode on this CPU
    unguarded: dict[str, torch.Tensor] | None = None  # after a plain eval() + no_grad() forward
    packed_unguarded: int = 0
    input_grads: tuple[int, int] = (0, 0)  # 4-bit layers passing an input gradient: guarded, unguarded


@pytest.fixture(scope="module")
def trap(runs: Callable[[str], Run], examples: list, tokenizer: Any) -> TrapGradients:
    """LoRA gradients of the QLoRA run's model (trained, never in eval mode) on one batch: before an
    evaluation, after one through the guard, after one without it, and of a dequantized reference.

    Which reference is meaningful: the same model before any evaluation says that evaluating leaves
    no trace (same kernels, so it must match to rounding), but it shares bitsandbytes' autograd, and
    a layer that passed no gradient would be missing on both sides. The dequantized copy is torch's
    own autograd over plain matmuls of the weights dequantized *before* the evaluation, with the same
    LoRA weights: only the true gradients match it. Dequantizing *after* the evaluation would hide a
    guard that alters the frozen weights (undoing the packing did: with double quantization it
    requantizes the absmax after a bf16 round trip, 6% off in these gradients).
    """
    from bitsandbytes.functional import dequantize_4bit
    from bitsandbytes.nn import Linear4bit

    model = runs("qlora").model  # this fixture is its only user: it ends with the 4-bit layers replaced
    assert model is not None and model.training
    layers = {name: m for name, m in model.named_modules() if isinstance(m, Linear4bit)}
    assert len(layers) == 30 * 7  # every projection of the 30 blocks is 4-bit
    original = {name: dequantize_4bit(m.weight.data, m.weight.quant_state).to(m.compute_dtype)
                for name, m in layers.items()}
    batch = collate(examples[:2], pad_id(tokenizer), "cpu")

    def lora_grads() -> dict[str, torch.Tensor]:
        torch.manual_seed(0)  # the same LoRA dropout masks every time
        model.train()
        model.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        assert all(g is not None for g in grads.values())
        return {n: g.detach().clone() for n, g in grads.items()}

    fresh = lora_grads()
    mean_loss(model, examples, pad_id(tokenizer), "cpu", 4)  # an evaluation pass, through evaluating()
    grads = TrapGradients(fresh, lora_grads(), {}, sum(map(is_packed, layers.values())),
                          any(m.support_avx512bf16_for_cpu for m in layers.values()))
    if grads.repacks:
        flowing = sum(map(input_grad_flows, layers.values()))
        model.eval()
        with torch.no_grad():
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        grads.packed_unguarded = sum(map(is_packed, layers.values()))
        with warnings.catch_warnings():  # "gemv_4bit: an autograd kernel was not registered": the trap's only sign
            warnings.simplefilter("ignore")
            grads.unguarded = lora_grads()
            grads.input_grads = (flowing, sum(map(input_grad_flows, layers.values())))
        unpack_4bit_for_training(model)
    for name, layer in layers.items():
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, Dequantized(original[name], layer.bias))
    grads.reference = lora_grads()
    return grads


def test_qlora_gradients_after_an_evaluation_match_a_dequantized_reference(trap: TrapGradients) -> None:
    assert trap.packed_after_guard == 0
    diffs = {"after the guard vs never evaluated": rel_diff(trap.after_guard, trap.fresh),
             "never evaluated vs dequantized": rel_diff(trap.fresh, trap.reference),
             "after the guard vs dequantized": rel_diff(trap.after_guard, trap.reference)}
    # The same kernels on the same weights must agree to rounding: the evaluation leaves no trace.
    assert diffs["after the guard vs never evaluated"] < 1e-5, diffs
    assert max(diffs.values()) < 1e-2, diffs


def test_without_the_guard_no_gradient_passes_the_4bit_layers(trap: TrapGradients) -> None:
    """Proves the test above can fail: a plain eval() + no_grad() forward breaks training."""
    if not trap.repacks:
        pytest.skip("bitsandbytes does not repack 4-bit weights on this CPU (support_avx512bf16_for_cpu is false): "
                    "evaluating cannot break training here")
    assert trap.packed_unguarded == 30 * 7
    assert trap.input_grads == (30 * 7, 0)  # every layer passed its input gradient before, none after
    assert trap.unguarded is not None
    diff = rel_diff(trap.unguarded, trap.reference)
    assert diff > 0.3, f"LoRA gradients without the guard are only {diff:.1%} off the reference"


# --- 3. the QLoRA loss curve -------------------------------------------------------------------


def test_qlora_loss_curve_matches_the_stored_one(runs: Callable[[str], Run]) -> None:
    losses = runs("qlora").result.train_losses
    print(f"\nQLORA_LOSSES = {losses}")
    assert losses == pytest.approx(QLORA_LOSSES, rel=2e-2)  # CPU kernels may differ slightly between machines


# --- 4. resuming -------------------------------------------------------------------------------------


class Crash(RuntimeError):
    """Stands for the process dying (power cut, OOM kill) in the middle of a step."""


def test_a_crashed_run_resumes_from_its_last_checkpoint(
    runs: Callable[[str], Run], base_path: Path, tokenizer: Any, examples: list, tmp_path: Path
) -> None:
    config = run_config("lora", checkpoint_every=2)  # the config of runs("lora"), checkpointed every 2 steps
    out = tmp_path / "run"
    model = build("lora", config, base_path)
    forwards = 0

    def die_in_step_3(module: torch.nn.Module, args: Any) -> None:
        nonlocal forwards
        forwards += 1
        if forwards == 3:
            raise Crash

    model.register_forward_pre_hook(die_in_step_3)
    with pytest.raises(Crash):
        make_trainer(model, config, tokenizer, examples, out).train()
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-000002"] and not (out / "best").exists()

    result = make_trainer(build("lora", config, base_path), config, tokenizer, examples, out).train()
    uninterrupted = runs("lora")
    assert result.resumed_from == 2 and result.steps == 4
    assert result.train_losses == pytest.approx(uninterrupted.result.train_losses, rel=1e-4)
    resumed, reference = (load_file(d / "best" / "adapter_model.safetensors") for d in (out, uninterrupted.out))
    assert resumed.keys() == reference.keys()
    for name, tensor in reference.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=1e-4, atol=1e-6)


# --- 5. the registry behind the bot -----------------------------------------------------------------


def tone_adapter(base_path: Path, tokenizer: Any, reply: str, out: Path) -> Path:
    """A LoRA adapter that answers everything with *reply*: 3 steps at a high learning rate."""
    config = run_config("lora", learning_rate=2e-3, batch_size=4, epochs=3, max_steps=3, warmup_ratio=0.0)
    examples = tokenized(tokenizer, [(customer, reply) for customer, _ in CHATS[:4]])
    make_trainer(build("lora", config, base_path), config, tokenizer, examples, out).train()
    return out / "best"


def test_promotion_and_rollback_change_what_the_bot_answers_with(
    db: Any, settings: Settings, base_path: Path, tokenizer: Any, tmp_path: Path
) -> None:
    ahoy = tone_adapter(base_path, tokenizer, "Ahoy, sailor! Tie up your ship.", tmp_path / "ahoy")
    moon = tone_adapter(base_path, tokenizer, "Greetings from the moon base, friend.", tmp_path / "moon")
    # Its own folder: every test database starts again at v1.
    registry = AdapterRegistry(db, tmp_path / "home")
    for source in (ahoy, moon, ahoy):
        registry.register(source, method="lora", base_model="smollm2-135m-instruct", data_hash="test",
                          metrics={}, config={})
    live = LiveAdapters(registry, settings, poll_seconds=0)

    def answer(product: str | None = None) -> tuple[str | None, Any, str]:
        version, chat = live.for_chat(None, product)
        return version, chat, chat.generate_text(PROMPT, max_new_tokens=12)

    version, base_chat, base_text = answer()
    assert version is None

    registry.promote("v1")
    version, v1_chat, v1_text = answer()
    assert version == "v1" and v1_text != base_text and "Ahoy" in v1_text

    registry.promote("v2")
    version, _, v2_text = answer()
    assert version == "v2" and v2_text not in (base_text, v1_text)

    assert registry.rollback().version == "v1"
    assert answer() == ("v1", v1_chat, v1_text)  # the same model, loaded once

    adapter_file = Path(registry.get("v3").path) / "adapter_model.safetensors"
    adapter_file.write_bytes(adapter_file.read_bytes()[:1000])  # truncated
    with pytest.raises(RegistryError, match="corrupt adapter files"):
        registry.promote("v3")
    assert answer() == ("v1", v1_chat, v1_text)  # unchanged

    assert registry.rollback() is None
    assert answer() == (None, base_chat, base_text)

    registry.promote("v2", scope="product:x")
    assert answer("x")[0::2] == ("v2", v2_text)
    assert answer("y") == (None, base_chat, base_text)
    assert answer() == (None, base_chat, base_text)


# --- 6. `supportbot train` ---------------------------------------------------------------------------

TICKETS = [  # six distinct conversations (near-duplicate detection treats digits alike: vary the words)
    ("My blender makes a grinding noise.", "Sorry to hear that! Please check that the blade is seated firmly."),
    ("When will my refund arrive?", "Refunds reach your card within five working days of approval."),
    ("The lamp flickers at night.", "Try a fresh bulb first; if it still flickers, we will send a new lamp."),
    ("Can I add gift wrapping?", "Of course, tick the gift option on the basket page before paying."),
    ("My headphones will not pair.", "Hold the power button until the light blinks blue, then pair again."),
    ("Is the sofa available in green?", "It is, in olive and in forest green, both with free delivery."),
]


def test_cli_trains_promotes_and_lists_an_adapter(
    database_url: str, base_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tickets = tmp_path / "tickets.jsonl"
    lines = [{"id": f"T-{i}", "brand": "Acme", "messages": [{"role": "user", "content": customer},
                                                            {"role": "assistant", "content": agent}]}
             for i, (customer, agent) in enumerate(TICKETS, 1)]
    tickets.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SUPPORTBOT_HOME", str(tmp_path / "home"))  # its own run folders and registry
    monkeypatch.setenv("SUPPORTBOT_BASE_MODEL", str(base_path))  # the model converted once for the session
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        trained = runner.invoke(app, ["train", str(tickets), "--method", "lora", "--set", "max_steps=1",
                                      "--set", "max_seq_len=64", "--promote", "--force"])
        assert trained.exit_code == 0, trained.output
        assert "trained lora for 1 steps" in trained.output
        assert "registered v1" in trained.output and "; promoted" in trained.output
        listed = runner.invoke(app, ["adapters", "list", "--json"])
        assert listed.exit_code == 0, listed.output
        rows = json.loads(listed.output)
        assert [(r["version"], r["method"], r["live_in"]) for r in rows] == [("v1", "lora", ["*"])]
        assert rows[0]["config"]["max_steps"] == 1 and rows[0]["metrics"]["training"]["steps"] == 1
    finally:
        get_settings.cache_clear()
