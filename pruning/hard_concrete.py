"""The L0 machinery every gate family shares: the hard-concrete gate, the Lagrangian that pulls an
expected sparsity to its target, and the small pieces the gate families (``pruning.gates`` for
NASH's encoder and decoder-layer gates, ``pruning.cofi`` for CoFi's) build on: hook bookkeeping, a
unit gate widened over its columns, and "remove the lowest log alpha until the budget is met".

Sources:
    * Hard concrete: Louizos, Welling and Kingma, "Learning Sparse Neural Networks through L0
      Regularization", ICLR 2018, Sec. 2.3 (stretched, clamped binary concrete), Eq. 12 (the
      probability that a gate is non-zero) and Eq. 13 (the test-time gate).
    * Lagrangian lambda1 (s - t) + lambda2 (s - t)^2 with the multipliers trained by gradient
      ascent and the target t ramped linearly: Wang, Wohlwend and Lei, "Structured Pruning of
      Large Language Models", EMNLP 2020, Sec. 3.2, as CoFi (Xia et al., ACL 2022, Sec. 3.2) and
      NASH (Ko et al. 2023, Sec. 3.2) use it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

LIMITS = (-0.1, 1.1)  # stretch interval (l, r), Louizos et al. Sec. 2.3
TEMPERATURE = 2.0 / 3.0  # beta
LOG_ALPHA_RANGE = (math.log(1e-2), math.log(1e2))  # log alpha is clamped here after every update
EPS = 1e-6


class HardConcrete(nn.Module):
    """``n`` hard-concrete gates z in [0, 1] with learnable location ``log_alpha`` (n,).

    Training mode samples z = min(1, max(0, sigmoid((log u - log(1 - u) + log_alpha) / beta)
    (r - l) + l)), u ~ U(0, 1); eval mode gives the test-time gate of Eq. 13,
    min(1, max(0, sigmoid(log_alpha) (r - l) + l)).

    Args:
        n: Number of gates.
        init_drop_rate: Initial probability p of dropping a unit; ``log_alpha`` starts at
            log(1 - p) - log(p) (0 for p = 0.5) plus N(0, ``init_std``) noise.
        temperature: beta.
        limits: (l, r) with l < 0 < 1 < r.

    Raises:
        ValueError: For n < 1, p outside (0, 1) or limits not around [0, 1].
    """

    def __init__(self, n: int, init_drop_rate: float = 0.5, temperature: float = TEMPERATURE,
                 limits: tuple[float, float] = LIMITS, init_std: float = 0.01):
        super().__init__()
        if n < 1 or not 0.0 < init_drop_rate < 1.0 or not limits[0] < 0.0 < 1.0 < limits[1]:
            raise ValueError(f"HardConcrete needs n >= 1, 0 < init_drop_rate < 1 and l < 0 < 1 < r; got {n}, "
                             f"{init_drop_rate}, {limits}.")
        self.temperature, self.limits = temperature, limits
        loc = math.log(1.0 - init_drop_rate) - math.log(init_drop_rate)
        self.log_alpha = nn.Parameter(torch.full((n,), loc) + init_std * torch.randn(n))

    def forward(self) -> torch.Tensor:
        """Gate values, (n,): a sample in training mode, the test-time gate in eval mode."""
        low, high = self.limits
        if self.training:
            u = torch.rand_like(self.log_alpha).clamp(EPS, 1.0 - EPS)
            s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / self.temperature)
        else:
            s = torch.sigmoid(self.log_alpha)
        return (s * (high - low) + low).clamp(0.0, 1.0)

    def prob_nonzero(self) -> torch.Tensor:
        """P(z > 0) per gate, (n,): sigmoid(log_alpha - beta log(-l / r)) (Louizos et al. Eq. 12);
        its sum is the expected number of kept units (the expected L0 norm)."""
        low, high = self.limits
        return torch.sigmoid(self.log_alpha - self.temperature * math.log(-low / high))

    def deterministic(self) -> torch.Tensor:
        """Final gates, (n,): the round(n - E[L0]) gates with the lowest log_alpha are 0, the
        others keep their test-time value (NASH / CoFi)."""
        with torch.no_grad():
            z = self.eval_values()
            zeros = int(round(len(z) - float(self.prob_nonzero().sum())))
            if zeros > 0:
                z[torch.argsort(self.log_alpha, stable=True)[:zeros]] = 0.0
            return z

    def eval_values(self) -> torch.Tensor:
        """The test-time gate (Eq. 13), (n,), without gradient."""
        with torch.no_grad():
            low, high = self.limits
            return (torch.sigmoid(self.log_alpha) * (high - low) + low).clamp(0.0, 1.0)

    def clamp_(self) -> None:
        """Keep log_alpha in ``LOG_ALPHA_RANGE`` (call after each optimizer step)."""
        with torch.no_grad():
            self.log_alpha.clamp_(*LOG_ALPHA_RANGE)


def target_sparsity(step: int, target: float, warmup_steps: int) -> float:
    """The Lagrangian's target at ``step``: 0 at step 0, rising linearly to ``target`` at
    ``warmup_steps``, then constant (Wang et al. 2020; CoFi's warm-up).

    Raises:
        ValueError: For a target outside [0, 1) or a negative warm-up.
    """
    if not 0.0 <= target < 1.0 or warmup_steps < 0:
        raise ValueError(f"Target sparsity must be in [0, 1) and warm-up >= 0; got {target}, {warmup_steps}.")
    if warmup_steps == 0:
        return target
    return target * min(1.0, step / warmup_steps)


class Lagrangian(nn.Module):
    """lambda1 (s - t) + lambda2 (s - t)^2, with lambda1 and lambda2 starting at 0.

    The model and gates minimise it; the multipliers maximise it: give ``parameters()`` of
    this module to an optimizer with ``maximize=True`` (gradient ascent). While the expected
    sparsity s is below the target t, ascent drives lambda1 negative, so the term rewards a
    larger s; lambda2 grows with every step the constraint is violated.
    """

    def __init__(self):
        super().__init__()
        self.lambda1 = nn.Parameter(torch.zeros(()))
        self.lambda2 = nn.Parameter(torch.zeros(()))

    def forward(self, expected: torch.Tensor, target: float) -> torch.Tensor:
        """The Lagrangian term (scalar) for expected sparsity ``expected`` and target ``target``."""
        gap = expected - target
        return self.lambda1 * gap + self.lambda2 * gap * gap


def expand_units(z: torch.Tensor, width: int) -> torch.Tensor:
    """A gate per unit widened to the unit's columns: (n,) -> (n x width,), each gate repeated
    ``width`` times (a head owns head_dim columns of its attention output projection's input; an
    FFN neuron owns one column of the FFN output projection's input)."""
    return z.repeat_interleave(width) if width > 1 else z


class GateHooks(nn.Module):
    """Base of a gate family that acts on a model through hooks: it keeps their handles, scales a
    Linear's input by unit gates (:meth:`_scale_input`) and removes every hook it registered
    (:meth:`detach`). Subclasses register their hooks in ``attach(model)``."""

    def __init__(self):
        super().__init__()
        self._handles: list = []

    def _keep(self, handle) -> None:
        self._handles.append(handle)

    def _scale_input(self, linear: nn.Module, gate: Callable[[], torch.Tensor], width: int) -> None:
        """Register a forward pre-hook on ``linear`` that multiplies its input (B, T, n x width) by
        ``expand_units(gate(), width)``; ``gate`` is called at every forward (the current draw)."""
        def hook(_module, args):
            (x,) = args  # (B, T, units x width)
            return (x * expand_units(gate().to(x.dtype), width),)
        self._keep(linear.register_forward_pre_hook(hook))

    def _forget(self) -> None:
        """Clear per-forward state after the hooks are removed (subclasses override)."""

    def detach(self) -> None:
        """Remove every hook this object registered."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._forget()


def drop_lowest(log_alphas: Sequence[torch.Tensor], kept: list[set[int]], need: float,
                cost: Sequence[float]) -> int:
    """Remove kept units, in place, lowest log alpha first across all groups, at least one left per
    group, until the removed cost reaches ``need``.

    The step that makes a short gate training meet its budget anyway (our addition to NASH / CoFi,
    whose deterministic gates keep whatever the Lagrangian reached): ``EncoderGates.plan`` counts
    units (cost 1 each, per family), ``CoFiGates.plan`` counts parameters (cost per unit of the
    block).

    Args:
        log_alphas: Per group (a layer's heads, a block's units), the gates' log alpha, (n_g,).
        kept: Per group, the unit indices still kept; updated in place.
        need: Cost still to remove (units or parameters); nothing happens when it is <= 0.
        cost: Per group, the cost of one of its units.

    Returns:
        How many units were removed (0: none).
    """
    removed = 0
    candidates = sorted((float(a.detach()[j]), g, j) for g, a in enumerate(log_alphas) for j in kept[g])
    for _, g, j in candidates:
        if need <= 0:
            break
        if len(kept[g]) > 1:
            kept[g].discard(j)
            need -= cost[g]
            removed += 1
    return removed
