"""Training cost per method on real tickets: seconds per step, tokens/s and peak memory for qlora,
lora, ia3 and full, against a plain PEFT + transformers loop (LoRA, same batches) measured in the
same run; and the validation perplexity of real agent replies, base vs. each method after the same
number of steps. Each method runs in its own process, so peak memory is its own.

Default data: ../shared/data/tickets/twitter-support-dev.json (redacted first, as `supportbot train` does).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

from _common import REPO, environment, progress, table, write_json

TICKETS = REPO.parent / "shared" / "data" / "tickets" / "twitter-support-dev.json"
METHODS = ("plain-peft-lora", "lora", "qlora", "ia3", "full")


def run_one(method: str, data_dir: Path, steps: int, home: Path) -> dict:
    """In this process: train *method* for *steps* on the prepared data; return its figures."""
    import os

    os.environ["SUPPORTBOT_HOME"] = str(home)
    import torch
    from transformers import AutoTokenizer

    from finetune.base_model import base_model_path
    from finetune.dataset import TRAIN_FILE, VALIDATION_FILE, load_examples
    from finetune.masking import tokenize_example
    from finetune.recipes import get_recipe
    from finetune.train_config import TrainConfig
    from finetune.trainer import Trainer, collate, mean_loss, peak_memory_mb
    from supportbot.settings import Settings

    settings = Settings(home=home)
    base = base_model_path(settings)
    tokenizer = AutoTokenizer.from_pretrained(base)
    config = TrainConfig(method="lora" if method == "plain-peft-lora" else method, max_steps=steps, batch_size=4,
                         max_seq_len=256, eval_every=10**6, checkpoint_every=10**6)

    def tokenized(path: Path) -> list[dict[str, list[int]]]:
        out = []
        for e in load_examples(path):
            t = tokenize_example(e.messages, tokenizer)
            out.append({k: t[k][: config.max_seq_len] for k in ("input_ids", "labels")})
        return out

    train, validation = tokenized(data_dir / TRAIN_FILE), tokenized(data_dir / VALIDATION_FILE)[:48]
    pad = tokenizer.pad_token_id
    torch.manual_seed(0)
    if method == "base":
        from finetune.recipes.base import load_causal_lm

        model = load_causal_lm(base, "cpu", torch.bfloat16)
        return {"method": method, "val_perplexity": math.exp(mean_loss(model, validation, pad, "cpu", 4))}
    if method == "plain-peft-lora":
        # The baseline: what a user would write with PEFT + transformers alone.
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16)
        model = get_peft_model(model, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, task_type="CAUSAL_LM",
                                                 lora_dropout=config.lora_dropout,
                                                 target_modules=config.target_modules))  # as the recipe's
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
        model.train()
        times, tokens = [], 0
        for step in range(steps):
            batch = collate(train[step * 4 : step * 4 + 4], pad, "cpu")
            started = time.perf_counter()
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            times.append(time.perf_counter() - started)
            tokens += int(batch["attention_mask"].sum())
        seconds = sum(times)
    else:
        model = get_recipe(method).build(base, config, "cpu")
        out = home / "bench-train" / method
        trainer = Trainer(model, config, train, [], out, pad, "cpu", lambda m, d: None)
        started = time.perf_counter()
        result = trainer.train(resume=False)
        seconds, tokens = time.perf_counter() - started, result.tokens
    with torch.no_grad():
        val = math.exp(mean_loss(model, validation, pad, "cpu", 4))
    return {"method": method, "steps": steps, "seconds_per_step": seconds / steps, "tokens_per_s": tokens / seconds,
            "peak_memory_mb": peak_memory_mb("cpu"), "val_perplexity": val,
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=Path, default=TICKETS)
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per method (batch 4)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.data, args.steps, args.home)))
        return
    if not args.tickets.exists():
        parser.error(f"{args.tickets} not found: pass --tickets")
    import atexit
    import os
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="supportbot-train-bench-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)  # ~2 GB of checkpoints and converted models
    os.environ["SUPPORTBOT_HOME"] = str(home)
    from finetune.prepare import prepare_dataset
    from supportbot.settings import Settings

    data = home / "data"
    report = prepare_dataset([args.tickets], data, Settings(home=home))
    progress(f"dataset: {report.examples} from {args.tickets.name}")
    rows, results = [], {}
    for method in ["base", *args.methods.split(",")]:
        progress(f"{method}…")
        run = subprocess.run([sys.executable, __file__, "--one", method, "--data", str(data), "--home", str(home),
                              "--steps", str(args.steps)], capture_output=True, text=True, cwd=REPO / "bench")
        if run.returncode:
            progress(f"{method} failed: {run.stderr.strip().splitlines()[-1]}")
            continue
        results[method] = json.loads(run.stdout.strip().splitlines()[-1])
    baseline = results.get("plain-peft-lora", {}).get("seconds_per_step")
    for method, r in results.items():
        rows.append([method, r.get("seconds_per_step"), r.get("tokens_per_s"), r.get("peak_memory_mb"),
                     r.get("trainable_params"), r["val_perplexity"],
                     (r["seconds_per_step"] / baseline) if baseline and "seconds_per_step" in r else None])
    print(table(["method", "s/step", "tokens/s", "peak MB", "trainable", f"val ppl @{args.steps}", "x plain loop"],
                rows, title=f"Training on {args.tickets.name}, batch 4 × ≤256 tokens, CPU"))
    print(f"\nwritten to {write_json('train_bench', {'environment': environment(), 'results': results})}")


if __name__ == "__main__":
    main()
