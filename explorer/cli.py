"""The command line: ``python -m explorer finetune | prune | measure | evaluate | report | demo``.

All argparse lives here; the library never reads ``sys.argv``. Errors a user can fix
(``ValueError``, ``FileNotFoundError``) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEMO = dict(model="minilm2minilm", task="rotten_tomatoes", encoder_sparsity=0.3, decoder_layers=2,
            finetune_steps=250, recovery_steps=100, eval_samples=200)


def _common(p: argparse.ArgumentParser, task: bool = True) -> None:
    p.add_argument("--model", required=True, help="offline name (minilm2minilm), local folder, random:<config folder>, "
                                                  "or Hub id")
    if task:
        p.add_argument("--task", required=True, help="samsum, xsum, cnn_dailymail, sst2, cola, mrpc, rte, qnli, stsb, "
                                                     "mnli, rotten_tomatoes")
        p.add_argument("--data-dir", default=None, help="local dataset folder (TSV/JSON/JSONL/parquet)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])


def _finetune_args(p: argparse.ArgumentParser, steps: int = 300) -> None:
    p.add_argument("--finetune-steps", type=int, default=steps, help="dense fine-tuning steps (cached)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--train-samples", type=int, default=None, help="use the first N training examples")
    p.add_argument("--finetune-epochs", type=float, default=None,
                   help="dense fine-tune for this many passes over the training examples (instead of --finetune-steps)")
    p.add_argument("--curve-every", type=int, default=0,
                   help="dense fine-tune: the main metric on held-out examples every N steps (the learning curve; "
                        "validation when the task reports on test, else training examples held out of training)")
    p.add_argument("--curve-samples", type=int, default=200, help="held-out examples of the learning curve")
    p.add_argument("--keep-best", action="store_true",
                   help="dense fine-tune: end with the weights of the best point of the learning curve")
    p.add_argument("--patience", type=int, default=0,
                   help="dense fine-tune: stop after this many curve points without a new best (0: never)")


def _timing_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input-tokens", type=int, default=256)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--timing-batch-size", type=int, default=1)
    p.add_argument("--timing-beams", type=int, default=1, help="1 = greedy")
    p.add_argument("--repeats", type=int, default=5)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="python -m explorer", description="Structured pruning (NASH) of "
                                     "encoder-decoder transformers: prune, fine-tune, measure, evaluate.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prune", help="training-free NASH: importance, surgery, recovery, evaluation, timing")
    _common(p)
    p.add_argument("--encoder-sparsity", type=float, required=True, help="fraction of encoder head+FFN parameters "
                                                                          "removed, in [0, 1)")
    p.add_argument("--decoder-layers", type=int, required=True, help="decoder layers to keep (1..L)")
    p.add_argument("--layer-selection", default="uniform", choices=["uniform", "low", "high", "learned"],
                   help="which decoder layers stay; learned: decoder layer gates (nash-learned only)")
    p.add_argument("--method", default="nash-training-free",
                   choices=["nash-training-free", "nash-learned", "decoder-only", "cofi"],
                   help="how the encoder is pruned: Taylor importance (no training), learned hard-concrete gates, "
                        "or not at all (decoder-only baseline, needs --encoder-sparsity 0); cofi: the CoFi baseline, "
                        "gates on encoder and decoder widths (keeps all decoder layers; --encoder-sparsity is then "
                        "its target over encoder and decoder)")
    p.add_argument("--gate-steps", type=int, default=300, help="nash-learned and cofi: gate training steps")
    p.add_argument("--no-distill", action="store_true", help="nash-learned: train gates without distillation")
    p.add_argument("--recovery-steps", type=int, default=0, help="fine-tuning steps after pruning (the final "
                                                                  "fine-tune of nash-learned)")
    p.add_argument("--eval-samples", type=int, default=64, help="first examples of the evaluation split (0: all)")
    p.add_argument("--calibration-samples", type=int, default=256,
                   help="at most this many training examples for the training-free importance scores")
    p.add_argument("--calibration-tokens", type=int, default=4096,
                   help="... and no more once their source tokens reach this")
    p.add_argument("--num-beams", type=int, default=1, help="beams for the quality evaluation")
    p.add_argument("--no-dense-finetune", action="store_true", help="the model is already fine-tuned for the task")
    _finetune_args(p)
    _timing_args(p)
    p.add_argument("--out", required=True, help="output folder (pruned model, plan.json, metrics.json)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run with the same settings from its last finished stage / checkpoint")
    p.add_argument("--save-steps", type=int, default=500, help="checkpoint interval of the recovery fine-tune")
    p.add_argument("--no-task-lengths", action="store_true",
                   help="do not also time at the task's median input and output lengths")
    p.add_argument("--quantize", default="none", choices=["none", "int8"],
                   help="int8: the pruned model's Linear weights in int8 (dynamic quantization, CPU); evaluated and "
                        "timed also in fp32 for comparison")

    p = sub.add_parser("finetune", help="dense fine-tuning (cached by model, task and settings)")
    _common(p)
    _finetune_args(p)
    p.add_argument("--out", default=None, help="also copy the fine-tuned model here")
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("measure", help="latency, MACs and parameters of a model")
    _common(p, task=False)
    _timing_args(p)
    p.add_argument("--quantize", default="none", choices=["none", "int8"], help="int8: time the model with int8 "
                                                                               "Linear weights (CPU)")

    p = sub.add_parser("evaluate", help="quality of a model on a task split")
    _common(p)
    p.add_argument("--split", default=None, help="train, validation or test (default: the task's evaluation split)")
    p.add_argument("--eval-samples", type=int, default=64)
    p.add_argument("--num-beams", type=int, default=1)
    p.add_argument("--quantize", default="none", choices=["none", "int8"], help="int8: evaluate with int8 Linear "
                                                                               "weights (CPU)")

    p = sub.add_parser("report", help="print the results table of a finished prune run folder")
    p.add_argument("run", help="a folder written by prune (holds metrics.json)")

    p = sub.add_parser("eftnas", help="EFTNAS for a BERT classifier: fine-tune, movement importance, search space, "
                                      "super-network, NSGA-II search, Pareto front")
    p.add_argument("--settings-json", default=None,
                   help="a file with every setting as JSON (EftnasSettings.to_json); the other setting flags are ignored")
    p.add_argument("--model", default="minilm", help="minilm (offline), a local folder, or random:<config folder>")
    p.add_argument("--task", default="rotten_tomatoes", help="a classification task (rotten_tomatoes offline; "
                                                             "sst2, mrpc, rte, cola with --data-dir)")
    p.add_argument("--data-dir", default=None, help="local data root, e.g. ../shared/data")
    p.add_argument("--out", required=True, help="run folder to write (must not exist unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder when this run finishes")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run with the same settings from its last finished stage / checkpoint")
    p.add_argument("--train-samples", type=int, default=2000, help="training examples (0: all)")
    p.add_argument("--eval-samples", type=int, default=500, help="examples the metric is reported on (0: all)")
    p.add_argument("--search-samples", type=int, default=300,
                   help="held-out examples the search ranks on (0: 10%% of the training split, 250 to 1000)")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--finetune-steps", type=int, default=300)
    p.add_argument("--movement-steps", type=int, default=200)
    p.add_argument("--supernet-steps", type=int, default=300)
    p.add_argument("--finetune-epochs", type=float, default=None, help="replaces --finetune-steps")
    p.add_argument("--movement-epochs", type=float, default=None, help="replaces --movement-steps")
    p.add_argument("--supernet-epochs", type=float, default=None, help="replaces --supernet-steps")
    p.add_argument("--learning-rate", type=float, default=5e-5, help="the dense fine-tune's")
    p.add_argument("--supernet-learning-rate", type=float, default=5e-5)
    p.add_argument("--save-steps", type=int, default=500, help="checkpoint interval of the training stages")
    p.add_argument("--keep-best-epoch", action="store_true",
                   help="with --finetune-epochs: keep the dense epoch with the best held-out search metric")
    p.add_argument("--stages", type=int, default=2, help="progressive-shrinking stages")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"])

    p = sub.add_parser("demo", help="the offline default end to end: MiniLM2MiniLM on rotten_tomatoes")
    p.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"])
    p.add_argument("--out", default=None, help="output folder (default: inside the cache)")
    return parser


def _finetune_settings(args):
    from .finetune import FinetuneSettings, steps_for_epochs

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
    from .pipeline import TimingSettings

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
    from .pipeline import PruneSettings, results_table, run_prune

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


def cmd_finetune(args) -> int:
    """``finetune``: dense fine-tuning (cached); prints the summary as JSON."""
    import shutil

    from .finetune import cached_dense_finetune, resolve_device

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
    from pruning import load_pruned, quantize
    from pruning.quantization import is_quantized

    from .models import load_model

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
    from .finetune import resolve_device
    from .pipeline import measure_all

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
    from .finetune import resolve_device
    from .quality import evaluate_quality
    from .tasks import get_task, load_split

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
    from .finetune import FinetuneSettings
    from .paths import cache_root
    from .pipeline import PruneSettings, results_table, run_prune

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
    """``eftnas``: EFTNAS end to end (``explorer.eftnas.run_eftnas``); prints the Pareto front."""
    from .eftnas import EftnasSettings, front_table, run_eftnas

    from .eftnas import load_run
    from .stages import RunFolder

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
    from .pipeline import results_table

    path = Path(args.run) / "metrics.json"
    if not path.exists():
        raise ValueError(f"{args.run} has no metrics.json; give a folder written by `prune`.")
    print(results_table(json.loads(path.read_text())))
    return 0


COMMANDS = {"prune": cmd_prune, "finetune": cmd_finetune, "measure": cmd_measure, "evaluate": cmd_evaluate,
            "report": cmd_report, "eftnas": cmd_eftnas, "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 a usage or input error)."""
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    import warnings

    warnings.filterwarnings("ignore", message=".*better way to train encoder-decoder models.*")
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}".splitlines()[0], file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written to the output folder.", file=sys.stderr)
        return 130
