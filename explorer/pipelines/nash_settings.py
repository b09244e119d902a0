"""The settings of one NASH (or baseline) prune run (its method: ``explorer.pipelines.methods``)."""

from __future__ import annotations

from pathlib import Path
from dataclasses import dataclass, field

from explorer.data.tasks import get_task
from explorer.pipelines.methods import METHODS
from explorer.training.finetune import FinetuneSettings, resolve_device



class Cancelled(Exception):
    """Raised by a progress function when the user cancels a run (see ``explorer.backend.prune.start_prune``).

    ``run_prune`` writes nothing before its last step, so a cancelled run leaves no folder;
    a cancelled dense fine-tune leaves no cache entry (both are written atomically).
    """


@dataclass(frozen=True)
class TimingSettings:
    """How latency is measured (see ``explorer.evaluation.latency.measure_latency``)."""

    batch_size: int = 1
    input_tokens: int = 256  # source length, tokens
    new_tokens: int = 64  # generated tokens, forced
    num_beams: int = 1  # 1 = greedy
    repeats: int = 5
    task_lengths: bool = True  # also time at the task's median input and output lengths (task_lengths())

    def check(self) -> None:
        """Raises ValueError unless every count is a positive integer (checked before any long work)."""
        for name in ("batch_size", "input_tokens", "new_tokens", "num_beams", "repeats"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Timing {name.replace('_', ' ')} must be a positive integer, got {value!r}.")


@dataclass(frozen=True)
class PruneSettings:
    """Everything that defines one pruning run (``method`` picks how the encoder plan is made)."""

    model: str  # model spec (see explorer.models.loading)
    task: str  # task name (see explorer.data.tasks)
    encoder_sparsity: float  # fraction of encoder head + FFN parameters removed, in [0, 1)
    decoder_layers: int  # k decoder layers kept, 1 <= k <= L
    layer_selection: str = "uniform"  # uniform | low | high | learned (decoder layer gates; nash-learned only)
    data_dir: str | None = None  # local dataset folder; None: offline package or Hub
    recovery_steps: int = 0  # fine-tuning steps after pruning (0: none)
    eval_samples: int | None = 64  # first examples of the evaluation split scored (None: all of it)
    calibration_samples: int = 256  # at most this many first training examples for importance scores ...
    calibration_tokens: int = 4096  # ... and no more once their source tokens reach this (README: calibration)
    device: str = "cpu"  # cpu | cuda | auto
    num_beams: int = 1  # beams for the quality evaluation
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)  # dense fine-tuning
    timing: TimingSettings = field(default_factory=TimingSettings)
    dense_finetune: bool = True  # False: the model is already fine-tuned for the task
    method: str = "nash-training-free"  # one of METHODS
    gate_steps: int = 300  # nash-learned: gate training steps (then recovery_steps of final fine-tune)
    distill: bool = True  # nash-learned: distillation from the dense model
    save_steps: int = 500  # checkpoint interval of the dense fine-tune, gates and recovery (resumable runs)
    quantize: str = "none"  # none | int8: the pruned model's Linear weights in int8 (pruning.quantization, CPU)

    @classmethod
    def from_dict(cls, data: dict) -> PruneSettings:
        """The settings recorded in a run's ``metrics.json`` (``asdict`` of them) as an object.

        Raises:
            TypeError: For keys this version does not know.
        """
        data = dict(data)
        data["finetune"] = FinetuneSettings(**data.get("finetune", {}))
        data["timing"] = TimingSettings(**data.get("timing", {}))
        return cls(**data)

    def check(self) -> None:
        """Validate what can be validated without loading the model.

        Raises:
            ValueError: With a message that says what to change.
        """
        if not isinstance(self.encoder_sparsity, (int, float)) or not 0.0 <= self.encoder_sparsity < 1.0:
            raise ValueError(f"Encoder sparsity must be in [0, 1), got {self.encoder_sparsity}.")
        if self.decoder_layers < 1:
            raise ValueError(f"Decoder layers to keep must be at least 1, got {self.decoder_layers}.")
        from pruning import LAYER_SELECTIONS

        if self.layer_selection not in (*LAYER_SELECTIONS, "learned"):
            raise ValueError(f"Unknown layer selection {self.layer_selection!r}; use {', '.join(LAYER_SELECTIONS)} "
                             "or learned.")
        if self.method not in METHODS:
            raise ValueError(f"Unknown method {self.method!r}; use one of {', '.join(METHODS)}.")
        if self.method == "decoder-only" and self.encoder_sparsity:
            raise ValueError("decoder-only shortens the decoder and keeps the whole encoder: "
                             "set encoder sparsity to 0 or choose a NASH method.")
        if self.layer_selection == "learned" and self.method != "nash-learned":
            raise ValueError("Learned decoder layer selection trains decoder layer gates: choose the nash-learned "
                             "method, or uniform / low / high selection.")
        if self.method in ("nash-learned", "cofi") and self.gate_steps < 1:
            raise ValueError(f"{self.method} needs gate_steps >= 1.")
        from pruning import QUANTIZATIONS

        if self.quantize not in QUANTIZATIONS:
            raise ValueError(f"Unknown quantization {self.quantize!r}; use one of {', '.join(QUANTIZATIONS)}.")
        if self.quantize != "none" and resolve_device(self.device) != "cpu":
            raise ValueError("int8 weights run on the CPU: use --device cpu with --quantize int8.")
        if self.save_steps < 1:
            raise ValueError(f"save_steps must be at least 1, got {self.save_steps}.")
        if (self.eval_samples is not None and self.eval_samples < 1) or self.calibration_samples < 1 or self.calibration_tokens < 1 or self.recovery_steps < 0:
            raise ValueError("eval_samples, calibration_samples and calibration_tokens must be >= 1 and "
                             "recovery_steps >= 0.")
        self.timing.check()
        if self.data_dir is not None and Path(self.data_dir).expanduser().is_file():
            raise ValueError(f"--data-dir {self.data_dir} is one file; a prune trains and evaluates, so give the folder "
                             f"that holds the task's train and evaluation files (one file would be scored on the "
                             f"examples it trained on).")
        get_task(self.task)
        resolve_device(self.device)
