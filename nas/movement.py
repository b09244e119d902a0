"""EFTNAS step 1: importance from NNCF 2.19 movement sparsity, reduced to one score per attention
head and per FFN neuron (Munoz et al., LREC-COLING 2024, Sec. 3.1, which trains movement sparsity
(Sanh et al., NeurIPS 2020) through NNCF and reads the learned importance).

The NNCF configuration is the paper's: 32 x 32 blocks on the attention projections, rows of the FFN
intermediate Linear and columns of the FFN output Linear, importance regularisation factor 0.02, a
warm-up schedule in epochs, and embeddings, LayerNorm, pooler and classifier left alone. NNCF's
structured masking is off: on transformers 5 its mask resolution fails (``scripts/probe_nncf_movement.py``),
and EFTNAS needs only the importance scores, which :func:`reduce_importance` turns into heads and
neurons itself. Training runs on the transformers ``Trainer`` (NNCF's loss added to the task loss,
its scheduler stepped by a callback) on a deep copy; the caller's model is not modified.

NNCF is imported inside the functions only, after ``NNCF_TORCH_LEGACY_TRACING=1`` (and ``CI=true``,
which turns its telemetry off) are set.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
from torch import nn

from pruning.adapters import get_adapter

from .nncf_setup import import_nncf

BLOCK = 32  # the paper's attention block size (rows x columns)


def movement_config(seq_len: int, *, steps_per_epoch: int, warmup_start_epoch: int = 1, warmup_end_epoch: int = 3,
                    regularization: float = 0.02) -> dict:
    """The NNCF ``movement_sparsity`` configuration of the EFTNAS paper (see the module docstring)
    for a BERT-style model traced with inputs of length ``seq_len``."""
    return {
        "input_info": [{"sample_size": [1, seq_len], "type": "long", "keyword": "input_ids"},
                       {"sample_size": [1, seq_len], "type": "long", "keyword": "attention_mask"}],
        "compression": {
            "algorithm": "movement_sparsity",
            "params": {"warmup_start_epoch": warmup_start_epoch, "warmup_end_epoch": warmup_end_epoch,
                       "importance_regularization_factor": regularization, "enable_structured_masking": False,
                       "init_importance_threshold": -0.1, "steps_per_epoch": steps_per_epoch},
            "sparse_structure_by_scopes": [
                {"mode": "block", "sparse_factors": [BLOCK, BLOCK], "target_scopes": "{re}.*BertAttention.*"},
                {"mode": "per_dim", "axis": 0, "target_scopes": "{re}.*BertIntermediate.*"},
                {"mode": "per_dim", "axis": 1, "target_scopes": "{re}.*BertOutput.*"}],
            "ignored_scopes": ["{re}.*NNCFEmbedding.*", "{re}.*LayerNorm.*", "{re}.*pooler.*", "{re}.*classifier.*"],
        },
    }


def reduce_importance(model: nn.Module, importance_of: Callable[[nn.Linear], torch.Tensor | None]):
    """One score per head and per FFN neuron from per-weight importance.

    A head's score is the sum over Q, K and V of the mean importance of its ``head_dim`` rows (for
    32 x 32 blocks: the mean of its blocks); a neuron's is its row's importance in the FFN
    intermediate Linear plus its column's in the FFN output Linear (EFTNAS, Sec. 3.1: "summed over
    Q, K and V"; rows and columns as the movement structure defines them).

    Args:
        model: A BERT-style encoder (the compressed copy, whose Linears ``importance_of`` knows).
        importance_of: Linear -> importance expanded to its weight's shape (out, in), or None.

    Returns:
        ``(head_scores, neuron_scores)``: per encoder layer, tensors (H,) and (F,).

    Raises:
        ValueError: If a projection has no importance (it was not sparsified).
    """
    adapter = get_adapter(model)
    heads, neurons = [], []
    for i, layer in enumerate(adapter.encoder_layers(model)):
        att, ffn = adapter.attention(layer), adapter.ffn(layer)
        found = [importance_of(lin) for lin in (att.q, att.k, att.v, getattr(*ffn.inputs[0]), getattr(*ffn.output))]
        if any(f is None for f in found):
            raise ValueError(f"Encoder layer {i}: an attention or FFN Linear has no movement importance.")
        q, k, v, inter, out = (f.detach().float() for f in found)
        n_heads = q.shape[0] // att.head_dim
        heads.append(sum(w.reshape(n_heads, att.head_dim, -1).mean(dim=(1, 2)) for w in (q, k, v)))
        neurons.append(inter.mean(dim=1) + out.mean(dim=0))
    return heads, neurons


def movement_importance(model: nn.Module, train_rows, *, tokenizer, max_steps: int = 200,
                        batch_size: int = 16, learning_rate: float = 3e-5, seq_len: int = 128,
                        warmup_start_epoch: int = 1, warmup_end_epoch: int = 3, epochs: int = 4,
                        regularization: float = 0.02, device: str = "cpu", seed: int = 0, progress=None):
    """Train NNCF movement sparsity on a copy of ``model`` and return head and neuron importance.

    Args:
        model: A fine-tuned (or pretrained) ``BertForSequenceClassification`` (eager attention is
            used for tracing); not modified.
        train_rows: Tokenized training examples (``input_ids``, ``attention_mask``, ``labels``): a
            list of dicts or a ``datasets.Dataset`` (``pruning.training.tokenized_dataset``).
        tokenizer: Its tokenizer (padding in the collator).
        max_steps: Training steps; NNCF's schedule spans ``epochs`` epochs of ``max_steps / epochs``
            steps, warm-up from ``warmup_start_epoch`` to ``warmup_end_epoch``.
        seq_len: Length of the tracing input (NNCF builds its graph once).
        device: ``cpu`` or ``cuda``.
        progress: Optional ``progress(fraction, message)`` after each step.

    Returns:
        ``(head_scores, neuron_scores, summary)``: per encoder layer (H,) and (F,) tensors (larger
        = more important), and a dict with the steps, wall seconds, the sparsified Linears' names
        and NNCF's final sparsity levels.

    Raises:
        ValueError: For no rows or a model whose attention blocks are not multiples of 32 wide.
    """
    import_nncf()
    from nncf import NNCFConfig
    from nncf.torch import create_compressed_model
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback

    from pruning import training

    if not len(train_rows):
        raise ValueError("Movement sparsity needs training examples.")
    adapter = get_adapter(model)
    head_dim = adapter.attention(adapter.encoder_layers(model)[0]).head_dim
    if head_dim % BLOCK or adapter.hidden_size(model) % BLOCK:
        raise ValueError(f"Movement sparsity's {BLOCK}x{BLOCK} attention blocks need a head size and hidden size "
                         f"divisible by {BLOCK}; this model has {head_dim} and {adapter.hidden_size(model)}.")
    torch.manual_seed(seed)
    student = copy.deepcopy(model).cpu()
    student.config._attn_implementation = "eager"
    per_epoch = max(1, max_steps // epochs)
    config = NNCFConfig.from_dict(movement_config(seq_len, steps_per_epoch=per_epoch,
                                                  warmup_start_epoch=warmup_start_epoch,
                                                  warmup_end_epoch=warmup_end_epoch, regularization=regularization))
    start = time.perf_counter()
    ctrl, compressed = create_compressed_model(student, config, dump_graphs=False)  # no graph files written
    with training.output_folder(None, "explorer-movement-") as (tmp, _):

        class Schedule(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                if state.global_step % per_epoch == 0:
                    ctrl.scheduler.epoch_step()
                ctrl.scheduler.step()

        class MovementTrainer(Trainer):
            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                outputs = model(**inputs)
                loss = outputs.loss + ctrl.loss()
                return (loss, outputs) if return_outputs else loss

        args = training.training_arguments(tmp, max_steps=max_steps, batch_size=batch_size,
                                           learning_rate=learning_rate, seed=seed,
                                           device=device)
        callbacks = [Schedule()] + ([training.progress_callback(progress, "movement sparsity")] if progress else [])
        trainer = training.quiet(MovementTrainer(
            model=compressed, args=args, train_dataset=training.as_dataset(train_rows),
            data_collator=training.DropColumns(DataCollatorWithPadding(tokenizer)), callbacks=callbacks))
        trainer.train()
    compressed.cpu()
    operands = {id(info.module): info.operand for info in ctrl.sparsified_module_info}
    heads, neurons = reduce_importance(
        compressed, lambda lin: operands[id(lin)].get_importance(expanded=True) if id(lin) in operands else None)
    stats = ctrl.statistics().movement_sparsity.model_statistics
    names = {id(m): n for n, m in compressed.named_modules()}
    summary = {"steps": max_steps, "wall_s": round(time.perf_counter() - start, 1), "device": device,
               "sparsified": sorted(names.get(id(info.module), "?") for info in ctrl.sparsified_module_info),
               "sparsity_level": round(float(stats.sparsity_level), 4),
               "sparsity_level_for_layers": round(float(stats.sparsity_level_for_layers), 4)}
    return heads, neurons, summary
