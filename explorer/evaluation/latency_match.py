"""CoFi at the same latency as NASH: choosing CoFi's sparsity so that its speed-up matches.

NASH's comparison with CoFi (Ko et al. 2023, Sec. 5, Fig. 1 and Tab. 2) puts both at equal
end-to-end latency. CoFi keeps every decoder layer and narrows all of them, so the sparsity
that gives NASH's latency is not known in advance, and each CoFi run trains gates. This module
guesses it cheaply and then corrects the guess with real runs:

1. **A surrogate** (:func:`speedup_curve`): plans that remove the same fraction of heads and FFN
   neurons from every encoder and decoder layer (:func:`uniform_width_plan`, the shape CoFi's
   Lagrangian tends towards at a given sparsity, with no training) are timed against the dense
   model in the same process, giving speed-up as a function of sparsity.
2. **Inversion** (:func:`sparsity_for_speedup`): the sparsity whose surrogate speed-up equals
   the target, by linear interpolation of the measured points.
3. **Correction** (:func:`next_sparsity`): after a real CoFi run at sparsity s measured speed-up
   S_real while the surrogate predicted S_sur, the next guess targets ``target * S_sur / S_real``
   on the surrogate curve (its error at s is assumed to hold nearby). Once real runs fall on both
   sides of the target, the next guess interpolates between them instead
   (:func:`sparsity_between_tries`). Runs stop when the speed-up is within the tolerance (5% in
   the paper's comparison) or the tries are spent.

Speed-ups, not milliseconds, are matched, and never ones timed at different moments: a shared
CPU's speed drifts by 15-40% within minutes. The surrogate plans are timed together against the
dense model, and each real CoFi run is timed together with the NASH run it should match
(``explorer.evaluation.latency.paired_speedups``, alternating rounds; ``scripts/cofi_match.py``).
"""

from __future__ import annotations

import torch


def uniform_width_plan(model, sparsity: float):
    """A CoFi-shaped plan without training: every encoder and decoder layer keeps the first
    ``round((1 - sparsity) * n)`` (at least one) of its ``n`` heads, cross-attention heads and FFN
    neurons; every decoder layer and hidden dimension is kept.

    Args:
        model: A dense encoder-decoder model (T5, BART, BERT2BERT).
        sparsity: Fraction of each layer's heads and neurons removed, in [0, 1).

    Returns:
        A ``pruning.PruningPlan`` (for timing only: the kept units are arbitrary).

    Raises:
        ValueError: For a sparsity outside [0, 1).
    """
    from pruning import PruningPlan, keep_all_plan
    from pruning.adapters import get_adapter

    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"Sparsity must be in [0, 1), got {sparsity}.")
    base = keep_all_plan(model)
    adapter = get_adapter(model)
    dec_heads, dec_ffn = adapter.decoder_num_heads(model), adapter.decoder_ffn_dim(model)

    def keep(n: int) -> tuple[int, ...]:
        return tuple(range(max(1, round((1.0 - sparsity) * n))))

    layers = base.num_decoder_layers
    return PruningPlan(family=base.family, num_decoder_layers=layers, num_heads=base.num_heads, ffn_dim=base.ffn_dim,
                       kept_decoder_layers=base.kept_decoder_layers,
                       kept_encoder_heads=tuple(keep(base.num_heads) for _ in base.kept_encoder_heads),
                       kept_encoder_neurons=tuple(keep(base.ffn_dim) for _ in base.kept_encoder_neurons),
                       decoder_num_heads=dec_heads, decoder_ffn_dim=dec_ffn,
                       kept_decoder_heads=tuple(keep(dec_heads) for _ in range(layers)),
                       kept_cross_heads=tuple(keep(dec_heads) for _ in range(layers)),
                       kept_decoder_neurons=tuple(keep(dec_ffn) for _ in range(layers)),
                       notes={"method": "uniform-width surrogate (timing only)", "sparsity": sparsity})


