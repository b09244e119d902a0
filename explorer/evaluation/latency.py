"""Latency, MACs and parameter counts of encoder-decoder models.

One device-agnostic timing function (:func:`measure_latency`) returning a typed
:class:`LatencyResult`, with warm-up, accelerator synchronisation and repeats inside
it; MACs (:func:`count_macs`) and parameters (:func:`count_params`) beside it.

Everything here *runs* the model and never reads layer sizes from its config, so
models pruned with non-uniform per-layer widths (different ``nn.Linear`` sizes per
encoder layer, fewer decoder layers; see ``pruning.surgery``) are measured as they
are. Supported: any Hugging Face encoder-decoder model with ``get_encoder()`` and
``generate()``, i.e. ``T5ForConditionalGeneration``, ``BartForConditionalGeneration``
and ``EncoderDecoderModel`` (BERT2BERT; its config needs ``decoder_start_token_id``
and ``pad_token_id``).

The setting follows NASH (Ko et al., Findings of EMNLP 2023, arXiv 2310.10054),
Sec. 2 and Table 1: latency of greedy generation of a fixed number of tokens, split
into the encoder pass and the decoder, whose depth dominates generation time.
"""

from __future__ import annotations

import platform
import statistics
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.utils.benchmark as benchmark
from torch import nn
from transformers import GenerationConfig

_SUPPORTED_DEVICES = ("cpu", "cuda")
# Above this vocabulary size, random inputs skip the lowest and highest ids (see random_input_ids).
_LARGE_VOCAB = 2000
_LOW_IDS_SKIPPED = 1000
_HIGH_IDS_SKIPPED = 128


@dataclass(frozen=True)
class LatencyResult:
    """Median latencies of one model in one setting, in milliseconds.

    Attributes:
        encoder_ms: Median wall-clock ms of one encoder forward pass over the
            (batch_size, input_tokens) input.
        decode_ms_per_token: Decoder ms per generated token, derived as
            ``max(0, latency_ms - encoder_ms) / new_tokens``: everything
            ``generate`` does beyond the encoder pass (decoder steps with KV cache,
            cross-attention K/V projections of the encoder output, LM head, logits
            processing and search bookkeeping), spread over the generated tokens.
            It is a difference of two medians, not a median of differences.
        latency_ms: Median end-to-end wall-clock ms of ``model.generate`` producing
            exactly ``new_tokens`` tokens per sequence (encoder pass included).
        batch_size: Sequences per batch.
        input_tokens: Encoder input length in tokens.
        new_tokens: Generated tokens per sequence.
        num_beams: Beam width (1 = greedy).
        device: What ran it, see :func:`device_description`.
        repeats: Timed runs per median (after the warm-up runs).
    """

    encoder_ms: float
    decode_ms_per_token: float
    latency_ms: float
    batch_size: int
    input_tokens: int
    new_tokens: int
    num_beams: int
    device: str
    repeats: int


