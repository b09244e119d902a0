"""What a model costs besides time: MACs (``torch.utils.flop_counter``), parameters, the bytes of
weights read per generated token, and this machine's memory bandwidth (the bandwidth model of
decoding in the README).
"""

from __future__ import annotations

import torch
import torch.utils.benchmark as benchmark
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from explorer.evaluation.latency import (check_encoder_decoder, check_generated_length, check_positive,
                                         exact_length_generation_config, model_device, random_input_ids, new_cache)


def count_macs(model: nn.Module, *, batch_size: int = 1, input_tokens: int = 256, new_tokens: int = 64,
               direct: bool = False) -> dict:
    """Multiply-accumulates of one encoder pass and of greedy generation, in GMACs.

    Counted with ``torch.utils.flop_counter.FlopCounterMode`` while the model runs on
    the device it is on (nothing is moved), with MACs = FLOPs / 2. The counter sees
    matrix products only (``mm``, ``addmm``, ``bmm``, attention kernels):
    projections, FFNs, attention scores and weighted sums, and the LM head;
    layer norms, softmax, activations and embedding look-ups count zero. Attention
    runs through the math SDPA backend while counting, because the fused CPU kernel
    is invisible to the counter. Inputs and generation settings are those of
    :func:`measure_latency` with ``num_beams=1`` (KV cache included).

    Generation is counted for 1, 2 and 3 new tokens and extrapolated to ``new_tokens``
    (unless ``direct``): with a KV cache, step p costs a constant (projections, FFNs,
    cross-attention, LM head) plus a part linear in p (self-attention over p cached
    keys and values), so the total over n steps is a quadratic in n, fixed exactly by
    three points. Counting under ``FlopCounterMode`` is several times slower than
    running, so this saves most of the cost (``tests/test_measure.py`` checks the
    extrapolation against a direct count for every family).

    Args:
        model: A Hugging Face encoder-decoder model, possibly pruned.
        batch_size: Sequences per batch, >= 1.
        input_tokens: Encoder input length, >= 1.
        new_tokens: Tokens to generate greedily, >= 1.
        direct: Count a full ``new_tokens`` generation instead of extrapolating.

    Returns:
        ``{"encoder_gmacs": one encoder pass, "decoder_gmacs": all decoder steps of
        the generation with KV cache (including the cross-attention K/V projections
        of the encoder output and the LM head), "gmacs": their sum, the whole
        generation}``, each in 1e9 MACs for the whole batch. ``decoder_gmacs`` is
        the count of ``generate`` minus that of the encoder pass it contains.

    Raises:
        ValueError: On a non-positive size or a model that is not an encoder-decoder.
    """
    check_positive(batch_size=batch_size, input_tokens=input_tokens, new_tokens=new_tokens)
    check_encoder_decoder(model)
    was_training = model.training
    model.eval()
    try:
        device = model_device(model)
        input_ids = random_input_ids(model, batch_size, input_tokens, device)
        attention_mask = torch.ones_like(input_ids)

        def generate_flops(n: int) -> int:
            config = exact_length_generation_config(model, n, num_beams=1)
            with FlopCounterMode(display=False) as counter:
                output = model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                        generation_config=config, past_key_values=new_cache())
            check_generated_length(output, batch_size, n)
            return counter.get_total_flops()

        with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH):
            with FlopCounterMode(display=False) as encoder_counter:
                model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
            if direct or new_tokens <= 3:
                total = generate_flops(new_tokens)
            else:
                f1, f2, f3 = (generate_flops(n) for n in (1, 2, 3))
                n = new_tokens
                total = f1 + (n - 1) * (f2 - f1) + (n - 1) * (n - 2) // 2 * (f3 - 2 * f2 + f1)
    finally:
        model.train(was_training)
    encoder_gmacs = encoder_counter.get_total_flops() / 2 / 1e9
    gmacs = total / 2 / 1e9
    return {"encoder_gmacs": encoder_gmacs, "decoder_gmacs": gmacs - encoder_gmacs, "gmacs": gmacs}


