"""EFTNAS step 5: NSGA-II over a :class:`~nas.search_space.SearchSpace` for the Pareto front of
encoder MACs against a validation metric (Munoz et al., LREC-COLING 2024, Sec. 3.4, which searches
the trained super-network with NSGA-II (Deb et al., IEEE TEC 2002) through BootstrapNAS; here
pymoo's ``NSGA2``).

A subnetwork is one width choice per layer for heads and for FFN neurons: 2L integer variables,
each an index into that layer's sorted choices (pymoo's integer recipe: integer random sampling,
SBX crossover and polynomial mutation with rounding repair). The objectives, both minimised, are
the encoder MACs at the space's sequence length and the negated metric. Each configuration is
evaluated once (a cache); the metric comes from the caller, e.g. a subnetwork's accuracy on
validation examples, so the search knows nothing of models.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .records import FrontPoint, SubnetworkConfig
from .search_space import SearchSpace, encoder_macs

Config = tuple[tuple[int, ...], tuple[int, ...]]  # (heads per layer, FFN neurons per layer)


def decode(space: SearchSpace, x) -> Config:
    """The widths a variable vector (2L indices into the choices, heads first) stands for."""
    layers = len(space.head_choices)
    x = [int(round(float(v))) for v in x]
    heads = tuple(space.head_choices[i][x[i]] for i in range(layers))
    neurons = tuple(space.ffn_choices[i][x[layers + i]] for i in range(layers))
    return heads, neurons


def pareto_front(candidates: list[FrontPoint]) -> list[FrontPoint]:
    """The candidates no other candidate dominates (lower or equal MACs and higher or equal metric,
    one of them strictly), by increasing MACs."""
    def dominates(o: FrontPoint, c: FrontPoint) -> bool:
        return (o.macs <= c.macs and o.search_metric >= c.search_metric
                and (o.macs < c.macs or o.search_metric > c.search_metric))

    front = [c for c in candidates if not any(dominates(o, c) for o in candidates)]
    unique = {c.config: c for c in front}
    return sorted(unique.values(), key=lambda c: (c.macs, -c.search_metric))


def nsga2_search(space: SearchSpace, metric: Callable[[tuple[int, ...], tuple[int, ...]], float], *,
                 population: int = 20, generations: int = 10, seed: int = 0,
                 include_extremes: bool = True) -> tuple[list[FrontPoint], list[FrontPoint]]:
    """Search ``space`` with NSGA-II.

    Args:
        space: The search space (choices per layer).
        metric: ``metric(heads, neurons)`` -> validation score, larger is better (called once per
            distinct configuration).
        population: NSGA-II population size.
        generations: Generations (the number of evaluations is at most population x generations).
        seed: pymoo's seed.
        include_extremes: Seed the first population with the largest and the smallest subnetwork
            (BootstrapNAS evaluates both), so the front spans the whole space.

    Returns:
        ``(front, evaluated)``: the Pareto front of everything evaluated (by increasing MACs) and
        every distinct configuration evaluated.

    Raises:
        ValueError: For population < 2 or generations < 1.
    """
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import ElementwiseProblem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.optimize import minimize

    if population < 2 or generations < 1:
        raise ValueError(f"NSGA-II needs population >= 2 and generations >= 1, got {population}, {generations}.")
    layers = len(space.head_choices)
    upper = np.array([len(c) - 1 for c in space.head_choices] + [len(c) - 1 for c in space.ffn_choices])
    seen: dict[Config, FrontPoint] = {}

    def evaluate(config: Config) -> FrontPoint:
        if config not in seen:
            heads, neurons = config
            seen[config] = FrontPoint(SubnetworkConfig(heads, neurons),
                                      encoder_macs(space.hidden, space.head_dim, list(heads), list(neurons),
                                                   space.seq_len),
                                      float(metric(heads, neurons)))
        return seen[config]

    class Widths(ElementwiseProblem):
        def __init__(self):
            super().__init__(n_var=2 * layers, n_obj=2, xl=np.zeros(2 * layers), xu=upper, vtype=int)

        def _evaluate(self, x, out, *args, **kwargs):
            c = evaluate(decode(space, x))
            out["F"] = [c.macs, -c.search_metric]

    sampling = IntegerRandomSampling()
    if include_extremes:
        rng = np.random.default_rng(seed)
        start = rng.integers(0, upper + 1, size=(population, 2 * layers))
        start[0], start[1] = upper, 0
        sampling = start
    algorithm = NSGA2(pop_size=population, sampling=sampling,
                      crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
                      mutation=PM(eta=20, vtype=float, repair=RoundingRepair()), eliminate_duplicates=True)
    minimize(Widths(), algorithm, ("n_gen", generations), seed=seed, verbose=False)
    evaluated = list(seen.values())
    return pareto_front(evaluated), evaluated