def measure_latency(model: nn.Module, *, batch_size: int = 1, input_tokens: int = 256, new_tokens: int = 64,
                    num_beams: int = 1, device: str = "cpu", repeats: int = 5, warmup: int = 1) -> LatencyResult:
    """Time the encoder pass and end-to-end generation of an encoder-decoder model.

    The model is switched to eval mode and **moved to ``device``, where it stays**
    (the caller asked for that device; moving it back would cost a copy per call);
    its train/eval flag is restored afterwards. Inputs are random token ids without
    special tokens (seeded, see :func:`random_input_ids`), attention mask all ones.
    Generation is forced to exactly ``new_tokens`` tokens: ``min_new_tokens =
    max_new_tokens = new_tokens`` (the minimum suppresses EOS), ``do_sample=False``,
    ``use_cache=True``, ``no_repeat_ngram_size=0`` and ``repetition_penalty=1``
    (model defaults such as BART's ``no_repeat_ngram_size=3`` and ``num_beams=4``
    are overridden so every family is timed with the same search), with a fresh
    lazily grown KV cache per call (:func:`new_cache`), so a decoder whose depth
    differs from the config's layer count still generates. Everything runs under
    ``torch.inference_mode``.

    Timing uses ``torch.utils.benchmark.timer``, a clock that synchronises the
    accelerator before reading the time, around each call: ``warmup`` untimed calls,
    then ``repeats`` timed ones, median. (``Timer.timeit`` would add two hidden
    warm-up calls per repeat, tripling the cost of a multi-second ``generate``.)
    The torch thread count is left as the caller set it.

    Args:
        model: A Hugging Face encoder-decoder model (T5, BART, BERT2BERT), possibly
            pruned with non-uniform widths.
        batch_size: Sequences per batch, >= 1.
        input_tokens: Encoder input length, >= 1 (at most the model's position limit,
            e.g. 512 for BERT; beyond it the model itself fails).
        new_tokens: Tokens to generate per sequence, >= 1.
        num_beams: Beam width, >= 1.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        repeats: Timed runs per median, >= 1.
        warmup: Untimed runs of the encoder and of ``generate`` before each is timed,
            >= 0. The first ``generate`` call, which checks the output length, is one
            of them, so ``generate`` always runs untimed at least once.

    Returns:
        A :class:`LatencyResult` (all times in ms).

    Raises:
        ValueError: On a non-positive size, an unknown device, CUDA asked for but
            not available, or a model that is not an encoder-decoder.
        RuntimeError: If ``generate`` did not return exactly ``new_tokens`` tokens.
    """
    check_positive(batch_size=batch_size, input_tokens=input_tokens, new_tokens=new_tokens,
                    num_beams=num_beams, repeats=repeats)
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}.")
    torch_device = _parse_device(device)
    check_encoder_decoder(model)
    description = device_description(device)

    was_training = model.training
    model.to(torch_device).eval()
    try:
        encode, generate = _timed_calls(model, batch_size, input_tokens, new_tokens, num_beams, torch_device)
        with torch.inference_mode():
            check_generated_length(generate(), batch_size, new_tokens)
            encoder_ms = median_ms(encode, repeats=repeats, warmup=warmup, device=torch_device)
            latency_ms = median_ms(generate, repeats=repeats, warmup=max(warmup - 1, 0), device=torch_device)
    finally:
        model.train(was_training)
    return LatencyResult(
        encoder_ms=encoder_ms,
        decode_ms_per_token=max(latency_ms - encoder_ms, 0.0) / new_tokens,
        latency_ms=latency_ms,
        batch_size=batch_size,
        input_tokens=input_tokens,
        new_tokens=new_tokens,
        num_beams=num_beams,
        device=description,
        repeats=repeats,
    )


def _timed_calls(model: nn.Module, batch_size: int, input_tokens: int, new_tokens: int, num_beams: int,
                 device: torch.device) -> tuple[Callable[[], object], Callable[[], torch.Tensor]]:
    """The encoder pass and the exact-length ``generate`` call that :func:`measure_latency` times, as
    closures over seeded random inputs (the model must already be on ``device`` in eval mode)."""
    input_ids = random_input_ids(model, batch_size, input_tokens, device)
    attention_mask = torch.ones_like(input_ids)
    encoder = model.get_encoder()
    generation_config = exact_length_generation_config(model, new_tokens, num_beams)

    def encode():
        return encoder(input_ids=input_ids, attention_mask=attention_mask)

    def generate():
        return model.generate(input_ids=input_ids, attention_mask=attention_mask,
                              generation_config=generation_config, past_key_values=new_cache())

    return encode, generate


@dataclass
class PairedSpeedup:
    """One model's speed-up over a reference, timed in alternating rounds (:func:`paired_speedups`).

    Attributes:
        speedup: Median over rounds of (mean of the two neighbouring reference timings / model ms).
        model_ms: Median end-to-end latency of the model, ms.
        ratios: The per-round ratios (their spread shows how steady the machine was).
        reference_ms: Median over every reference timing (a round has one more than it has models).
    """

    speedup: float
    model_ms: float
    reference_ms: float
    ratios: list[float]


