"""The command line: ``python -m explorer finetune | prune | measure | evaluate | report | demo``.

All argparse lives here; the library never reads ``sys.argv``. Errors a user can fix
(``ValueError``, ``FileNotFoundError``) print one line and exit with status 2.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from explorer.cli.parser import DEMO

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _finetune_settings(args):
    from explorer.training.finetune import FinetuneSettings, steps_for_epochs

    steps = args.finetune_steps
    if args.finetune_epochs is not None:
        steps = steps_for_epochs(args.task, args.finetune_epochs, args.batch_size, data_dir=args.data_dir,
                                 curve_samples=args.curve_samples if args.curve_every else 0)
        if args.train_samples is not None:  # epochs over the examples used
            steps = max(1, round(args.finetune_epochs * args.train_samples / args.batch_size))
    return FinetuneSettings(max_steps=steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                            train_samples=args.train_samples, curve_every=args.curve_every,
                            curve_samples=args.curve_samples, keep_best=args.keep_best, patience=args.patience)


def _timing(args):
    from explorer.pipelines.nash_settings import TimingSettings

    return TimingSettings(batch_size=args.timing_batch_size, input_tokens=args.input_tokens,
                          new_tokens=args.new_tokens, num_beams=args.timing_beams, repeats=args.repeats,
                          task_lengths=not getattr(args, "no_task_lengths", False))


_LAST = {"fraction": -1.0, "stage": ""}


def _progress(fraction: float, message: str) -> None:
    """Print progress to stderr: each new stage, then at most every 2.5%."""
    stage = message.split(":")[0]
    now = time.monotonic()
    if stage != _LAST["stage"] or fraction - _LAST["fraction"] >= 0.025 or fraction >= 1.0 \
            or now - _LAST.get("time", now) >= 60:
        _LAST.update(fraction=fraction, stage=stage, time=now)
        print(f"[{fraction * 100:5.1f}%] {message}", file=sys.stderr, flush=True)


def cmd_prune(args) -> int:
    """``prune``: NASH (training-free or learned) or decoder-only, end to end; prints the results table."""
    from explorer.pipelines.nash import run_prune
    from explorer.pipelines.nash_settings import PruneSettings
    from explorer.pipelines.report import results_table

    settings = PruneSettings(
        model=args.model, task=args.task, data_dir=args.data_dir, encoder_sparsity=args.encoder_sparsity,
        decoder_layers=args.decoder_layers, layer_selection=args.layer_selection, recovery_steps=args.recovery_steps,
        eval_samples=args.eval_samples or None, calibration_samples=args.calibration_samples,
        calibration_tokens=args.calibration_tokens, device=args.device,
        num_beams=args.num_beams, finetune=_finetune_settings(args), timing=_timing(args),
        dense_finetune=not args.no_dense_finetune, method=args.method, gate_steps=args.gate_steps,
        distill=not args.no_distill, save_steps=args.save_steps, quantize=args.quantize)
    metrics = run_prune(settings, args.out, overwrite=args.overwrite or args.resume, progress=_progress,
                        resume=args.resume)
    if "skipped" in metrics:  # another process of `accelerate launch` writes the run
        return 0
    print(results_table(metrics))
    print(f"\nwrote {args.out} (model, plan.json, metrics.json)")
    return 0


def cmd_prune_lm(args) -> int:
    """``prune-lm``: a decoder-only LM by depth and width, healed, evaluated and timed; prints a summary."""
    from explorer.pipelines.lm_prune import LMPruneSettings, run_lm_prune

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        raise ValueError(f"{out} exists and is not empty; pass --overwrite or choose another --out.")
    settings = LMPruneSettings(
        model=args.model, layers=args.layers, selection=args.selection, width_sparsity=args.width_sparsity,
        width_criterion=args.width_criterion, heal_steps=args.heal_steps, heal=args.heal,
        heal_batch_size=args.heal_batch_size, heal_learning_rate=args.heal_learning_rate, data_dir=args.data_dir,
        calibration_texts=args.calibration_texts, eval_texts=args.eval_texts, max_tokens=args.max_tokens,
        zero_shot_task=args.zero_shot_task, zero_shot_examples=args.zero_shot_examples, summaries=args.summaries,
        input_tokens=args.input_tokens, new_tokens=args.new_tokens, repeats=args.repeats, device=args.device,
        seed=args.seed)
    m = run_lm_prune(settings, out, progress=_progress)
    dense, pruned = (m["quality"][k]["metrics"]["perplexity"] for k in ("dense", "pruned"))
    d = m["difference_vs_dense"]
    t_dense, t_pruned = (m["measurements"][k]["latency"] for k in ("dense", "pruned"))
    print(f"{m['model']}: {m['plan_summary']}\n"
          f"perplexity on {m['quality']['pruned']['num_examples']} test texts: dense {dense:.2f} -> pruned "
          f"{pruned:.2f} (difference {d['diff']:+.2f}, 95% CI [{d['low']:+.2f}, {d['high']:+.2f}])\n"
          f"decode ms/token: {t_dense['decode_ms_per_token']:.1f} -> {t_pruned['decode_ms_per_token']:.1f} "
          f"({m['speedup_decode']:.2f}x); prefill ms: {t_dense['prefill_ms']:.0f} -> {t_pruned['prefill_ms']:.0f}\n"
          + "".join(f"{name}: dense {m['quality']['dense']['metrics'][name]:.2f} -> pruned "
                    f"{m['quality']['pruned']['metrics'][name]:.2f} (difference {t['diff']:+.2f}, 95% CI "
                    f"[{t['low']:+.2f}, {t['high']:+.2f}])\n" for name, t in m["task_differences"].items())
          + f"wrote {out} (model, plan.json, metrics.json)")
    return 0


def cmd_finetune(args) -> int:
    """``finetune``: dense fine-tuning (cached); prints the summary as JSON."""
    import shutil

    from explorer.training.finetune import cached_dense_finetune, resolve_device

    if args.out and Path(args.out).exists() and any(Path(args.out).iterdir()) and not args.overwrite:
        raise ValueError(f"{args.out} exists and is not empty; pass --overwrite or choose another --out.")
    _, summary = cached_dense_finetune(args.model, args.task, _finetune_settings(args), data_dir=args.data_dir,
                                       device=resolve_device(args.device), progress=_progress)
    if args.out:
        shutil.copytree(summary["path"], args.out, dirs_exist_ok=True)
    print(json.dumps({k: v for k, v in summary.items() if k != "settings"}, indent=1))
    return 0


def _load_quantized(args):
    """``(loaded model, its fp32 original or None)``: the model of ``--model``, int8 when ``--quantize
    int8`` or when it is a run folder saved with int8 (then the fp32 original counts MACs)."""
    from explorer.models.loading import load_model
    from pruning import load_pruned, quantize
    from pruning.quantization import is_quantized

    loaded = load_model(args.model)
    if is_quantized(loaded.model):  # an int8 run folder (plan.json says so)
        return loaded, load_pruned(args.model, quantized=False)
    if args.quantize != "none":
        if args.device not in ("cpu", "auto"):
            raise ValueError("int8 weights run on the CPU: use --device cpu with --quantize int8.")
        fp32 = loaded.model
        loaded.model = quantize(fp32, args.quantize)
        return loaded, fp32
    return loaded, None


def cmd_measure(args) -> int:
    """``measure``: latency, MACs, parameters and weight bytes of one model as a table."""
    from explorer.pipelines.nash_steps import measure_all
    from explorer.training.finetune import resolve_device

    loaded, fp32 = _load_quantized(args)
    device = "cpu" if fp32 is not None else resolve_device(args.device)
    result = measure_all(loaded.model, _timing(args), device, fp32_model=fp32)
    lat = result["latency"]
    print("| end-to-end ms | decoder ms/token | encoder ms | GMACs | params (M) | weights (MB) | device |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {lat['latency_ms']:.1f} | {lat['decode_ms_per_token']:.2f} | {lat['encoder_ms']:.1f} | "
          f"{result['macs']['gmacs']:.2f} | {result['params']['params_m']:.1f} | {result['weight_mb']:.1f} | "
          f"{lat['device']} |")
    return 0


def cmd_evaluate(args) -> int:
    """``evaluate``: task metrics of one model on a split, as JSON."""
    from explorer.data.splits import load_split
    from explorer.data.tasks import get_task
    from explorer.evaluation.generation import evaluate_quality
    from explorer.training.finetune import resolve_device

    spec = get_task(args.task)
    split = args.split or spec.eval_split
    examples = load_split(spec, split, data_dir=args.data_dir, limit=args.eval_samples)
    loaded, fp32 = _load_quantized(args)
    result = evaluate_quality(loaded.model, loaded.tokenizer, spec.name, examples, split=split,
                              device="cpu" if fp32 is not None else resolve_device(args.device),
                              num_beams=args.num_beams)
    result["quantization"] = args.quantize if fp32 is not None and args.quantize != "none" else (
        "int8 (from plan.json)" if fp32 is not None else "none")
    result.pop("predictions")  # every output; the samples show the first three
    if loaded.random_weights:
        result["warning"] = "random weights: these numbers mean nothing"
    print(json.dumps(result, indent=1))
    return 0


def cmd_demo(args) -> int:
    """``demo``: the offline default (MiniLM2MiniLM, rotten_tomatoes) end to end."""
    from explorer.paths import cache_root
    from explorer.pipelines.nash import run_prune
    from explorer.pipelines.nash_settings import PruneSettings
    from explorer.pipelines.report import results_table
    from explorer.training.finetune import FinetuneSettings

    out = Path(args.out) if args.out else cache_root() / "demo"
    settings = PruneSettings(
        model=DEMO["model"], task=DEMO["task"], encoder_sparsity=DEMO["encoder_sparsity"],
        decoder_layers=DEMO["decoder_layers"], recovery_steps=DEMO["recovery_steps"],
        eval_samples=DEMO["eval_samples"], device=args.device,
        finetune=FinetuneSettings(max_steps=DEMO["finetune_steps"]))
    print(f"Offline default: {settings.model} on {settings.task}: dense fine-tune ({DEMO['finetune_steps']} steps, "
          f"cached), training-free NASH (encoder sparsity {settings.encoder_sparsity}, {settings.decoder_layers} "
          f"decoder layers), recovery ({settings.recovery_steps} steps), evaluation, timing.", file=sys.stderr)
    metrics = run_prune(settings, out, overwrite=True, progress=_progress)
    print(results_table(metrics))
    print(f"\nwrote {out}")
    return 0


def cmd_eftnas(args) -> int:
    """``eftnas``: EFTNAS end to end (``explorer.pipelines.eftnas.run_eftnas``); prints the Pareto front."""
    from explorer.pipelines.eftnas import run_eftnas
    from explorer.pipelines.eftnas_settings import EftnasSettings
    from explorer.pipelines.report import front_table
    from explorer.runs.eftnas_runs import load_run
    from explorer.runs.stages import RunFolder

    out = Path(args.out)
    partial = RunFolder.work_folder(out)
    if args.resume and out.exists() and not partial.exists():
        print(f"{out} is already finished; nothing to resume.")
        print(front_table(load_run(out)))
        return 0
    if out.exists() and not (args.overwrite or args.resume):
        raise ValueError(f"{out} exists; pass --overwrite to replace it (it is replaced only when the run finishes).")
    if args.settings_json:  # every setting in one document (the EFTNAS tab's child process)
        settings = EftnasSettings.from_json(Path(args.settings_json).read_text())
        summary = run_eftnas(settings, out, progress=_progress, resume=args.resume)
        print(front_table(summary))
        print(f"\nwrote {out}")
        return 0
    settings = EftnasSettings(
        model=args.model, task=args.task, data_dir=args.data_dir, train_samples=args.train_samples or None,
        eval_samples=args.eval_samples or None, search_samples=args.search_samples or None,
        max_tokens=args.max_tokens, finetune_steps=args.finetune_steps, movement_steps=args.movement_steps,
        supernet_steps=args.supernet_steps, finetune_epochs=args.finetune_epochs,
        movement_epochs=args.movement_epochs, supernet_epochs=args.supernet_epochs, learning_rate=args.learning_rate,
        supernet_learning_rate=args.supernet_learning_rate, save_steps=args.save_steps,
        keep_best_epoch=args.keep_best_epoch, stages=args.stages,
        batch_size=args.batch_size, population=args.population, generations=args.generations, device=args.device,
        seed=args.seed)
    summary = run_eftnas(settings, out, progress=_progress, resume=args.resume)
    print(front_table(summary))
    print(f"\nwrote {out}")
    return 0


def cmd_report(args) -> int:
    """``report``: the results table of a finished run, from its metrics.json."""
    from explorer.pipelines.report import results_table

    path = Path(args.run) / "metrics.json"
    if not path.exists():
        raise ValueError(f"{args.run} has no metrics.json; give a folder written by `prune`.")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
        table = results_table(metrics)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path} is not a metrics.json written by `prune` ({type(err).__name__}: {err}); run the "
                         f"prune again.") from None
    print(table)
    return 0
