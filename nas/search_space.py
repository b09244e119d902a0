"""EFTNAS search-space generation from importance scores (Munoz et al., LREC-COLING 2024, Sec. 3.1:
"search space generation"): for N MACs targets between a minimum and the dense model's MACs, a
global importance threshold is binary-searched until the widths it keeps hit the target; each
layer's choices are the union of its widths over the targets (plus the full width), sorted; a layer
whose width falls under 2% of full at some target may be skipped (width 0 is one of its choices).

Scores are min-max normalised within each family (heads, FFN neurons) over the whole encoder, so
one threshold in [0, 1] applies to both; a unit is kept when its normalised score is >= the
threshold (our reading of the reference implementation's thresholding of movement importance).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from pruning.atomic import atomic_write_text

SKIP_FRACTION = 0.02  # a layer below 2% of its full width becomes skippable (EFTNAS)


def encoder_macs(hidden: int, head_dim: int, heads: list[int], neurons: list[int], seq_len: int = 128) -> int:
    """MACs of one forward pass of a BERT encoder stack with per-layer widths, batch 1.

    Per layer and token: Q, K, V and output projections 4 x hidden x (heads x head_dim); attention
    scores and weighted sum 2 x seq_len x heads x head_dim; FFN 2 x hidden x neurons. Embeddings,
    LayerNorm, softmax, pooler and classifier are not counted (EFTNAS counts the encoder at sequence
    length 128). Checked against ``torch.utils.flop_counter`` in ``tests/test_nas.py``.

    Args:
        hidden: d, the hidden size.
        head_dim: Size of one head.
        heads: Heads kept per layer (length L).
        neurons: FFN neurons kept per layer (length L).
        seq_len: Tokens per sequence.

    Returns:
        MACs (an int).
    """
    total = 0
    for h, f in zip(heads, neurons, strict=True):
        width = h * head_dim
        total += seq_len * (4 * hidden * width + 2 * seq_len * width + 2 * hidden * f)
    return total


def _normalise(scores: list[torch.Tensor]) -> list[torch.Tensor]:
    flat = torch.cat([s.flatten().float() for s in scores])
    low, high = flat.min(), flat.max()
    span = (high - low).clamp_min(1e-12)
    return [(s.float() - low) / span for s in scores]


def widths_at_threshold(head_scores: list[torch.Tensor], neuron_scores: list[torch.Tensor],
                        threshold: float) -> tuple[list[int], list[int]]:
    """Heads and neurons kept per layer when units with normalised score >= ``threshold`` stay.

    Args:
        head_scores: Per layer, (H,) importance of each head.
        neuron_scores: Per layer, (F,) importance of each FFN neuron.
        threshold: In [0, 1]; 0 keeps everything.
    """
    heads = [int((s >= threshold).sum()) for s in _normalise(head_scores)]
    neurons = [int((s >= threshold).sum()) for s in _normalise(neuron_scores)]
    return heads, neurons


_OLD_NAMES = {"heads": "head_choices", "neurons": "ffn_choices"}  # search_space.json before 2026-11-30


@dataclass(frozen=True)
class SearchSpace:
    """Per-layer width choices of the super-network.

    Attributes:
        num_heads: H of the dense model; ``ffn_dim``: F; ``hidden``, ``head_dim``: sizes.
        head_choices: Per layer, the sorted head counts a subnetwork may keep (0 = attention skipped).
        ffn_choices: Per layer, the sorted FFN widths (0 = FFN skipped).
        targets: The MACs targets (fraction of dense MACs) the choices were generated for.
        achieved: MACs fraction the threshold reached for each target.
        thresholds: The normalised-importance threshold found for each target.
        seq_len: Sequence length the MACs are counted at.
    """

    num_heads: int
    ffn_dim: int
    hidden: int
    head_dim: int
    head_choices: tuple[tuple[int, ...], ...]
    ffn_choices: tuple[tuple[int, ...], ...]
    targets: tuple[float, ...]
    achieved: tuple[float, ...]
    thresholds: tuple[float, ...] = ()
    seq_len: int = 128

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the search space as JSON (atomically: temporary file, then rename)."""
        atomic_write_text(path, json.dumps(asdict(self), indent=1))

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> SearchSpace:
        """Read a search space written by :meth:`to_json` (also the files written before the choices
        were named ``head_choices`` / ``ffn_choices``, which called them ``heads`` / ``neurons``).

        Raises:
            ValueError: If the file is not a search space.
        """
        try:
            data = json.loads(Path(path).read_text())
            data = {_OLD_NAMES.get(key, key): value for key, value in data.items()}
            return cls(**{**data, "head_choices": tuple(map(tuple, data["head_choices"])),
                          "ffn_choices": tuple(map(tuple, data["ffn_choices"])), "targets": tuple(data["targets"]),
                          "achieved": tuple(data["achieved"]), "thresholds": tuple(data.get("thresholds", ()))})
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path} is not a search space written by this project ({err}).") from None