def paired_speedups(reference: nn.Module, models: dict[str, nn.Module], *, input_tokens: int = 256,
                    new_tokens: int = 64, rounds: int = 10, device: str = "cpu") -> dict[str, PairedSpeedup]:
    """Speed-ups of several models over one reference, timed in alternating rounds.

    The speed of a shared CPU drifts by 15-40% within minutes, more than the differences between
    pruned models of one budget. So every model is first generated once untimed, then each of
    ``rounds`` rounds times every model once between two timings of the reference (reference, model
    1, reference, model 2, ..., reference; each the ``generate`` call that :func:`measure_latency`
    times: greedy, batch 1, exactly ``new_tokens`` tokens, seeded random input). A model's ratio in a
    round is the mean of its two neighbouring reference timings over its own, so drift slower than
    three calls cancels however many models a round holds (with one reference timing per round of 18
    models, later models were timed up to half a minute after it, and one model's ratios spread over
    0.95-1.66); its speed-up is the median of the ratios over rounds (:func:`speedup_interval` gives
    its interval). Used to re-time a task's runs together (``scripts/nash_retime.py``) and to match
    CoFi's latency to NASH's (NASH Sec. 5; ``scripts/cofi_match.py``).

    Args:
        reference: The model speed-ups are relative to (usually the dense model).
        models: Name -> model to time against it (encoder-decoder models, possibly pruned).
        input_tokens: Encoder input length, >= 1.
        new_tokens: Generated tokens, >= 1.
        rounds: Alternating rounds, >= 1.
        device: ``"cpu"`` or ``"cuda[:N]"`` (models are moved there and stay).

    Returns:
        Name -> :class:`PairedSpeedup`, in the order of ``models``.

    Raises:
        ValueError: For ``rounds`` < 1, or the errors of :func:`measure_latency`.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}.")
    check_positive(input_tokens=input_tokens, new_tokens=new_tokens)
    torch_device = _parse_device(device)
    everything = {None: reference, **models}
    flags = {name: model.training for name, model in everything.items()}
    try:
        calls = {}
        with torch.inference_mode():
            for name, model in everything.items():
                check_encoder_decoder(model)
                model.to(torch_device).eval()
                calls[name] = _timed_calls(model, 1, input_tokens, new_tokens, 1, torch_device)[1]
                check_generated_length(calls[name](), 1, new_tokens)  # also the untimed warm-up
            reference_call = calls.pop(None)
            reference_times: list[float] = []
            times: dict[str, list[float]] = {name: [] for name in calls}
            ratios: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(rounds):
                before = median_ms(reference_call, repeats=1, warmup=0, device=torch_device)
                reference_times.append(before)
                for name, generate in calls.items():
                    ms = median_ms(generate, repeats=1, warmup=0, device=torch_device)
                    after = median_ms(reference_call, repeats=1, warmup=0, device=torch_device)
                    times[name].append(ms)
                    ratios[name].append((before + after) / 2 / ms)
                    reference_times.append(after)
                    before = after
    finally:
        for name, model in everything.items():
            model.train(flags[name])
    return {name: PairedSpeedup(speedup=statistics.median(ratios[name]), model_ms=statistics.median(values),
                                reference_ms=statistics.median(reference_times), ratios=ratios[name])
            for name, values in times.items()}


def speedup_interval(ratios: list[float], confidence: float = 0.95, resamples: int = 2000,
                     seed: int = 0) -> tuple[float, float]:
    """A bootstrap interval of the median of per-round speed-up ratios (:attr:`PairedSpeedup.ratios`),
    ``scipy.stats.bootstrap`` (percentile method) over the rounds.

    Args:
        ratios: (rounds,) reference ms / model ms, one per round; at least 2.
        confidence: Coverage of the interval, in (0, 1).

    Returns:
        ``(low, high)`` bounds of the median speed-up (x). Two speed-ups whose intervals do not
        overlap differ beyond the timing's noise (overlapping ones may still differ a little).

    Raises:
        ValueError: Fewer than 2 ratios, or ``confidence`` outside (0, 1).
    """
    import numpy as np
    from scipy.stats import bootstrap

    if len(ratios) < 2 or not 0 < confidence < 1:
        raise ValueError(f"Need at least 2 ratios and a confidence in (0, 1); got {len(ratios)} and {confidence}.")
    if len(set(ratios)) == 1:
        return ratios[0], ratios[0]
    result = bootstrap((np.asarray(ratios, dtype=float),), np.median, confidence_level=confidence,
                       n_resamples=resamples, method="percentile", random_state=seed)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


@contextmanager
def paused(pids, lock: str | Path | None = None):
    """Stop the processes ``pids`` (SIGSTOP; e.g. a background training run) for the duration of a
    timing, and continue them (SIGCONT) afterwards, also when the timing fails: a timed model should
    have the machine to itself. A negative PID stops a whole process group (``kill -STOP -PGID``:
    a job and its children). Unknown PIDs are skipped.

    ``lock``: a file that jobs which pause each other lock exclusively (``fcntl.flock``) for the
    whole timing, taken before anything is stopped, so two of them never time at once and never
    stop each other in turn (which would leave both stopped)."""
    import fcntl
    import os
    import signal

    handle = None
    if lock is not None:
        Path(lock).parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a")
        fcntl.flock(handle, fcntl.LOCK_EX)
    stopped = []
    try:
        for pid in pids or ():
            try:
                os.kill(int(pid), signal.SIGSTOP)
                stopped.append(int(pid))
            except ProcessLookupError:
                pass
        yield stopped
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        if handle is not None:
            handle.close()  # releases the lock


@contextmanager
def all_cores():
    """Run the block with torch using every CPU core (``os.cpu_count()`` intra-op threads), then restore
    the thread count: for timings taken while other jobs are paused (:func:`paused`), by a job that
    trains on one thread beside another job."""
    import os

    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def add_pause_arguments(parser) -> None:
    """Add the options of a timing script that shares the machine with training jobs to an
    ``argparse.ArgumentParser``: ``--pause-pid`` (jobs stopped while timing; a negative PID: a
    process group), ``--lock`` (the lock of :func:`paused`) and ``--pause-registry`` (the folder of
    :func:`registered_groups`). ``scripts/cofi_match.py`` and ``scripts/nash_retime.py`` use them as
    ``paused(args.pause_pid + registered_groups(args.pause_registry), args.lock)``."""
    parser.add_argument("--pause-pid", type=int, nargs="*", default=[],
                        help="jobs stopped while timing (a negative PID: a process group)")
    parser.add_argument("--lock", type=Path, help="a lock file shared by jobs that pause each other")
    parser.add_argument("--pause-registry", type=Path,
                        help="a folder of registered process groups (nash_tables.sh jobs) also stopped while timing")


def registered_groups(registry: str | Path | None) -> list[int]:
    """The process groups registered in ``registry`` (a folder holding one empty file per group,
    named by its PGID; ``scripts/nash_tables.sh`` registers each of its jobs there), other than this
    process's own and those no longer alive, as negative PIDs for :func:`paused`. None or a missing
    folder gives []."""
    import os

    if registry is None or not Path(registry).is_dir():
        return []
    groups = []
    for entry in Path(registry).iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpgrp():
            continue
        try:
            os.killpg(int(entry.name), 0)
        except (ProcessLookupError, PermissionError):
            continue
        groups.append(-int(entry.name))
    return sorted(groups)


def device_description(device: str) -> str:
    """A readable name of a device for result tables.

    Returns:
        E.g. ``"cpu (2 threads, AMD EPYC 7B13)"`` (threads from
        ``torch.get_num_threads()``) or ``"cuda (NVIDIA H100 80GB HBM3)"``.

    Raises:
        ValueError: For an unknown device or CUDA when it is not available.
    """
    torch_device = _parse_device(device)
    if torch_device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(torch_device)})"
    return f"{device} ({torch.get_num_threads()} threads, {_cpu_name()})"


def machine_description(device: str) -> str:
    """:func:`device_description` with what decides a CPU's floating-point results beyond its name: the
    vector instructions PyTorch's kernels use (``torch.backends.cpu.get_cpu_capability()``, e.g. AVX512 or
    AVX2) and the CPU family and model from /proc/cpuinfo. Two machines that report the same name (a
    hypervisor may show only "AMD EPYC") can differ here, and then a seeded training run is not bit-identical
    across them (README, "What is not measured"). Recorded with each fine-tune; not used to group results.

    Returns:
        E.g. ``"cpu (2 threads, AMD EPYC, AVX512, family 25 model 17)"``; a CUDA device as
        :func:`device_description`.

    Raises:
        ValueError: As :func:`device_description`.
    """
    text = device_description(device)
    if _parse_device(device).type == "cuda":
        return text
    fields = _cpuinfo("cpu family", "model")
    where = f", family {fields['cpu family']} model {fields['model']}" if len(fields) == 2 else ""
    return f"{text[:-1]}, {torch.backends.cpu.get_cpu_capability()}{where})"


def median_ms(fn: Callable[[], object], *, repeats: int, warmup: int, device: torch.device) -> float:
    """Median wall-clock ms of ``fn()`` over ``repeats`` calls after ``warmup`` calls.

    ``torch.utils.benchmark.timer`` synchronises the current accelerator before it
    reads the clock, so queued CUDA kernels are inside the measured interval.
    """
    times_s = []
    with torch.cuda.device(device) if device.type == "cuda" else nullcontext():
        for _ in range(warmup):
            fn()
        for _ in range(repeats):
            start = benchmark.timer()
            fn()
            times_s.append(benchmark.timer() - start)
    return statistics.median(times_s) * 1e3


def exact_length_generation_config(model: nn.Module, new_tokens: int, num_beams: int) -> GenerationConfig:
    """Generation settings that produce exactly ``new_tokens`` tokens per sequence.

    Token ids (decoder start, BOS, EOS, pad) come from the model's generation config,
    falling back to its config (where ``EncoderDecoderModel`` keeps them).

    Raises:
        ValueError: If the model has no ``decoder_start_token_id`` (or BOS) to start from.
    """
    def token_id(name: str):
        value = getattr(getattr(model, "generation_config", None), name, None)
        return value if value is not None else getattr(model.config, name, None)

    start = token_id("decoder_start_token_id")
    if start is None:
        start = token_id("bos_token_id")
    if start is None:
        raise ValueError("The model has no decoder_start_token_id (nor bos_token_id); set "
                         "model.config.decoder_start_token_id, e.g. to the [CLS] id for BERT2BERT.")
    eos, pad = token_id("eos_token_id"), token_id("pad_token_id")
    return GenerationConfig(
        max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=num_beams,
        num_return_sequences=1, use_cache=True, no_repeat_ngram_size=0, repetition_penalty=1.0,
        decoder_start_token_id=start, bos_token_id=token_id("bos_token_id"), eos_token_id=eos,
        pad_token_id=pad if pad is not None else eos,
    )


def check_generated_length(output: torch.Tensor, batch_size: int, new_tokens: int) -> None:
    # Encoder-decoder generate returns (batch, 1 + new_tokens): the decoder start token, then the new ones.
    if tuple(output.shape) != (batch_size, new_tokens + 1):
        raise RuntimeError(f"generate returned shape {tuple(output.shape)}, expected ({batch_size}, "
                           f"{new_tokens + 1}) = decoder start + {new_tokens} new tokens.")


def random_input_ids(model: nn.Module, batch_size: int, input_tokens: int, device: torch.device) -> torch.Tensor:
    """Random encoder input ids of shape (batch_size, input_tokens), without special tokens.

    Seeded (generator seed 0) so every model sees the same ids. Ids are drawn
    uniformly from [low, high) of the input embedding's rows. ``low`` is one past
    the largest special id in the configs (pad, BOS, EOS, decoder start, unknown,
    separator). For vocabularies of more than 2000 rows, ``low`` is at least 1000 and
    ``high`` is the row count minus 128: this skips BERT's [unused*], [UNK], [CLS],
    [SEP], [MASK] (ids 1-103), and T5's 100 sentinels and 28 padding rows and BART's
    <mask> at the top.
    """
    vocab = model.get_input_embeddings().num_embeddings
    configs = [model.config, getattr(model, "generation_config", None),
               getattr(model.config, "encoder", None), getattr(model.config, "decoder", None)]
    names = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id", "unk_token_id", "sep_token_id")
    special = [v for c in configs if c is not None for n in names for v in _as_list(getattr(c, n, None))]
    low, high = max(special, default=-1) + 1, vocab
    if vocab > _LARGE_VOCAB:
        low, high = max(low, _LOW_IDS_SKIPPED), vocab - _HIGH_IDS_SKIPPED
    if low >= high:
        low, high = 0, vocab
    generator = torch.Generator().manual_seed(0)
    return torch.randint(low, high, (batch_size, input_tokens), generator=generator).to(device)


def _as_list(value) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def check_positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def check_encoder_decoder(model: nn.Module) -> None:
    config = getattr(model, "config", None)
    if not getattr(config, "is_encoder_decoder", False) or not hasattr(model, "get_encoder"):
        raise ValueError(f"{type(model).__name__} is not an encoder-decoder model; latency, MACs and parameters "
                         "are measured for T5, BART and EncoderDecoderModel (BERT2BERT).")


def _parse_device(device: str) -> torch.device:
    """``torch.device`` for ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises:
        ValueError: For any other string, or CUDA when it is not available.
    """
    try:
        torch_device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"Unknown device {device!r}; use one of {', '.join(_SUPPORTED_DEVICES)} (or 'cuda:N').") from err
    if torch_device.type not in _SUPPORTED_DEVICES:
        raise ValueError(f"Unsupported device {device!r}; use one of {', '.join(_SUPPORTED_DEVICES)} (or 'cuda:N').")
    if torch_device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"Device {device!r} was asked for, but CUDA is not available on this machine "
                             f"(torch {torch.__version__}); use device='cpu'.")
        if torch_device.index is not None and torch_device.index >= torch.cuda.device_count():
            raise ValueError(f"Device {device!r} does not exist; this machine has {torch.cuda.device_count()} "
                             "CUDA device(s).")
    return torch_device


def model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _cpuinfo(*keys: str) -> dict[str, str]:
    """The first CPU's ``keys`` fields of /proc/cpuinfo (Linux; lower-case names, e.g. ``"model name"``),
    those present; empty elsewhere."""
    cpuinfo, fields = Path("/proc/cpuinfo"), {}
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, colon, value = line.partition(":")
            if colon and key.strip().lower() in keys and key.strip().lower() not in fields:
                fields[key.strip().lower()] = value.strip()
    return fields


def _cpu_name() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else from ``platform``."""
    return _cpuinfo("model name").get("model name") or platform.processor() or platform.machine() or "unknown CPU"


