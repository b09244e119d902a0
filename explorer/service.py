"""What the explorer's tabs call: plain functions, tested without the UI.

The UI turns the ``ValueError``s raised here into ``gr.Error`` messages; nothing in
this module knows Gradio.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from .finetune import DONE_FILE, FinetuneSettings, dense_cache_dir, resolve_device
from .models import OFFLINE_MODELS, LoadedModel, load_model, peek_config, peek_decoder_layers
from .pareto import COST_AXES, REPORTED_COLUMNS, SCALES, make_pareto_figure, runs_table
from .paths import cache_root
from .pipeline import Cancelled, PruneSettings, TimingSettings, run_prune
from .runs import Run, get_run, list_runs, new_run_dir, runs_root, zip_run
from .tasks import Example, compute_metrics, get_task, list_tasks, load_split, task_folder

ASSETS = Path(__file__).resolve().parent.parent / "assets"


METHODS = {"NASH (training-free)": "nash-training-free", "NASH (learned gates)": "nash-learned",
           "Decoder only (baseline)": "decoder-only", "CoFi (baseline, encoder and decoder widths)": "cofi"}


def model_choices() -> list[tuple[str, str]]:
    """(label, spec) pairs for the model picker: offline models first, marked."""
    return [(f"{name} (offline)", name) for name in OFFLINE_MODELS]


def task_choices() -> list[str]:
    """Every registered task name."""
    return list_tasks()


def decoder_layer_count(model: str) -> int:
    """Decoder layers of a model spec (for the slider's maximum).

    Raises:
        ValueError: For unknown, unsupported or unreachable models.
    """
    return peek_decoder_layers(model)


class CancelTokens:
    """One cancel flag per browser session: the Prune button makes a fresh one, the Cancel
    button sets it, and the running job stops at its next progress report (within one
    training step or generation batch)."""

    def __init__(self):
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def new(self, key: str) -> threading.Event:
        """A fresh, unset flag for ``key`` (replacing any earlier one)."""
        with self._lock:
            self._events[key] = threading.Event()
            return self._events[key]

    def cancel(self, key: str) -> bool:
        """Set the flag of ``key``; False when that session has no job."""
        with self._lock:
            event = self._events.get(key)
        if event is None:
            return False
        event.set()
        return True


CANCEL = CancelTokens()


def start_prune(settings: PruneSettings, root: str | None = None,
                progress: Callable[[float, str], None] | None = None,
                cancel: threading.Event | None = None) -> Run:
    """Run a prune (``settings.method``) into a new run folder of the runs store and return the run.

    Args:
        settings: What to run.
        root: Runs folder (default: ``EXPLORER_RUNS`` or ``<cache>/runs``).
        progress: ``progress(fraction in [0, 1], stage message)``.
        cancel: When set, the run stops at its next progress report.

    Raises:
        ValueError: As ``pipeline.run_prune`` does.
        Cancelled: When ``cancel`` was set; no run folder is left behind.
    """
    def say(fraction: float, message: str) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("Run cancelled; nothing was saved (earlier runs are untouched).")
        if progress:
            progress(fraction, message)

    store = runs_root(root)
    label = f"{settings.method}-s{settings.encoder_sparsity:g}-k{settings.decoder_layers}-{settings.layer_selection}"
    folder = new_run_dir(store, settings.model, settings.task, label)
    run_prune(settings, folder, progress=say, keep_unfinished=False)
    return get_run(folder.name, store)


_THROUGHPUT: dict[str, float] = {}


def _matmul_flops_per_s(device: str) -> float:
    """Measured fp32 matmul throughput of this device (FLOP/s), once per process (0.2 s)."""
    import torch

    if device not in _THROUGHPUT:
        a = torch.randn(1024, 1024, device=device)
        b = torch.randn(1024, 1024, device=device)
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < 0.2:
            a @ b
            n += 1
        if device == "cuda":
            torch.cuda.synchronize()
        _THROUGHPUT[device] = 2 * 1024 ** 3 * n / (time.perf_counter() - start)
    return _THROUGHPUT[device]


def _linear_params(spec: str) -> int:
    """Weights in the Linear layers of a model spec (built on the meta device: no memory, no download)."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, EncoderDecoderModel

    config = peek_config(spec)
    with torch.device("meta"):
        model = (EncoderDecoderModel(config) if config.model_type == "encoder-decoder"
                 else AutoModelForSeq2SeqLM.from_config(config))
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def _tokens_per_step(task: str, ft: dict) -> int:
    spec = get_task(task)
    return ft.get("batch_size", 16) * ((ft.get("max_source_tokens") or spec.max_source_tokens)
                                      + (ft.get("max_target_tokens") or spec.max_target_tokens))


def finetune_estimate(settings: PruneSettings) -> dict:
    """How long a Prune request will train, and on what that guess rests: the dense fine-tune
    (unless cached), then gate training (``nash-learned``, ``cofi``) and recovery fine-tuning.

    Seconds per step come, in order of preference, from the measured seconds per step of an
    earlier dense fine-tune of the same model on the same device, scaled by tokens per step
    (batch x the task's source + target lengths); else from 6 x (Linear weights) x (tokens per
    step) training FLOPs (Kaplan et al. 2020, Sec. 2.1) over this device's measured fp32 matmul
    speed at 50% utilisation, a rough figure and said to be one. A gate-training step with
    distillation also runs the teacher's forward, counted as a third of a training step; recovery
    steps are counted at the dense model's cost (the pruned model is faster: an upper bound).

    Returns:
        ``{"cached": bool, "steps": int, "seconds": float, "training_steps": int,
        "training_seconds": float, "basis": str, "text": str}``: ``steps`` / ``seconds`` of the
        dense fine-tune (0 when cached), ``training_*`` of gate training plus recovery.

    Raises:
        ValueError: For an unknown model, task or device.
    """
    from dataclasses import asdict

    ft = settings.finetune
    cached = (dense_cache_dir(settings.model, settings.task, settings.data_dir, ft) / DONE_FILE).exists()
    gate_steps = settings.gate_steps if settings.method in ("nash-learned", "cofi") else 0
    after = gate_steps + settings.recovery_steps
    device = resolve_device(settings.device)
    if cached and not after:
        return {"cached": True, "steps": 0, "seconds": 0.0, "training_steps": 0, "training_seconds": 0.0,
                "basis": "cache", "text": f"The dense {settings.model} is already fine-tuned for {settings.task} "
                                          "(cached): the run starts with pruning."}
    tokens = _tokens_per_step(settings.task, asdict(ft))
    history = []
    for summary_file in sorted((cache_root() / "finetuned").glob(f"*/{DONE_FILE}")):
        try:
            done = json.loads(summary_file.read_text())
            if done["model"] == settings.model and done["device"] == device and done["steps"] > 0:
                per_token = done["wall_s"] / done["steps"] / _tokens_per_step(done["task"], done.get("settings", {}))
                history.append((done["task"] != settings.task, per_token * tokens))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if history:
        per_step = min(history)[1]
        basis = "an earlier fine-tune of this model on this device"
    else:
        per_step = 6 * _linear_params(settings.model) * tokens / (0.5 * _matmul_flops_per_s(device))
        basis = "6 x weights x tokens FLOPs over this machine's measured matmul speed; rough"
    seconds = 0.0 if cached else per_step * ft.max_steps
    teacher = 4 / 3 if settings.distill else 1.0
    training = per_step * (gate_steps * teacher + settings.recovery_steps)
    if cached:
        text = f"The dense {settings.model} is already fine-tuned for {settings.task} (cached)."
    else:
        text = (f"{settings.model} is not yet fine-tuned for {settings.task}: the run first fine-tunes it for "
                f"{ft.max_steps} steps on {device}, about {_duration(seconds)}; the result is cached for every later "
                "run.")
    if after:
        plural = lambda n, what: f"{n} {what}" + ("" if n == 1 else "s")  # noqa: E731
        parts = ([plural(gate_steps, "gate-training step") + (" with distillation" if settings.distill else "")]
                 if gate_steps else []) + ([plural(settings.recovery_steps, "recovery step")] if settings.recovery_steps
                                           else [])
        text += f" Then {' and '.join(parts)}: about {_duration(training)}."
    text += f" (Estimated from {basis}.)"
    return {"cached": cached, "steps": 0 if cached else ft.max_steps, "seconds": seconds, "training_steps": after,
            "training_seconds": training, "basis": basis, "text": text}


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def reference_folders() -> list[Path]:
    """The folders of shipped reference runs: ``assets/reference_runs`` (rotten_tomatoes, made by
    ``scripts/reference_runs.sh``) and ``assets/reference_runs_*`` (e.g. the SAMSum method
    comparison of ``scripts/samsum_comparison.sh``), each with its own ``provenance.json``."""
    return sorted(f for f in ASSETS.glob("reference_runs*") if f.is_dir())


def reference_table(task: str | None = None) -> pd.DataFrame:
    """The reference runs shipped in ``assets/`` (measured by this project's scripts; see
    :func:`reference_folders`), their provenance in the ``source`` column."""
    tables = []
    for folder in reference_folders():
        try:
            prov = json.loads((folder / "provenance.json").read_text())
            source = f"reference run: {prov['command']}, {prov['date']}, commit {prov['commit']}"
        except (OSError, json.JSONDecodeError, KeyError):
            source = f"reference run (assets/{folder.name})"
        tables.append(runs_table([(r.run_id, r.metrics) for r in list_runs(folder)], reference=source))
    tables = [t for t in tables if not t.empty]
    table = pd.concat(tables, ignore_index=True) if tables else runs_table([])
    return table if task is None else table[table["task"] == task].reset_index(drop=True)


def find_run(run_id: str, root: str | None = None) -> Run:
    """A run of the user's runs folder or a shipped reference run, by its folder name.

    Raises:
        ValueError: If neither has it.
    """
    for folder in [runs_root(root), *reference_folders()]:
        for run in list_runs(folder):
            if run.run_id == run_id:
                return run
    raise ValueError(f"No run named {run_id!r}: pick one from the list (your runs and the reference runs).")


def plan_runs(task: str, root: str | None = None) -> list[str]:
    """Run ids on ``task`` whose plan can be drawn: the user's (newest first), then reference runs."""
    own = [r.run_id for r in list_runs_for_ui(root) if r.metrics.get("task") == task]
    return own + reference_table(task)["run_id"].tolist()


def plan_view(run_id: str, root: str | None = None):
    """(figure, caption) of what run ``run_id`` removed: encoder heads x layers (with gate values
    for learned runs), FFN neurons kept per layer, decoder layers kept.

    Raises:
        ValueError: For an unknown run or a broken ``plan.json``.
    """
    from .planview import plan_figure

    run = find_run(run_id, root)
    try:
        plan = json.loads((run.path / "plan.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{run_id}: plan.json cannot be read ({err}).") from None
    gates = (run.metrics.get("gate_training") or {}).get("gates")
    caption = (f"{_explain(run)}. Method: {run.metrics.get('method', 'nash-training-free')}"
               + ("; cells show each kept head's learned gate value, folded into its weights." if gates else "."))
    return plan_figure(plan, run.metrics, title=run_id), caption


def reported_points() -> pd.DataFrame:
    """Published trade-offs from ``assets/reported_points.json`` (relative numbers, each with its source)."""
    path = ASSETS / "reported_points.json"
    points = json.loads(path.read_text())["points"] if path.exists() else []
    return pd.DataFrame(points, columns=REPORTED_COLUMNS)


def pareto_view(task: str, axis: str = "latency_ms", color: str = "kind", root: str | None = None,
                scale: str = "absolute", references: bool = True, reported: bool = True):
    """(figure or None, table, note) for ``task``: the user's runs, plus the shipped reference
    runs and (relative scale only) the papers' reported points when asked.

    Raises:
        ValueError: For an unknown task, axis or scale.
    """
    get_task(task)
    if axis not in COST_AXES:
        raise ValueError(f"Unknown axis {axis!r}; choose one of {', '.join(COST_AXES)}.")
    if scale not in SCALES:
        raise ValueError(f"Unknown scale {scale!r}; choose absolute or relative.")
    own = runs_table([(r.run_id, r.metrics) for r in list_runs(root)])
    frames = [own[own["task"] == task]] + ([reference_table(task)] if references else [])
    frames = [f for f in frames if not f.empty]
    table = pd.concat(frames, ignore_index=True) if frames else own.iloc[0:0]
    notes = []
    papers = reported_points() if reported else None
    if papers is not None and scale == "absolute":
        notes.append("The papers' reported points are speed-ups and % of dense quality: choose the relative "
                     "scale to see them.")
    elif papers is not None and papers[f"{axis}_rel"].isna().all():
        shown = [COST_AXES[a] for a in COST_AXES if papers[f"{a}_rel"].notna().any()]
        notes.append(f"The papers report no {COST_AXES[axis]}; their points appear on: {'; '.join(shown)}.")
    if table.empty:
        return None, table, " ".join(notes + [f"No runs on {task} yet: prune a model in the Prune tab."])
    if (table["weights"] != "pretrained").any():
        notes.append("Runs with random weights have meaningless quality; only their cost is real.")
    return make_pareto_figure(table, axis, papers, color=color, scale=scale), table, " ".join(notes)


def _explain(run: Run) -> str:
    m = run.metrics
    return (f"{m['model']} on {m['task']}: {m['plan_summary']} "
            f"({m['encoder_sparsity_achieved'] * 100:.0f}% of encoder head and FFN parameters removed)")


class ModelCache:
    """Keeps recently used models in memory so the Compare tab does not reload them."""

    def __init__(self, size: int = 4):
        self._size, self._models, self._lock = size, {}, threading.Lock()

    def get(self, spec: str) -> LoadedModel:
        """The loaded model for a spec or run folder, loading it on first use; ``int8:<spec>`` is
        that model with int8 Linear weights (``pruning.quantization``, CPU)."""
        with self._lock:
            if spec not in self._models:
                if len(self._models) >= self._size:
                    self._models.pop(next(iter(self._models)))
                if spec.startswith(INT8):
                    from dataclasses import replace

                    from pruning import quantize

                    fp32 = load_model(spec[len(INT8):])
                    self._models[spec] = replace(fp32, model=quantize(fp32.model, "int8"))
                else:
                    self._models[spec] = load_model(spec)
            return self._models[spec]


INT8 = "int8:"  # model spec prefix of the Compare tab's int8 twin of a run


MODELS = ModelCache()


def stream_generation(loaded: LoadedModel, text: str, max_new_tokens: int = 64) -> Iterator[tuple[str, float, int]]:
    """Greedy generation that yields ``(text so far, elapsed ms, generated tokens so far)`` after
    every generated token.

    A 2-token warm-up generation runs first (untimed), so the first call of a model does not
    charge its one-time set-up to the milliseconds per token. Generation runs in a thread and
    hands each new token over a queue (a ``transformers`` streamer); an error in generation is
    raised here.

    Args:
        loaded: Model and tokenizer (encoder-decoder).
        text: Input text; truncated to 512 tokens.
        max_new_tokens: Upper bound on generated tokens.

    Raises:
        ValueError: If ``text`` is empty.
    """
    import queue

    import torch
    from transformers.generation.streamers import BaseStreamer

    from .measure import new_cache

    if not text or not text.strip():
        raise ValueError("Enter some text (or pick an example) to generate from.")
    tokenizer, model = loaded.tokenizer, loaded.model.eval()
    enc = tokenizer([text], return_tensors="pt", truncation=True, max_length=512)
    inputs = dict(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], do_sample=False, num_beams=1)
    with torch.inference_mode():
        model.generate(**inputs, max_new_tokens=2, past_key_values=new_cache())
    events: queue.Queue = queue.Queue()

    class Streamer(BaseStreamer):
        """Receives the decoder start token first (skipped), then each generated token."""

        def __init__(self):
            self.ids: list[int] = []
            self.started = False

        def put(self, value):
            if not self.started:
                self.started = True
                return
            self.ids.extend(value.reshape(-1).tolist())
            events.put((tokenizer.decode(self.ids, skip_special_tokens=True), len(self.ids), time.perf_counter()))

        def end(self):
            events.put(None)

    def work():
        try:
            with torch.inference_mode():
                model.generate(**inputs, max_new_tokens=max_new_tokens, streamer=Streamer(),
                               past_key_values=new_cache())
        except Exception as err:  # handed to the caller's thread
            events.put(err)
            events.put(None)

    start = time.perf_counter()
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while (event := events.get()) is not None:
            if isinstance(event, Exception):
                raise event
            out, tokens, at = event
            yield out.strip(), (at - start) * 1000, tokens
    finally:
        thread.join()


def compare_sources(run_ids: list[str], root: str | None = None, int8: bool = False) -> list[tuple[str, str]]:
    """(explanation, model spec) for the dense model and each chosen run, dense first; with ``int8``
    also the first run with int8 Linear weights (``int8:<folder>``, see :class:`ModelCache`).

    The dense model is the fine-tuned one the first run was pruned from.

    Raises:
        ValueError: If no run is chosen or a run is unknown.
    """
    if not run_ids:
        raise ValueError("Choose at least one run to compare with its dense model.")
    runs = [get_run(r, root) for r in run_ids]
    dense = runs[0].metrics.get("dense_finetune") or {}
    dense_spec = dense.get("path") or runs[0].metrics["model"]
    sources = [(f"dense: {runs[0].metrics['model']}", dense_spec)] + [(_explain(r), str(r.path)) for r in runs]
    if int8 and runs[0].metrics.get("settings", {}).get("quantize", "none") == "none":
        sources.append((_explain(runs[0]) + ", **int8 Linear weights**", INT8 + str(runs[0].path)))
    return sources


def task_example(task: str, shared: str | None = None, index: int | None = None, seed: int | None = None) -> Example:
    """One example of the task's evaluation split (test for summarization and rotten_tomatoes,
    validation for GLUE, whose test labels are hidden): ``index``, or a random one.

    Raises:
        ValueError: For an unknown task or unreadable data.
    """
    spec = get_task(task)
    examples = load_split(task, spec.eval_split, data_dir=data_dir_for(task, shared), limit=500)
    if not examples:
        raise ValueError(f"The {spec.eval_split} split of {task} is empty.")
    if index is None:
        index = random.Random(seed).randrange(len(examples))
    return examples[index % len(examples)]


def score_against_reference(task: str, prediction: str, example: Example) -> str:
    """One output scored against its example's reference, as a short line: ROUGE-1/2/L F1
    (percent) for summarization, right or wrong for classification, absolute error for
    regression (STS-B).

    Raises:
        ValueError: For an unknown task, or an example without a label.
    """
    from .tasks import _parse_prediction

    spec = get_task(task)
    if spec.kind == "summarization":
        scores = compute_metrics(spec, [prediction], [example])
        return "vs reference: " + ", ".join(f"{k} {scores[k]:.1f}" for k in ("rouge1", "rouge2", "rougeL"))
    if example.label is None:
        raise ValueError("This example has no gold label to compare with.")
    parsed = _parse_prediction(spec, prediction)
    if spec.kind == "regression":
        return f"vs reference {example.label:.2f}: absolute error {abs(parsed - example.label):.2f}"
    return f"reference {example.target!r}: " + ("correct" if parsed == example.label else "wrong")


def run_zip(run_id: str, root: str | None = None) -> str:
    """A zip of one run's folder (model, plan, metrics) that loads with ``pruning.load_pruned``
    once unzipped.

    Raises:
        ValueError: For an unknown run.
    """
    return str(zip_run(get_run(run_id, root), cache_root() / "downloads" / f"{run_id}.zip"))


def prune_settings(model: str, task: str, sparsity: float, layers: int, selection: str, recovery_steps: int,
                   device: str, eval_samples: int, data_dir: str | None = None, finetune_steps: int = 250,
                   input_tokens: int = 256, new_tokens: int = 64, repeats: int = 5,
                   method: str = "nash-training-free", gate_steps: int = 300,
                   quantize: str = "none") -> PruneSettings:
    """Settings of one Prune-tab request (the UI's widgets map one to one onto these).

    Raises:
        ValueError: With a message that says what to change (checked before any work).
    """
    if not model or not str(model).strip():
        raise ValueError("Choose a model: an offline one from the list, a local folder or a Hub id.")
    try:
        timing = TimingSettings(input_tokens=int(input_tokens), new_tokens=int(new_tokens), repeats=int(repeats))
        finetune = FinetuneSettings(max_steps=int(finetune_steps))
        settings = PruneSettings(model=str(model).strip(), task=task, encoder_sparsity=float(sparsity),
                                 decoder_layers=int(layers), layer_selection=selection,
                                 recovery_steps=int(recovery_steps), eval_samples=int(eval_samples),
                                 device=device, data_dir=data_dir or None, finetune=finetune, timing=timing,
                                 method=METHODS.get(method, method), gate_steps=int(gate_steps),
                                 quantize=quantize or "none")
    except TypeError as err:  # None from an emptied number box
        raise ValueError("Fill in every number (sparsity, layers, steps, examples).") from err
    if min(timing.input_tokens, timing.new_tokens, timing.repeats) < 1:
        raise ValueError("Timing needs at least 1 input token, 1 new token and 1 repeat.")
    settings.check()
    return settings


def data_dir_for(task: str, shared: str | None) -> str | None:
    """``shared`` when it holds a folder for ``task`` (as ``../shared/data`` does), else None
    (the task then loads from its offline package or the Hub)."""
    return shared if shared and task_folder(task, shared) is not None else None


def list_runs_for_ui(root: str | None = None) -> list[Run]:
    """The user's runs, newest first."""
    return list(reversed(list_runs(root)))


def export_csv(table: pd.DataFrame, name: str = "runs") -> str:
    """Write a runs table as CSV into ``<cache>/downloads/``; returns the path."""
    from .paths import slug

    path = cache_root() / "downloads" / f"{slug(name)}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(path)
    return str(path)
