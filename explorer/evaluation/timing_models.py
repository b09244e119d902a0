"""Which model to time for a saved prune run, on a machine that may not hold its weights.

Timings (``explorer.evaluation.latency``) force generation to exactly ``new_tokens`` tokens from random
input ids, so they depend on a model's shapes, not on its weight values. A run restored from shipped
results on a new machine (``scripts/nash_tables.py --restore``: metrics, plan and predictions, no weights)
is therefore timed as its architecture: its plan.json applied to the pretrained model of its family.
Used by ``scripts/nash_retime.py`` and ``scripts/cofi_match.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from torch import nn

from explorer.evaluation.costs import count_params
from explorer.models.loading import load_model


def pretrained(spec: str) -> Callable[[], nn.Module]:
    """A loader of ``spec``'s dense model (``explorer.models.loading.load_model``), read on first call
    and then shared (:func:`timing_model` copies it for each plan).

    Raises (on first call): what ``load_model`` raises for an unknown or unreachable model."""
    cache: list[nn.Module] = []

    def base() -> nn.Module:
        if not cache:
            cache.append(load_model(spec).model.eval())
        return cache[0]
    return base


def dense_for_timing(run: dict) -> tuple[nn.Module, str]:
    """The dense model to time a run against: the fine-tune it was pruned from
    (``run["dense_finetune"]["path"]``, a prune run's metrics.json) when that is on this machine, else
    the pretrained model of the same architecture (``run["settings"]["model"]``), which times the same.
    Returns ``(model, "fine-tuned")`` or ``(model, "pretrained")``."""
    path = (run.get("dense_finetune") or {}).get("path")
    if path and Path(path).exists():
        return load_model(path).model.eval(), "fine-tuned"
    return load_model(run["settings"]["model"]).model.eval(), "pretrained"


def timing_model(run_dir: str | Path, base: Callable[[], nn.Module]) -> tuple[nn.Module, str]:
    """The model to time for a saved prune run folder (``pruning.save_pruned``).

    Its own weights when the folder holds them; otherwise (a run restored from shipped results on a
    new machine, ``scripts/nash_tables.py --restore``) its architecture: the plan.json applied to
    ``base()``, a dense model of the run's family (the pretrained one), by ``pruning.apply_plan``.
    Timing here does not depend on weight values: generation is forced to exactly ``new_tokens``
    tokens (:func:`exact_length_generation_config`) from random input ids, so equal shapes do equal
    work. Returns ``(model, "weights")`` or ``(model, "architecture")``.

    Either way, when the folder's metrics.json records the pruned model's parameter count
    (``measurements.pruned.params.params_m``, ``scripts/prune.py``), the model returned has exactly
    that many parameters: a rebuilt architecture that differs from the run's is refused, not timed.

    Raises:
        FileNotFoundError: ``run_dir`` has neither weights nor a plan.json.
        ValueError: the plan does not fit ``base()``, or the model's parameter count differs from
            the one recorded in metrics.json.
    """
    from pruning import load_pruned
    from pruning.plan import PruningPlan
    from pruning.surgery import apply_plan

    run_dir = Path(run_dir)
    if any(run_dir.glob("*.safetensors")):
        model, how = load_pruned(run_dir), "weights"
    else:
        model, how = apply_plan(base(), PruningPlan.load(run_dir)).eval(), "architecture"
    recorded = recorded_params(run_dir)
    if recorded is not None:
        counted = round(count_params(model)["params_m"] * 1e6)
        if counted != recorded:
            raise ValueError(f"{run_dir}: the model to time ({how}) has {counted:,} parameters, the run recorded "
                             f"{recorded:,}; its plan.json does not rebuild the run's architecture on this base model")
    return model, how


def recorded_params(run_dir: str | Path) -> int | None:
    """The pruned model's parameter count a run folder's metrics.json records
    (``measurements.pruned.params.params_m``, millions, stored unrounded), as a whole number; None when
    the folder has no metrics.json or it records none."""
    path = Path(run_dir) / "metrics.json"
    if not path.exists():
        return None
    params = json.loads(path.read_text()).get("measurements", {}).get("pruned", {}).get("params", {})
    return round(params["params_m"] * 1e6) if "params_m" in params else None
