"""int8 weights after pruning: dynamic quantization of the Linear layers (CPU).

At batch 1 a generated token reads every decoder weight and the LM head from memory, so on a
CPU decode time follows bytes; pruning removes layers and units, int8 then stores each remaining
weight in one byte instead of four. The two compose: a pruned model is quantized as it is.

Scheme ``int8`` (``torch.ao.quantization.quantize_dynamic`` with ``qint8``): every ``nn.Linear``
weight becomes int8 with one scale per tensor; activations are quantized per batch on the fly and
the matmul runs in int8 with fp32 accumulation (fbgemm / oneDNN kernels), outputs in fp32.
Embeddings, layer norms and attention score arithmetic stay fp32. Why this implementation and
which layers stay fp32 (``KEEP_FP32``) are measured by ``scripts/bench_quantize.py`` (README).

A quantized model is saved as its fp32 pruned weights with ``quantization`` recorded in
``plan.json``; :func:`pruning.load_pruned` quantizes again at load (deterministic: the same int8
weights every time).
"""

from __future__ import annotations

import re
import warnings

import torch
from torch import nn

QUANTIZATIONS = ("none", "int8")
SCALES = ("tensor", "channel")  # int8 scale granularity: one per weight matrix, or one per output row
# Layers kept in fp32 by default (names or name suffixes), chosen by measurement: see the README.
KEEP_FP32: tuple[str, ...] = ()


# The FFN output projection of each family (the Linear whose input is the FFN's activation): BERT's
# ``layer.N.output.dense`` (not ``attention.output.dense``), T5's ``DenseReluDense.wo``, BART's ``fc2``,
# Llama's / Gemma's ``mlp.down_proj``.
FFN_OUTPUT_PATTERN = re.compile(r"(layer\.\d+\.output\.dense|DenseReluDense\.wo|\.fc2|mlp\.down_proj)$")


def ffn_output_layers(model: nn.Module) -> tuple[str, ...]:
    """Names of the FFN output Linear layers of ``model`` (any supported family), for ``quantize(...,
    keep_fp32=...)``.

    Their inputs are the FFN's GELU / ReLU activations, long-tailed with a few outlier dimensions, which one
    per-tensor int8 scale rounds badly (Bondarenko et al. 2021, "Understanding and Overcoming the Challenges of
    Efficient Transformer Quantization"); measured here as the layer that sets int8's loss on MiniLM-L6
    classifiers (``scripts/int8_sensitivity.py``, README).

    Returns:
        Module names in ``model.named_modules()`` order; empty for a model with none recognised.
    """
    return tuple(name for name, module in model.named_modules()
                 if isinstance(module, nn.Linear) and FFN_OUTPUT_PATTERN.search(name))


def check_scheme(scheme: str) -> str:
    """``scheme`` if known.

    Raises:
        ValueError: For a scheme other than ``none`` and ``int8``.
    """
    if scheme not in QUANTIZATIONS:
        raise ValueError(f"Unknown quantization {scheme!r}; use one of {', '.join(QUANTIZATIONS)}.")
    return scheme


def quantize(model: nn.Module, scheme: str = "int8", *, keep_fp32: tuple[str, ...] | None = None,
             scales: str = "tensor") -> nn.Module:
    """A copy of ``model`` with int8 Linear weights (``scheme="int8"``), or ``model`` itself (``"none"``).

    Args:
        model: An fp32 model on the CPU (pruned or dense), any family.
        scheme: ``"none"`` or ``"int8"``.
        keep_fp32: Module names (exact, or a suffix after a dot) whose Linear layers stay fp32;
            default :data:`KEEP_FP32`. Linear layers with no weights (all heads or neurons of a
            layer removed) stay as they are.
        scales: ``"tensor"``: one int8 scale per weight matrix (``default_dynamic_qconfig``);
            ``"channel"``: one per output row (``per_channel_dynamic_qconfig``), so that a row of
            small weights is not rounded on the scale of the largest row.

    Returns:
        The quantized copy in eval mode (the input model is not modified).

    Raises:
        ValueError: For an unknown scheme or ``scales``, or a model not on the CPU (the int8 kernels
            are CPU-only).
    """
    check_scheme(scheme)
    if scales not in SCALES:
        raise ValueError(f"Unknown int8 scales {scales!r}; use one of {', '.join(SCALES)}.")
    if scheme == "none":
        return model
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ValueError("int8 dynamic quantization runs on the CPU; move the model there (or use --quantize none "
                         "on a GPU).")
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    keep = KEEP_FP32 if keep_fp32 is None else tuple(keep_fp32)
    # A Linear with no inputs or outputs (a layer whose heads or FFN neurons were all removed) holds
    # only a bias: nothing to quantize, and its empty activations have no range to quantize by.
    names = {name for name, module in model.named_modules() if isinstance(module, nn.Linear)
             and module.weight.numel() > 0 and not any(name == k or name.endswith("." + k) for k in keep)}
    with warnings.catch_warnings():  # torch.ao's quantized tensors are deprecated in favour of torchao (README)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        qconfig = per_channel_dynamic_qconfig if scales == "channel" else default_dynamic_qconfig
        quantized = quantize_dynamic(model.eval(), {name: qconfig for name in names}, dtype=torch.qint8,
                                     inplace=False)
    return quantized.eval()


def is_quantized(model: nn.Module) -> bool:
    """Whether any layer of ``model`` holds int8 weights."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return any(isinstance(m, DynamicLinear) for m in model.modules())


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's weights as stored: parameters and buffers at their dtype, plus the
    packed int8 weights (1 byte each) and their fp32 biases of quantized Linear layers. Tied
    parameters count once."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    seen, total = set(), 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        total += tensor.numel() * tensor.element_size()
    for module in model.modules():
        if isinstance(module, DynamicLinear):
            weight, bias = module._packed_params._weight_bias()
            total += weight.numel() * weight.element_size()
            total += bias.numel() * bias.element_size() if bias is not None else 0
    return total
