"""Guards against bitsandbytes' CPU repacking trap (0.50.2).

On CPU, the first forward of a ``Linear4bit`` in eval mode without grad repacks its weights for
fast inference (``quant_state.packing_format_for_cpu``); from then on its matmul has no autograd,
and after ``model.train()`` the gradients through every 4-bit layer are silently ``None``. So
every evaluation of a 4-bit model that will be trained again goes through :func:`evaluating`,
which keeps the layers from being packed at all: undoing the packing is lossy with double
quantization (the absmax goes through bf16 and is quantized again), so each evaluation would nudge
the frozen weights (measured: 0.3% of their norm, LoRA gradients 6% off, after one pass).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def unpack_4bit_for_training(model: torch.nn.Module) -> int:
    """Undo CPU inference packing of every 4-bit layer; return how many were packed."""
    try:
        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse
        from bitsandbytes.nn import Linear4bit
    except ImportError:  # no bitsandbytes: nothing can be packed
        return 0
    undone = 0
    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if isinstance(module, Linear4bit) and state is not None and getattr(state, "packing_format_for_cpu", False):
            module.weight.data, module.weight.quant_state = _convert_weight_packed_for_cpu_inverse(
                module.weight.data, state
            )
            undone += 1
    return undone


@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``model.eval()`` and ``torch.no_grad()`` for the block; training mode (and trainable 4-bit
    layers) restored afterwards."""
    was_training = model.training
    # bitsandbytes repacks a Linear4bit only while its support_avx512bf16_for_cpu is true.
    layers = [m for m in model.modules() if getattr(m, "support_avx512bf16_for_cpu", False)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        for layer in layers:
            layer.support_avx512bf16_for_cpu = True
        unpack_4bit_for_training(model)  # layers packed earlier, outside this guard
        model.train(was_training)