def new_cache():
    """An empty, lazily grown generation cache for an encoder-decoder model.

    ``generate`` otherwise pre-sizes its cache from the config's ``num_hidden_layers``,
    which T5 maps to the *encoder* depth; with a decoder deeper than the encoder (or
    any asymmetric T5) that cache is too short and generation fails with an
    IndexError. A cache without a config grows to the layers actually used.
    """
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    return EncoderDecoderCache(DynamicCache(), DynamicCache())


@dataclass(frozen=True)
class LMLatency:
    """Median latencies of a decoder-only LM, in milliseconds: ``prefill_ms`` (one forward pass over the
    prompt, filling the KV cache), ``decode_ms_per_token`` (``(latency_ms - prefill_ms) / new_tokens``),
    ``latency_ms`` (greedy ``generate`` of exactly ``new_tokens`` tokens, prefill included), with the
    setting they were measured in."""

    prefill_ms: float
    decode_ms_per_token: float
    latency_ms: float
    input_tokens: int
    new_tokens: int
    device: str
    repeats: int


def measure_lm_latency(model: nn.Module, *, input_tokens: int = 256, new_tokens: int = 64, device: str = "cpu",
                       repeats: int = 5, warmup: int = 1) -> LMLatency:
    """Time prefill and greedy generation of a decoder-only LM (batch 1), as :func:`measure_latency` times an
    encoder-decoder: random prompt ids (:func:`random_input_ids`), exactly ``new_tokens`` new tokens (EOS
    suppressed by ``min_new_tokens``), KV cache on, ``torch.inference_mode``, medians of ``repeats`` runs after
    ``warmup`` untimed ones (``torch.utils.benchmark.timer``). The model is moved to ``device`` and stays there.

    Raises:
        ValueError: On a non-positive size, an unknown device, or an encoder-decoder model.
        RuntimeError: If ``generate`` did not return exactly ``new_tokens`` new tokens.
    """
    check_positive(input_tokens=input_tokens, new_tokens=new_tokens, repeats=repeats)
    if getattr(model.config, "is_encoder_decoder", False):
        raise ValueError(f"{type(model).__name__} is an encoder-decoder model; time it with measure_latency.")
    torch_device = _parse_device(device)
    was_training = model.training
    model.to(torch_device).eval()
    try:
        ids = random_input_ids(model, 1, input_tokens, torch_device)
        mask = torch.ones_like(ids)
        eos = model.generation_config.eos_token_id if model.generation_config.eos_token_id is not None else \
            model.config.eos_token_id
        config = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=1,
                                  use_cache=True, repetition_penalty=1.0, no_repeat_ngram_size=0, eos_token_id=eos,
                                  pad_token_id=_as_list(eos)[0] if eos is not None else 0)

        def prefill():
            return model(input_ids=ids, attention_mask=mask, use_cache=True)

        def generate():
            return model.generate(input_ids=ids, attention_mask=mask, generation_config=config)

        with torch.inference_mode():
            out = generate()
            if out.shape[1] != input_tokens + new_tokens:
                raise RuntimeError(f"generate returned {out.shape[1] - input_tokens} new tokens, expected "
                                   f"{new_tokens}.")
            prefill_ms = median_ms(prefill, repeats=repeats, warmup=warmup, device=torch_device)
            latency_ms = median_ms(generate, repeats=repeats, warmup=max(warmup - 1, 0), device=torch_device)
    finally:
        model.train(was_training)
    return LMLatency(prefill_ms=prefill_ms, decode_ms_per_token=max(latency_ms - prefill_ms, 0.0) / new_tokens,
                     latency_ms=latency_ms, input_tokens=input_tokens, new_tokens=new_tokens,
                     device=device_description(device), repeats=repeats)