def speedup_curve(model, sparsities, *, input_tokens: int = 256, new_tokens: int = 64, rounds: int = 5,
                  device: str = "cpu") -> list[tuple[float, float]]:
    """``[(sparsity, speed-up), ...]`` of :func:`uniform_width_plan` models against ``model``, all
    timed together in alternating rounds (``explorer.evaluation.latency.paired_speedups``: greedy,
    batch 1, the ratio to the dense model taken within each round, so that drift in the machine's
    speed cancels).

    Args:
        model: The dense model (not modified).
        sparsities: Increasing values in [0, 1).
        rounds: Alternating rounds, >= 1.

    Returns:
        Speed-up = dense ms / plan ms (median over rounds), one per sparsity.

    Raises:
        ValueError: For a sparsity outside [0, 1) or ``rounds`` < 1.
    """
    from explorer.evaluation.latency import paired_speedups
    from pruning import apply_plan

    with torch.inference_mode(False):
        smaller = {str(float(s)): apply_plan(model, uniform_width_plan(model, s)) for s in sparsities}
    timed = paired_speedups(model, smaller, input_tokens=input_tokens, new_tokens=new_tokens, rounds=rounds,
                            device=device)
    model.to("cpu")
    return [(float(s), result.speedup) for s, result in timed.items()]


def sparsity_for_speedup(curve: list[tuple[float, float]], target: float) -> float | None:
    """The sparsity whose speed-up on ``curve`` equals ``target``, by linear interpolation between
    the two points around it (None when no point reaches it: the curve's largest speed-up is below
    the target, so CoFi cannot match this latency within the sparsities tried)."""
    points = sorted(curve)
    if not points or max(s for _, s in points) < target:
        return None
    if points[0][1] >= target:
        return points[0][0]
    for (s0, v0), (s1, v1) in zip(points, points[1:]):
        if v0 < target <= v1 or (v1 < target <= v0):
            return s0 + (target - v0) * (s1 - s0) / (v1 - v0)
    return max(points, key=lambda p: p[1])[0]


def next_sparsity(curve: list[tuple[float, float]], target: float, tried: float, measured: float) -> float | None:
    """The next CoFi sparsity after a run at ``tried`` reached speed-up ``measured``: the surrogate
    is rescaled by its error at ``tried`` and inverted again (module docstring, step 3)."""
    predicted = _interpolate(curve, tried)
    return sparsity_for_speedup(curve, target * predicted / measured)


def sparsity_between_tries(tries: list[tuple[float, float]]) -> float | None:
    """The next CoFi sparsity from real runs alone, once they bracket the target: ``tries`` are
    ``(sparsity, CoFi speed-up / NASH speed-up)`` pairs (each ratio from one timing of both models
    together); between the two runs adjacent in sparsity whose ratios lie on either side of 1, the
    sparsity at ratio 1 by linear interpolation. None while no pair brackets 1 (then the surrogate,
    :func:`next_sparsity`, guides the search). Real runs beat the surrogate once they exist: the
    surrogate's uniform widths are not the shapes CoFi's gates learn, and its curve can be flat over
    a range of sparsities where real runs are not."""
    points = sorted(tries)
    for (s0, r0), (s1, r1) in zip(points, points[1:]):
        if (r0 - 1.0) * (r1 - 1.0) < 0:
            return s0 + (1.0 - r0) * (s1 - s0) / (r1 - r0)
    return None


def within(measured: float, target: float, tolerance: float = 0.05) -> bool:
    """Whether a speed-up is within ``tolerance`` (relative) of the target."""
    return abs(measured / target - 1.0) <= tolerance


def _interpolate(curve: list[tuple[float, float]], sparsity: float) -> float:
    points = sorted(curve)
    if sparsity <= points[0][0]:
        return points[0][1]
    for (s0, v0), (s1, v1) in zip(points, points[1:]):
        if s0 <= sparsity <= s1:
            return v0 + (sparsity - s0) * (v1 - v0) / (s1 - s0)
    return points[-1][1]
