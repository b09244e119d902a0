"""The argument parser of ``python -m explorer``."""

from __future__ import annotations

import argparse

from explorer.pipelines.methods import METHODS

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
                   choices=list(METHODS),
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
    p.add_argument("--save-steps", type=int, default=500, help="checkpoint interval of the dense fine-tune, gate training "
                   "and recovery (resumable)")
    p.add_argument("--no-task-lengths", action="store_true",
                   help="do not also time at the task's median input and output lengths")
    p.add_argument("--quantize", default="none", choices=["none", "int8"],
                   help="int8: the pruned model's Linear weights in int8 (dynamic quantization, CPU); evaluated and "
                        "timed also in fp32 for comparison")

    p = sub.add_parser("prune-lm", help="a decoder-only LM (SmolLM2, Gemma 3): keep k layers, narrow them, heal, "
                                        "evaluate perplexity, time decoding")
    p.add_argument("--model", default="smollm2-135m", help="smollm2-135m or gemma3-270m (offline), a local folder of "
                   "a Llama or Gemma 3 causal LM, or random:<config folder>")
    p.add_argument("--layers", type=int, required=True, help="decoder layers to keep (1..L)")
    p.add_argument("--selection", default="block-influence", choices=["uniform", "block-influence", "perplexity"],
                   help="which layers: NASH's uniform rule, ShortGPT's Block Influence, or Shortened LLaMA's "
                        "perplexity with each layer removed")
    p.add_argument("--width-sparsity", type=float, default=0.0, help="fraction of FFN neurons (and of query heads "
                   "per K/V group, rounded down) removed in each kept layer, in [0, 1)")
    p.add_argument("--width-criterion", default="activation", choices=["activation", "taylor"])
    p.add_argument("--heal-steps", type=int, default=0, help="recovery fine-tuning steps after pruning (0: none)")
    p.add_argument("--heal", default="lora", choices=["lora", "full"])
    p.add_argument("--heal-batch-size", type=int, default=8)
    p.add_argument("--heal-learning-rate", type=float, default=None, help="default 2e-4 (LoRA), 2e-5 (full)")
    p.add_argument("--data-dir", default=None, help="a folder with SAMSum (e.g. ../shared/data)")
    p.add_argument("--calibration-texts", type=int, default=32)
    p.add_argument("--eval-texts", type=int, default=200)
    p.add_argument("--max-tokens", type=int, default=256, help="tokens per text (calibration, healing, evaluation)")
    p.add_argument("--zero-shot-task", default="sst2", choices=["sst2", "rotten_tomatoes"],
                   help="zero-shot accuracy by label-word log-likelihood on this task's labelled split")
    p.add_argument("--zero-shot-examples", type=int, default=872, help="its first N examples (0: skip)")
    p.add_argument("--summaries", type=int, default=100,
                   help="SAMSum test dialogues summarized through the chat template, ROUGE-scored (0: skip)")
    p.add_argument("--input-tokens", type=int, default=256, help="timing: prompt tokens")
    p.add_argument("--new-tokens", type=int, default=64, help="timing: generated tokens")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder (pruned model, plan.json, metrics.json)")
    p.add_argument("--overwrite", action="store_true")

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
