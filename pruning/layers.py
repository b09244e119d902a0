"""Decoder layer selection: which k of the L decoder layers to keep.

Source: NASH (Ko et al., Findings of EMNLP 2023, arXiv 2310.10054), Sec. 4 "decoder
layer selection": *uniform* spreads the kept layers evenly, *low* keeps the bottom k,
*high* keeps the top k. The paper finds uniform selection works best.
"""

from __future__ import annotations

import math

LAYER_SELECTIONS = ("uniform", "low", "high")


def select_decoder_layers(num_layers: int, keep: int, how: str = "uniform") -> tuple[int, ...]:
    """Indices of the decoder layers to keep.

    Args:
        num_layers: L, decoder layers of the dense model (>= 1).
        keep: k, layers to keep, 1 <= k <= L.
        how: ``"uniform"`` keeps floor((L - 1) / (k - 1) * d) for d = 0 .. k-1
            (so 12 -> 3 keeps [0, 5, 11]; k = 1 keeps [0]); ``"low"`` keeps
            [0, k); ``"high"`` keeps [L - k, L).

    Returns:
        Strictly increasing tuple of k indices in [0, L).

    Raises:
        ValueError: If k is outside [1, L] or ``how`` is unknown.
    """
    if num_layers < 1:
        raise ValueError(f"The model has {num_layers} decoder layers; nothing to select from.")
    if not 1 <= keep <= num_layers:
        raise ValueError(f"Decoder layers to keep must be between 1 and {num_layers} (the model's count), got {keep}.")
    if how == "uniform":
        if keep == 1:
            return (0,)
        step = (num_layers - 1) / (keep - 1)
        # A tiny epsilon guards floor() against 4.999999 from float division.
        return tuple(min(num_layers - 1, math.floor(step * d + 1e-9)) for d in range(keep))
    if how == "low":
        return tuple(range(keep))
    if how == "high":
        return tuple(range(num_layers - keep, num_layers))
    raise ValueError(f"Unknown layer selection {how!r}; choose one of {', '.join(LAYER_SELECTIONS)}.")