def count_params(model: nn.Module) -> dict:
    """Parameter counts in millions.

    ``params_m`` counts every distinct parameter tensor once: it is
    ``sum(p.numel() for p in model.parameters())``, and ``parameters()`` yields a
    tied tensor (T5's and BART's shared input embedding, a tied LM head) only once.
    ``encoder_params_m`` and ``decoder_params_m`` count the parameters reachable from
    ``model.get_encoder()`` and ``model.get_decoder()``; a shared input embedding
    therefore appears in both, and an untied LM head outside the decoder module
    (T5, BART) in neither, so the parts need not add up to the total.

    Args:
        model: A Hugging Face encoder-decoder model, possibly pruned.

    Returns:
        ``{"params_m", "encoder_params_m", "decoder_params_m"}``, floats in 1e6.

    Raises:
        ValueError: If the model is not an encoder-decoder.
    """
    check_encoder_decoder(model)

    def millions(module: nn.Module) -> float:
        return sum(p.numel() for p in module.parameters()) / 1e6

    return {
        "params_m": millions(model),
        "encoder_params_m": millions(model.get_encoder()),
        "decoder_params_m": millions(model.get_decoder()),
    }


def _linear_bytes(module: nn.Module) -> int:
    """Bytes of one Linear layer's weight and bias as stored (fp32 / bf16 ``nn.Linear``, or int8
    ``torch.ao`` dynamic quantized Linear with an fp32 bias); 0 for anything else."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    if isinstance(module, DynamicLinear):
        weight, bias = module._packed_params._weight_bias()
        return weight.numel() * weight.element_size() + (bias.numel() * bias.element_size() if bias is not None else 0)
    if isinstance(module, nn.Linear):
        return sum(p.numel() * p.element_size() for p in (module.weight, module.bias) if p is not None)
    return 0


def decode_bytes_per_token(model: nn.Module, *, input_tokens: int = 256, new_tokens: int = 64) -> dict:
    """Bytes a batch-1 greedy decoder step reads from memory, by part: a model of decoding at batch 1,
    where every weight the step uses is read once per generated token and nothing is reused across tokens.

    Parts (each at the dtype the weights are stored in: 4 bytes fp32, 1 byte int8 plus an fp32 bias):
        ``decoder_weights``  every Linear of the kept decoder layers, except the cross-attention K and V
                             projections (the encoder output's K and V are computed once and cached);
        ``lm_head``          the output projection (hidden x vocabulary), read for every token;
        ``cross_cache``      the cached cross-attention K and V: 2 x input_tokens x (kept heads x head_dim)
                             fp32 values per decoder layer;
        ``self_cache``       the self-attention KV cache, at its mean length over the generated tokens.
    Layer norms, biases of the caches and one embedding row are small and left out.

    Args:
        model: An encoder-decoder model (pruned, fp32 or int8).
        input_tokens, new_tokens: The generation setting (for the caches).

    Returns:
        The parts and ``total``, in bytes.

    Raises:
        ValueError: For a model that is not a supported encoder-decoder.
    """
    from pruning.adapters import get_adapter

    adapter = get_adapter(model)
    layers = adapter.decoder_layers(model)
    weights, cross, self_cache = 0, 0, 0
    mean_length = (new_tokens + 1) / 2
    for layer in layers:
        xatt = adapter.cross_attention(layer)
        cached = {id(xatt.k), id(xatt.v)}
        weights += sum(_linear_bytes(m) for m in layer.modules() if id(m) not in cached)
        kv_width = _out_features(xatt.k)
        cross += 2 * input_tokens * kv_width * 4
        self_cache += 2 * mean_length * _out_features(adapter.attention(layer).k) * 4
    head = model.get_output_embeddings()
    parts = {"decoder_weights": weights, "lm_head": _linear_bytes(head) if head is not None else 0,
             "cross_cache": int(cross), "self_cache": int(self_cache)}
    parts["total"] = sum(parts.values())
    return parts


def _out_features(linear: nn.Module) -> int:
    return int(getattr(linear, "out_features"))


def memory_bandwidth_gbs(megabytes: int = 256, repeats: int = 5) -> float:
    """This machine's memory bandwidth in GB/s, measured as the best of ``repeats`` copies of a
    ``megabytes`` fp32 array (far larger than the caches) with ``torch.Tensor.copy_``, counting the
    bytes read and the bytes written (2 x size per copy). At batch 1 a decoder step streams its
    weights once, so bytes per token / this bandwidth predicts its time (:func:`decode_bytes_per_token`)."""
    n = megabytes * 1_000_000 // 4
    source, target = torch.ones(n), torch.empty(n)
    target.copy_(source)
    best = float("inf")
    for _ in range(repeats):
        timer = benchmark.Timer("t.copy_(s)", globals={"t": target, "s": source})
        best = min(best, timer.timeit(1).mean)
    return 2 * n * 4 / best / 1e9
