"""EFTNAS run folders: reading a finished run, listing the user's and the shipped reference runs,
choosing a front member for a budget, extracting it from the super-network, and saving it as a
run the Pareto tab lists.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from explorer.data.tasks import get_task
from explorer.evaluation.classify import classifier_latency_ms
from explorer.paths import ASSETS
from nas.records import FrontPoint, RunSummary

FRONT_FILE = "front.json"
RUN_FILE = "eftnas.json"


def load_run(directory: str | os.PathLike) -> RunSummary:
    """The summary of a finished run (its ``eftnas.json``; older files with ``heads`` / ``neurons`` /
    ``metric`` keys in the front are read too).

    Raises:
        ValueError: If the folder is not a finished EFTNAS run.
    """
    try:
        return RunSummary.from_dict(json.loads((Path(directory) / RUN_FILE).read_text()))
    except (OSError, json.JSONDecodeError, ValueError) as err:
        raise ValueError(f"{directory} is not a finished EFTNAS run ({err}); "
                         f"run `python -m explorer eftnas`.") from None


def front_json(front: list[FrontPoint]) -> str:
    """The JSON text of a front, as ``front.json`` holds it."""
    return json.dumps([p.to_dict() for p in front], indent=1, default=str)


def best_for_budget(front: list[FrontPoint], *, max_macs_fraction: float | None = None,
                    max_latency_ms: float | None = None) -> FrontPoint | None:
    """The front member with the best search metric within the budget (None if none fits)."""
    fits = [p for p in front if (max_macs_fraction is None or p.macs_fraction <= max_macs_fraction + 1e-9)
            and (max_latency_ms is None or p.latency_ms <= max_latency_ms + 1e-9)]
    return max(fits, key=lambda p: (p.search_metric, -p.macs), default=None)


def extract_for_budget(directory: str | os.PathLike, point: FrontPoint):
    """``(subnetwork, plan, seconds)``: extract a front member from a saved run's super-network
    (plain surgery; no NNCF, no training)."""
    from nas import extract_subnetwork
    from nas.supernet import load_supernetwork

    model, _, _ = load_supernetwork(Path(directory) / "supernet")
    start = time.perf_counter()
    sub, plan = extract_subnetwork(model, list(point.head_widths), list(point.ffn_widths),
                                   notes={"macs_fraction": point.macs_fraction})
    return sub, plan, round(time.perf_counter() - start, 3)


def reported_split(directory: str | os.PathLike) -> tuple[RunSummary, object, list[dict], list]:
    """``(summary, tokenizer, rows, labels)``: the examples an EFTNAS run's front was scored on (its task's
    reported split, GLUE dev, limited as the run was), tokenized by the run's dense tokenizer
    (``explorer.evaluation.classify.tokenize``); ``labels`` are the rows' gold labels, in order.

    Raises:
        ValueError: If the folder is not a finished EFTNAS run.
    """
    from transformers import AutoTokenizer

    from explorer.data.splits import load_split
    from explorer.evaluation.classify import tokenize

    summary = load_run(directory)
    settings, spec = summary.settings, get_task(summary.task)
    tokenizer = AutoTokenizer.from_pretrained(Path(directory) / "dense")
    rows = tokenize(tokenizer, load_split(spec, spec.eval_split, settings["data_dir"], limit=settings["eval_samples"]),
                    settings["max_tokens"], regression=spec.kind == "regression")
    return summary, tokenizer, rows, [r["labels"] for r in rows]


def run_models(directory: str | os.PathLike, summary: RunSummary, only: list[str] | None = None) -> list[tuple]:
    """``[(name, load), ...]``: the dense classifier (``"dense"``) and every front member (``"61% MACs"``) of a
    saved run, each with a function that loads it (the dense weights, or extraction from the super-network), so
    that one model at a time is in memory. ``only``: names to keep (``"dense"``, or MACs labels such as
    ``"61%"``); None keeps all."""
    from nas.supernet import load_classifier_weights

    models = [("dense", lambda: load_classifier_weights(Path(directory) / "dense"))]
    models += [(f"{p.macs_fraction:.0%} MACs", lambda p=p: extract_for_budget(directory, p)[0]) for p in summary.front]
    return [(name, load) for name, load in models if not only or name.split(" ")[0] in only]


REFERENCE_DIR = ASSETS / "reference_eftnas"


def eftnas_root(root: str | os.PathLike | None = None) -> Path:
    """Where the explorer keeps EFTNAS runs: ``<runs folder>/eftnas`` (created)."""
    from explorer.runs.store import runs_root

    path = runs_root(root) / "eftnas"
    path.mkdir(parents=True, exist_ok=True)
    return path


def list_eftnas_runs(root: str | os.PathLike | None = None) -> dict[str, Path]:
    """``{label: folder}`` of finished EFTNAS runs: the user's (newest first), then the shipped
    reference runs (``assets/reference_eftnas``: results only, no weights)."""
    from explorer.runs.store import runs_root

    found = {}
    mine = runs_root(root) / "eftnas"
    for folder in sorted(mine.iterdir() if mine.is_dir() else (), reverse=True):
        if (folder / RUN_FILE).is_file() and not folder.name.startswith("."):
            found[folder.name] = folder
    if REFERENCE_DIR.is_dir():
        for folder in sorted(REFERENCE_DIR.iterdir()):
            if (folder / RUN_FILE).is_file():
                found[f"{folder.name} (reference, no weights)"] = folder
    return found


def has_supernetwork(directory: str | os.PathLike) -> bool:
    """Whether a run folder holds trained super-network weights (reference runs do not)."""
    return any((Path(directory) / "supernet").glob("*.safetensors"))


def choose(summary: RunSummary, budget: str, value: float) -> FrontPoint:
    """The best front member within a budget: ``budget`` is ``macs`` (``value`` in % of dense MACs)
    or ``latency`` (``value`` in ms on the machine the run was measured on).

    Raises:
        ValueError: For an unknown budget kind or a budget no subnetwork fits (says the smallest).
    """
    front = summary.front
    if budget == "macs":
        point = best_for_budget(front, max_macs_fraction=value / 100.0)
        smallest = f"{100 * min(p.macs_fraction for p in front):.1f}% of dense MACs"
    elif budget == "latency":
        point = best_for_budget(front, max_latency_ms=value)
        smallest = f"{min(p.latency_ms for p in front):.2f} ms"
    else:
        raise ValueError(f"Unknown budget {budget!r}; use 'macs' or 'latency'.")
    if point is None:
        raise ValueError(f"No subnetwork on the front fits this budget; the smallest needs {smallest}.")
    return point


def subnetwork_metrics(summary: RunSummary, point: FrontPoint, *, latency_ms: float, extraction_s: float) -> dict:
    """``metrics.json`` of a subnetwork saved as a run, in the format of NASH runs (so it joins the
    Pareto tab): latency is one classification forward at 128 tokens (no decoder)."""
    metric, dense = summary.metric, summary.dense
    spec = get_task(summary.task)

    def side(quality, gmacs, latency, params):
        return ({"metrics": quality, "main_metric": metric, "higher_is_better": spec.higher_is_better,
                 "split": summary.eval_split, "num_examples": summary.eval_examples},
                {"latency": {"latency_ms": latency, "decode_ms_per_token": None}, "macs": {"gmacs": gmacs},
                 "params": {"params_m": params}})

    dq, dm = side(dense["eval"], dense["gmacs"], dense["latency_ms"], dense["params_m"])
    pq, pm = side(point.eval, point.gmacs, latency_ms, point.params_m)
    heads, neurons = point.head_widths, point.ffn_widths
    return {"method": "eftnas", "model": summary.model, "task": summary.task, "family": "bert",
            "weights": summary.weights, "device": summary.device,
            "plan_summary": f"EFTNAS subnetwork: heads {heads}, FFN {neurons}, {100 * point.macs_fraction:.1f}% "
                            f"of dense MACs", "encoder_sparsity_achieved": round(1 - point.macs_fraction, 4),
            "decoder_layers_kept": None, "quality": {"dense": dq, "pruned": pq},
            "measurements": {"dense": dm, "pruned": pm}, "extraction_s": extraction_s,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def add_to_pareto(directory: str | os.PathLike, point: FrontPoint, root: str | os.PathLike | None = None) -> Path:
    """Extract ``point`` from a run's super-network, time it here, and save it as a run (model,
    ``plan.json``, ``metrics.json``) in the runs folder, where the Pareto tab lists it beside NASH
    runs. Returns the run folder.

    Raises:
        ValueError: If the run has no super-network weights (a reference run).
    """
    from explorer.runs.store import new_run_dir, runs_root
    from pruning import save_pruned

    directory = Path(directory)
    if not has_supernetwork(directory):
        raise ValueError("This run has no super-network weights (reference runs ship results only); train one "
                         "in this tab or with `python -m explorer eftnas`.")
    summary = load_run(directory)
    sub, plan, seconds = extract_for_budget(directory, point)
    latency = classifier_latency_ms(sub)
    metrics = subnetwork_metrics(summary, point, latency_ms=latency, extraction_s=seconds)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory / "supernet")
    out = new_run_dir(runs_root(root), summary.model, summary.task,
                      f"eftnas-{round(100 * point.macs_fraction)}pct")
    save_pruned(sub, plan, out, tokenizer=tokenizer, extra_files={"metrics.json": metrics})
    return out