def generate_search_space(head_scores: list[torch.Tensor], neuron_scores: list[torch.Tensor], *, hidden: int,
                          head_dim: int, targets: list[float] | None = None, seq_len: int = 128,
                          tolerance: float = 0.01, max_iterations: int = 60) -> SearchSpace:
    """The EFTNAS search space for these importance scores.

    For each target fraction r of the dense encoder MACs, binary search on the threshold until
    :func:`encoder_macs` of :func:`widths_at_threshold` is within ``tolerance`` (as a fraction of
    dense MACs) of r; then per layer the union of widths over the targets, plus the full width;
    a width under 2% of full is replaced by 0 (the layer's sublayer can be skipped).

    Args:
        head_scores: Per layer, (H,).
        neuron_scores: Per layer, (F,).
        hidden: Hidden size d; ``head_dim``: size of one head.
        targets: MACs fractions in (0, 1); default 0.3, 0.4, ..., 0.9 (N = 7).
        seq_len: Sequence length of the MACs count (EFTNAS: 128).
        tolerance: Allowed |achieved - target|, as a fraction of dense MACs.
        max_iterations: Binary-search steps per target.

    Raises:
        ValueError: For empty or mismatched scores, or a target outside (0, 1).
    """
    if not head_scores or len(head_scores) != len(neuron_scores):
        raise ValueError("Give head and neuron scores for the same, non-empty list of layers.")
    targets = sorted(targets or [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    if any(not 0.0 < t < 1.0 for t in targets):
        raise ValueError(f"MACs targets must be fractions of the dense MACs in (0, 1), got {targets}.")
    n_heads, ffn = len(head_scores[0]), len(neuron_scores[0])
    layers = len(head_scores)
    dense = encoder_macs(hidden, head_dim, [n_heads] * layers, [ffn] * layers, seq_len)
    head_choices = [{n_heads} for _ in range(layers)]
    neuron_choices = [{ffn} for _ in range(layers)]
    achieved, thresholds = [], []
    for target in targets:
        low, high = 0.0, 1.0  # threshold: low keeps too much (or exactly), high too little
        best = None
        for _ in range(max_iterations):
            mid = (low + high) / 2
            heads, neurons = widths_at_threshold(head_scores, neuron_scores, mid)
            fraction = encoder_macs(hidden, head_dim, heads, neurons, seq_len) / dense
            if best is None or abs(fraction - target) < abs(best[0] - target):
                best = (fraction, heads, neurons, mid)
            if abs(fraction - target) <= tolerance:
                break
            if fraction > target:
                low = mid
            else:
                high = mid
        fraction, heads, neurons, threshold = best
        achieved.append(round(fraction, 4))
        thresholds.append(threshold)
        for layer in range(layers):
            head_choices[layer].add(heads[layer] if heads[layer] >= SKIP_FRACTION * n_heads else 0)
            neuron_choices[layer].add(neurons[layer] if neurons[layer] >= SKIP_FRACTION * ffn else 0)
    return SearchSpace(num_heads=n_heads, ffn_dim=ffn, hidden=hidden, head_dim=head_dim,
                       head_choices=tuple(tuple(sorted(c)) for c in head_choices),
                       ffn_choices=tuple(tuple(sorted(c)) for c in neuron_choices),
                       targets=tuple(targets), achieved=tuple(achieved), thresholds=tuple(thresholds),
                       seq_len=seq_len)
