"""Learned NASH: train hard-concrete encoder gates under a Lagrangian sparsity target, with
distillation from the fine-tuned dense model, on the transformers ``Trainer``.

Steps (NASH, Ko et al. 2023, Sec. 3; the gate machinery of CoFi, Xia et al. 2022, Sec. 3):
    1. the decoder is shortened first: k of L layers kept by uniform / low / high selection, or,
       with learned selection, the whole decoder is trained with one gate per layer under its
       own Lagrangian with target 1 - k / L, and the k layers with the largest gates are kept;
    2. gates on every encoder head and FFN neuron (``pruning.gates``) are trained together with
       the weights: loss = task loss [+ KL(teacher || student) at temperature 2, times T^2]
       [+ hidden-state MSE with CoFi's layer mapping] + lambda1 (s - t) + lambda2 (s - t)^2,
       the target t ramped linearly over a warm-up, the multipliers trained by gradient ascent;
       separate learning rates for weights, gates and multipliers;
    3. deterministic gates give a plan (if training was too short for the expected sparsity to
       reach the target, the lowest-scoring remaining units are removed until it is met, and the
       run says so); their values are folded into the weights, and surgery builds the smaller
       model (which then gets the usual final fine-tune).

With ``LearnedSettings(cofi=True)`` the same loop trains the CoFi baseline instead
(``pruning.cofi.CoFiGates``: head, neuron and sublayer gates on encoder and decoder, and hidden-dimension
gates, every decoder layer kept; Xia et al. 2022, Sec. 3).

Everything trains through ``Seq2SeqTrainer``, so ``accelerate launch`` runs it on several GPUs. With a
checkpoint folder, gate training keeps a resumable checkpoint (weights, gates, multipliers, optimizer,
RNG, and the trainer's own record of the run) and continues from it when started again.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from explorer.data.tasks import Example, get_task
from explorer.models.loading import LoadedModel
from explorer.training.finetune import resolve_device, seq2seq_dataset
from pruning import training

Progress = Callable[[float, str], None]
TARGET_TOLERANCE = 0.005  # expected sparsity this close to the target counts as having reached it
RECORD = "gate_trainer.json"  # per checkpoint: last step's loss parts, step the target was reached, the trace


@dataclass(frozen=True)
class LearnedSettings:
    """Hyper-parameters of gate training (defaults are this project's choices; see the README)."""

    target_sparsity: float  # encoder sparsity t to reach, in [0, 1)
    max_steps: int = 300
    warmup_steps: int | None = None  # steps of the linear target ramp (None: half of max_steps)
    batch_size: int = 16
    learning_rate: float = 1e-4  # weights
    gate_learning_rate: float = 0.05  # log_alpha of the gates
    lambda_learning_rate: float = 0.05  # Lagrange multipliers (ascent)
    distill: bool = True  # KL on logits (T = 2) and hidden states from the dense teacher
    temperature: float = 2.0
    hidden_weight: float = 1.0  # weight of the hidden-state MSE
    seed: int = 0
    cofi: bool = False  # CoFi baseline: gates on encoder and decoder units and sublayers, every decoder layer kept
    cofi_hidden: bool = True  # CoFi's hidden-dimension gates (with cofi)

    def __post_init__(self) -> None:
        if not 0.0 <= self.target_sparsity < 1.0:
            raise ValueError(f"Target sparsity must be in [0, 1), got {self.target_sparsity}.")
        if self.max_steps < 1 or self.batch_size < 1:
            raise ValueError("Gate training needs max_steps >= 1 and batch_size >= 1.")


class GatedModel(nn.Module):
    """The student with its gates and Lagrange multipliers as one module, so the ``Trainer``
    (and DDP under ``accelerate launch``) places, wraps and saves them together.

    Everything with a gradient runs inside :meth:`forward` (DDP only tracks parameters used
    there): the trainer sets :attr:`targets` before each step, and the forward adds the
    Lagrangian term and the expected sparsities to the student's output."""

    def __init__(self, student: nn.Module, gates, lagrangian, decoder_gates=None, decoder_lagrangian=None):
        super().__init__()
        self.student, self.gates, self.lagrangian = student, gates, lagrangian
        self.decoder_gates, self.decoder_lagrangian = decoder_gates, decoder_lagrangian
        self.targets = (0.0, 0.0)  # (encoder, decoder) sparsity targets of the current step
        gates.attach(student)
        if decoder_gates is not None:
            decoder_gates.attach(student)

    def gate_parameters(self) -> list[nn.Parameter]:
        """log alpha of every gate (encoder units and, when learned, decoder layers)."""
        return list(self.gates.parameters()) + (list(self.decoder_gates.parameters()) if self.decoder_gates else [])

    def clamp_(self) -> None:
        """Clamp the log alpha of every gate, encoder and decoder (after each optimizer step)."""
        self.gates.clamp_()
        if self.decoder_gates is not None:
            self.decoder_gates.clamp_()

    def multipliers(self) -> list[nn.Parameter]:
        """The Lagrange multipliers (trained by ascent)."""
        extra = list(self.decoder_lagrangian.parameters()) if self.decoder_lagrangian is not None else []
        return list(self.lagrangian.parameters()) + extra

    def forward(self, **batch):
        """The student's forward (gates act through hooks) as a plain dict (DDP rebuilds its
        output type, and a model output class refuses new fields), with ``lagrangian`` (scalar),
        ``expected_sparsity`` and, for learned decoder layers, ``decoder_expected_sparsity`` added."""
        outputs = dict(self.student(**batch).items())
        expected = self.gates.expected_sparsity()
        term = self.lagrangian(expected, self.targets[0])
        outputs["expected_sparsity"] = expected
        if self.decoder_gates is not None:
            dec_expected = self.decoder_gates.expected_sparsity()
            term = term + self.decoder_lagrangian(dec_expected, self.targets[1])
            outputs["decoder_expected_sparsity"] = dec_expected
        outputs["lagrangian"] = term
        return outputs


def layer_distillation_loss(student_states: tuple[torch.Tensor, ...], teacher_states: tuple[torch.Tensor, ...],
                            mask: torch.Tensor, dims: torch.Tensor | None = None) -> torch.Tensor:
    """CoFi's layer distillation (Xia et al. 2022, Sec. 3.3): every teacher layer output is
    matched to the student layer output closest to it in MSE, and the distances are summed.

    Args:
        student_states: Student layer outputs, each (B, T, d) (embeddings output excluded).
        teacher_states: Teacher layer outputs, each (B, T, d).
        mask: (B, T), 1 on real tokens.
        dims: Optional (d,) bool, the hidden dimensions the student still has (CoFi's hidden
            gates): the MSE is taken over those only. CoFi instead learns a d x d map from the
            student's states to the teacher's; ours compares the kept dimensions directly.

    Returns:
        Scalar loss.
    """
    weight = mask[..., None].to(student_states[0].dtype)
    if dims is not None:
        weight = weight * dims.to(weight.dtype)  # (B, T, d)
        denom = mask.sum() * dims.sum()
    else:
        denom = weight.sum() * student_states[0].shape[-1]
    total = student_states[0].new_zeros(())
    for teacher in teacher_states:
        distances = torch.stack([(((s - teacher) ** 2) * weight).sum() / denom for s in student_states])
        total = total + distances.min()
    return total


def _trainer_class():
    from transformers import Seq2SeqTrainer

    from pruning.hard_concrete import target_sparsity

    class GateTrainer(Seq2SeqTrainer):
        """``Seq2SeqTrainer`` whose loss adds distillation and the Lagrangian, and whose optimizer
        has three parameter groups (weights; gates; multipliers, by ascent)."""

        def __init__(self, *args, teacher=None, learned: LearnedSettings, **kwargs):
            super().__init__(*args, **kwargs)
            self.teacher, self.learned = teacher, learned
            self.last = {}
            self.reached_step: int | None = None  # first step after the warm-up within 0.005 of the target
            self.trace: list[list[float]] = []  # [[step, expected sparsity], ...], 20 points per run

        def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
            """A checkpoint of the wrapped model as a plain state dict (``pytorch_model.bin``, which
            ``Trainer`` loads on resume) and the trainer's record (``RECORD``). Not safetensors: the
            wrapper is no ``PreTrainedModel``, and BERT's decoder ties its LM head to its word
            embeddings, shared tensors that safetensors refuses."""
            from transformers.utils import WEIGHTS_NAME

            if not self.args.should_save:
                return
            output_dir = output_dir or self.args.output_dir
            os.makedirs(output_dir, exist_ok=True)
            torch.save(self.model.state_dict() if state_dict is None else state_dict,
                       os.path.join(output_dir, WEIGHTS_NAME))
            with open(os.path.join(output_dir, RECORD), "w") as f:
                json.dump({"last": self.last, "reached_step": self.reached_step, "trace": self.trace}, f)

        def restore_record(self, checkpoint: str) -> None:
            """The record of the run up to ``checkpoint`` (from :meth:`_save`), before resuming there."""
            with open(os.path.join(checkpoint, RECORD)) as f:
                record = json.load(f)
            self.last, self.reached_step, self.trace = record["last"], record["reached_step"], record["trace"]

        def create_optimizer(self, model=None):
            wrapped = self.model
            lr = self.learned
            groups = [
                {"params": [p for p in wrapped.student.parameters() if p.requires_grad],
                 "lr": lr.learning_rate, "weight_decay": self.args.weight_decay},
                {"params": wrapped.gate_parameters(), "lr": lr.gate_learning_rate, "weight_decay": 0.0},
                {"params": wrapped.multipliers(), "lr": lr.lambda_learning_rate, "weight_decay": 0.0,
                 "maximize": True},
            ]
            self.optimizer = torch.optim.AdamW(groups)
            return self.optimizer

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            wrapped = getattr(model, "module", model)
            distill = self.learned.distill and self.teacher is not None
            warmup = self.learned.warmup_steps if self.learned.warmup_steps is not None else self.learned.max_steps // 2
            target = target_sparsity(self.state.global_step, self.learned.target_sparsity, warmup)
            dec_target = (target_sparsity(self.state.global_step, wrapped.decoder_gates.target, warmup)
                          if wrapped.decoder_gates is not None else 0.0)
            wrapped.targets = (target, dec_target)
            outputs = model(**inputs, output_hidden_states=distill)
            task = outputs["loss"]
            loss = task
            parts = {"task": float(task.detach())}
            if distill:
                with torch.no_grad():
                    teacher = self.teacher(**inputs, output_hidden_states=True)
                keep = inputs["labels"] != -100  # (B, T_tgt)
                kl = training.kd_loss(outputs["logits"][keep], teacher.logits[keep], self.learned.temperature)
                dims = wrapped.gates.hidden_mask() if hasattr(wrapped.gates, "hidden_mask") else None
                hidden = layer_distillation_loss(outputs["encoder_hidden_states"][1:],
                                                 teacher.encoder_hidden_states[1:], inputs["attention_mask"], dims)
                hidden = hidden + layer_distillation_loss(outputs["decoder_hidden_states"][1:],
                                                          teacher.decoder_hidden_states[1:], keep, dims)
                loss = loss + kl + self.learned.hidden_weight * hidden
                parts.update(kl=float(kl.detach()), hidden=float(hidden.detach()))
            lagrangian = outputs["lagrangian"]
            self.last = dict(parts, expected_sparsity=float(outputs["expected_sparsity"].detach()), target=target,
                             lambda1=float(wrapped.lagrangian.lambda1.detach()),
                             lambda2=float(wrapped.lagrangian.lambda2.detach()))
            if wrapped.decoder_gates is not None:
                self.last.update(decoder_expected_sparsity=float(outputs["decoder_expected_sparsity"].detach()),
                                 decoder_target=dec_target,
                                 decoder_lambda1=float(wrapped.decoder_lagrangian.lambda1.detach()),
                                 decoder_lambda2=float(wrapped.decoder_lagrangian.lambda2.detach()))
            loss = loss + lagrangian
            self.last["lagrangian"] = float(lagrangian.detach())
            step, expected = self.state.global_step + 1, self.last["expected_sparsity"]
            # reached: by the gates under the full target, i.e. once the warm-up has ramped it up (CoFi's gates
            # start above a small target, which says nothing about the Lagrangian reaching it)
            if (self.reached_step is None and self.state.global_step >= warmup
                    and expected >= self.learned.target_sparsity - TARGET_TOLERANCE):
                self.reached_step = step
            if step % max(1, self.learned.max_steps // 20) == 0 and (not self.trace or self.trace[-1][0] != step):
                self.trace.append([step, round(expected, 4)])
            return (loss, outputs) if return_outputs else loss

    return GateTrainer


def train_gates(dense: LoadedModel, examples: list[Example], settings: LearnedSettings, *, task: str,
                kept_decoder_layers: tuple[int, ...] | None = None, learned_decoder_layers: int | None = None,
                device: str = "cpu", progress: Progress | None = None,
                checkpoint_dir: str | os.PathLike | None = None, save_steps: int = 500):
    """Train encoder gates on a copy of ``dense`` shortened to ``kept_decoder_layers`` (or, with
    ``learned_decoder_layers`` = k, on the whole model with decoder layer gates that keep k);
    return the plan (in the dense model's indices), the folded and pruned student, and a summary.

    Args:
        dense: The fine-tuned dense model (also the distillation teacher); not modified.
        examples: Training examples.
        settings: Gate-training hyper-parameters.
        task: Task name (lengths).
        kept_decoder_layers: Kept decoder layer indices of the dense model (NASH's selection).
        learned_decoder_layers: Instead of ``kept_decoder_layers``: k, learned by decoder layer gates
            (``pruning.gates.DecoderLayerGates``).
        device: ``cpu`` or ``cuda``.
        progress: ``progress(fraction, message)`` after each step.
        checkpoint_dir: Keep a resumable checkpoint every ``save_steps`` steps there, and continue from
            the last one found (a run stopped part-way resumes with the same result it would have had;
            None: no checkpoints).

    Returns:
        ``(plan, pruned model, summary)``; the summary has the loss parts, expected sparsity,
        target and multipliers of the last step, the wall time, ``target_reached_step`` (the first
        step at or after the target's warm-up whose expected sparsity came within ``TARGET_TOLERANCE``
        of the target; None: never),
        ``sparsity_trace`` (expected sparsity at 20 points) and ``target_enforced`` (whether the plan
        needed the completion step: the deterministic gates alone fell short of the target) with
        ``completion_dropped`` (how many units that step removed: per family for NASH's gates,
        ``{"heads": n, "ffn_neurons": m}``; ``{"units": n}`` for CoFi's).

    Raises:
        ValueError: For no examples, bad settings, or not exactly one of ``kept_decoder_layers`` and
            ``learned_decoder_layers``.
    """
    from transformers import DataCollatorForSeq2Seq, TrainerCallback

    from pruning import PruningPlan, apply_plan, keep_all_plan
    from pruning.cofi import CoFiGates, fold_cofi_gates
    from pruning.gates import DecoderLayerGates, EncoderGates, fold_gates
    from pruning.hard_concrete import Lagrangian

    if not examples:
        raise ValueError("No training examples for gate training.")
    if (kept_decoder_layers is None) == (learned_decoder_layers is None):
        raise ValueError("Give either the kept decoder layers or the number of decoder layers to learn, not both.")
    base = keep_all_plan(dense.model)
    if settings.cofi and (learned_decoder_layers is not None or tuple(kept_decoder_layers) != base.kept_decoder_layers):
        raise ValueError(f"CoFi keeps every decoder layer (its gates narrow them instead); keep all "
                         f"{base.num_decoder_layers}.")
    device = resolve_device(device)
    spec = get_task(task)
    if kept_decoder_layers is None:
        kept_decoder_layers = base.kept_decoder_layers  # the student keeps every layer; its gates choose k
    shortened = PruningPlan(family=base.family, num_decoder_layers=base.num_decoder_layers, num_heads=base.num_heads,
                            ffn_dim=base.ffn_dim, kept_decoder_layers=tuple(kept_decoder_layers),
                            kept_encoder_heads=base.kept_encoder_heads, kept_encoder_neurons=base.kept_encoder_neurons)
    torch.manual_seed(settings.seed)
    student = apply_plan(dense.model, shortened)  # a new model; the dense one stays the teacher
    teacher = dense.model.eval() if settings.distill else None  # read only, under no_grad; placed below
    decoder_gates = DecoderLayerGates(student, learned_decoder_layers) if learned_decoder_layers else None
    unit_gates = CoFiGates(student, hidden=settings.cofi_hidden) if settings.cofi else EncoderGates(student)
    wrapped = GatedModel(student, unit_gates, Lagrangian(), decoder_gates,
                         Lagrangian() if decoder_gates is not None else None)
    data = seq2seq_dataset(dense.tokenizer, examples, spec.max_source_tokens, spec.max_target_tokens)

    class Clamp(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            getattr(model, "module", model).clamp_()

    start = time.perf_counter()
    with training.output_folder(checkpoint_dir, "explorer-gates-") as (tmp, resume):
        args = training.training_arguments(tmp, max_steps=settings.max_steps, batch_size=settings.batch_size,
                                           learning_rate=settings.learning_rate, scheduler="constant",
                                           seed=settings.seed, device=device, seq2seq=True,
                                           save_steps=save_steps if checkpoint_dir else None)
        collator = DataCollatorForSeq2Seq(dense.tokenizer, model=dense.model, label_pad_token_id=-100)
        report = [] if not progress else [training.progress_callback(
            progress, "gate training", lambda: f"expected sparsity {trainer.last.get('expected_sparsity', 0):.3f} -> "
                                               f"target {trainer.last.get('target', 0):.3f}")]
        trainer = training.quiet(_trainer_class()(
            model=wrapped, args=args, train_dataset=data, teacher=teacher, learned=settings,
            data_collator=training.DropColumns(collator), callbacks=[Clamp()] + report))
        if teacher is not None:
            teacher.to(trainer.args.device)  # this process's device (cuda:LOCAL_RANK under accelerate launch)
        if resume:
            trainer.restore_record(resume)
        trainer.train(resume_from_checkpoint=resume)
    wrapped.to("cpu").eval()
    dense.model.to("cpu")
    gates = wrapped.gates
    if decoder_gates is not None:  # the student has every decoder layer: its indices are the dense ones
        decoder_gates.detach()
        student_kept = kept_decoder_layers = decoder_gates.kept_layers()
    else:
        student_kept = tuple(range(len(kept_decoder_layers)))
    student_plan = gates.plan(student, kept_decoder_layers=student_kept, target=settings.target_sparsity)
    method = "cofi" if settings.cofi else "nash-learned"
    if settings.cofi:  # the student is the dense model's shape: its plan is the plan
        plan = replace(student_plan, notes={"method": method})
        gate_values = {"heads": [z.tolist() for (stack, _, kind), z in zip(gates.blocks, gates.final_gates())
                                 if stack == "encoder" and kind == "self"]}
    else:
        plan = PruningPlan(family=base.family, num_decoder_layers=base.num_decoder_layers, num_heads=base.num_heads,
                           ffn_dim=base.ffn_dim, kept_decoder_layers=tuple(kept_decoder_layers),
                           kept_encoder_heads=student_plan.kept_encoder_heads,
                           kept_encoder_neurons=student_plan.kept_encoder_neurons,
                           notes={"method": method})
        gate_values = {"heads": [g.deterministic().tolist() for g in gates.heads]}  # kept neurons: see the plan
    plan = replace(plan, notes=dict(plan.notes, distill=settings.distill, target_sparsity=settings.target_sparsity,
                                    gate_steps=settings.max_steps, decoder_layers_learned=decoder_gates is not None,
                                    target_enforced=student_plan.notes["target_enforced"]))
    if decoder_gates is not None:
        gate_values["decoder_log_alpha"] = decoder_gates.layers.log_alpha.detach().tolist()
    folded = fold_cofi_gates(student, gates) if settings.cofi else fold_gates(student, gates)
    pruned = apply_plan(folded, student_plan)
    summary = dict(trainer.last, steps=settings.max_steps, wall_s=round(time.perf_counter() - start, 1),
                   device=device, distill=settings.distill, gates=gate_values,
                   target_enforced=student_plan.notes["target_enforced"],
                   completion_dropped=student_plan.notes["completion_dropped"], target_reached_step=trainer.reached_step,
                   sparsity_trace=trainer.trace)
    return plan, pruned, summary
