"""EFTNAS step 4: the weight-sharing super-network, built with NNCF 2.19's BootstrapNAS elastic
width and trained with the sandwich rule and distillation (Munoz et al., LREC-COLING 2024,
Sec. 3.3; BootstrapNAS, Munoz et al. 2022).

How the super-network is built
    The importance-reordered dense model (``nas.reorder_by_importance``) is wrapped by NNCF's
    ``progressive_shrinking`` algorithm with elastic width only. Each encoder layer contributes two
    width groups, given explicitly (``overwrite_groups``, as the EFTNAS configurations do): its
    Q/K/V projections (widths = heads x head size) and its FFN intermediate Linear; the attention
    output projection and the FFN output Linear get dynamic inputs (``add_dynamic_inputs``). Elastic
    width keeps the *first* k rows or columns, which after reordering are the most important.

    Stock NNCF 2.19 stops on a transformers-5 BERT with "Next node for cluster ... doesn't have
    closing mask" (``nncf/common/pruning/shape_pruning_processor.py``,
    ``_get_next_node_sparse_multiplier``): its symbolic masks do not reach the attention output
    projection through the reshapes. The EFTNAS authors patched that spot in their NNCF fork to use
    a multiplier of 1. We do the equivalent without editing the installed package:
    :func:`closing_mask_fallback` wraps that method for the duration of the build, returning 1 only
    where the stock method raises this error. ``scripts/probe_nncf_bootstrapnas.py`` reproduces the
    error and shows that, with the fallback, the maximal subnetwork equals the dense model and a
    narrower one equals the physically extracted model exactly.

    A width of 0 (a layer EFTNAS may skip) is not an NNCF width: the group runs at its smallest
    non-zero width and a forward hook replaces the sublayer's output projection by its bias, which is
    exactly what the extracted model with that sublayer removed computes
    (``pruning.surgery.SkippedSelfAttention``).

How it is trained (:func:`train_supernetwork`)
    The transformers ``Trainer``; each step runs the sandwich rule (the largest, one random and the
    smallest subnetwork of the current stage), each distilled from the fine-tuned dense teacher with
    0.1 x cross-entropy + 0.9 x KL at temperature 2 (EFTNAS, Sec. 4; KL scaled by T^2, Hinton et al.
    2015), the three losses summed into one backward pass. Progressive shrinking (BootstrapNAS) is
    scheduled in stages over the steps: stage s of S lets each layer use its widest
    ceil(s / S x n) choices, so the search space opens from the top down.

The trained weights are plain Hugging Face weights of the reordered dense model
(:meth:`SuperNetwork.dense_model`), saved beside the search space (:func:`save_supernetwork`);
extracting a subnetwork from them needs neither NNCF nor this class (``nas.extract``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pruning import training
from pruning.adapters import get_adapter
from pruning.atomic import atomic_directory

from .nncf_setup import import_nncf
from .search_space import SearchSpace

SUPERNET_FILE = "supernet.json"
SPACE_FILE = "search_space.json"


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None, *,
                      ce_weight: float = 0.1, temperature: float = 2.0) -> torch.Tensor:
    """EFTNAS's super-network loss (Sec. 4): ``ce_weight`` x task loss + (1 - ``ce_weight``) x T^2 x
    KL(teacher || student at temperature T); the repository's one distillation loss,
    ``pruning.training.distillation_loss`` (squared errors for a one-output regression head).

    Args:
        student_logits, teacher_logits: (B, C).
        labels: (B,) class ids (float scores for C = 1), or None (the distillation term alone).

    Returns:
        A scalar tensor.
    """
    return training.distillation_loss(student_logits, teacher_logits, labels, ce_weight=ce_weight,
                                      temperature=temperature)


def nncf_node_name(model: nn.Module, module: nn.Linear) -> str:
    """NNCF's graph node name of ``module`` (a Linear inside ``model``), e.g.
    ``BertForSequenceClassification/BertModel[bert]/.../NNCFLinear[query]/linear_0``.

    Raises:
        ValueError: If ``module`` is not inside ``model``.
    """
    for path, sub in model.named_modules():
        if sub is module:
            break
    else:
        raise ValueError("The Linear is not part of the model.")
    parts, current = [type(model).__name__], model
    names = path.split(".")
    for i, name in enumerate(names):
        current = getattr(current, name) if not name.isdigit() else current[int(name)]
        kind = "NNCFLinear" if i == len(names) - 1 else type(current).__name__
        parts.append(f"{kind}[{name}]")
    return "/".join(parts) + "/linear_0"


def bootstrapnas_config(model: nn.Module, space: SearchSpace, *, seq_len: int = 128) -> dict:
    """The NNCF 2.19 configuration of the super-network over ``space`` (see the module docstring).

    Group 2l is layer l's Q/K/V (widths in features, descending), group 2l + 1 its FFN intermediate.
    Width 0 is left out (handled by :class:`SuperNetwork`); a layer whose only choice is 0 runs at
    one head / one neuron under NNCF.
    """
    adapter = get_adapter(model)
    groups, widths, dynamic = [], [], []
    for layer, heads, neurons in zip(adapter.encoder_layers(model), space.head_choices, space.ffn_choices):
        att, ffn = adapter.attention(layer), adapter.ffn(layer)
        groups.append([nncf_node_name(model, lin) for lin in (att.q, att.k, att.v)])
        widths.append(sorted({max(h, 1) * space.head_dim for h in heads}, reverse=True))
        groups.append([nncf_node_name(model, getattr(*ffn.inputs[0]))])
        widths.append(sorted({max(f, 1) for f in neurons}, reverse=True))
        dynamic += [nncf_node_name(model, att.o), nncf_node_name(model, getattr(*ffn.output))]
    inputs = [{"sample_size": [1, seq_len], "type": "long", "keyword": "input_ids"},
              {"sample_size": [1, seq_len], "type": "long", "keyword": "attention_mask"}]
    stage = {"train_dims": ["width"], "epochs": 1, "width_indicator": max(map(len, widths)), "init_lr": 1e-4,
             "epochs_lr": 1}
    return {"input_info": inputs, "bootstrapNAS": {"training": {
        "algorithm": "progressive_shrinking", "progressivity_of_elasticity": ["width"],
        "batchnorm_adaptation": {"num_bn_adaptation_samples": 0},
        "schedule": {"list_stage_descriptions": [stage]},
        "elasticity": {"available_elasticity_dims": ["width"],
                       "width": {"overwrite_groups": groups, "overwrite_groups_widths": widths,
                                 "add_dynamic_inputs": dynamic}}}}}


def rebind_traced_functions(model: nn.Module) -> int:
    """Point module attributes that hold a torch function captured before NNCF's import at NNCF's
    traced wrapper of it (NNCF wraps ``torch.nn.functional`` and ``torch`` functions at import,
    keeping the original as ``__wrapped__``).

    transformers' ``GELUActivation`` stores ``nn.functional.gelu`` when the model is built, so a
    model built before NNCF was imported calls the unwrapped ``gelu``, NNCF's graph has a hole
    between the FFN Linears, and the FFN output never receives its elastic input width (the first
    super-network built in a process failed that way). Returns the number of attributes rebound.
    """
    count = 0
    for module in model.modules():
        for name, value in list(vars(module).items()):
            fn = getattr(value, "__name__", None)
            if not isinstance(fn, str):
                continue
            for namespace in (F, torch):
                wrapper = getattr(namespace, fn, None)
                if wrapper is not None and wrapper is not value and getattr(wrapper, "__wrapped__", None) is value:
                    setattr(module, name, wrapper)
                    count += 1
                    break
    return count


@contextlib.contextmanager
def closing_mask_fallback():
    """While active, NNCF's ``ShapePruningProcessor._get_next_node_sparse_multiplier`` returns 1 for
    a next node whose input mask does not come from the pruned cluster, instead of raising "doesn't
    have closing mask" (the EFTNAS authors' patch to their NNCF fork, applied at run time and undone
    on exit; the installed package is not edited)."""
    nncf = import_nncf()
    from nncf.common.pruning.shape_pruning_processor import ShapePruningProcessor

    stock = ShapePruningProcessor._get_next_node_sparse_multiplier

    def with_fallback(self, graph, next_node, cluster):
        try:
            return stock(self, graph, next_node, cluster)
        except nncf.ValidationError as err:
            if "doesn't have closing mask" not in str(err):
                raise
            return 1

    ShapePruningProcessor._get_next_node_sparse_multiplier = with_fallback
    try:
        yield
    finally:
        ShapePruningProcessor._get_next_node_sparse_multiplier = stock


Config = tuple[tuple[int, ...], tuple[int, ...]]  # (heads per layer, FFN neurons per layer)


class SuperNetwork:
    """A weight-sharing super-network over a search space, on NNCF 2.19 elastic width.

    Args:
        model: The importance-reordered dense BERT-style classifier (copied, not modified).
        space: The search space (``nas.generate_search_space``) for this model.
        seq_len: Length of NNCF's tracing input.

    Attributes:
        net: The NNCF-wrapped model; call it like the Hugging Face model.
        space: The search space.

    Raises:
        ValueError: If the search space does not match the model (layers, heads, FFN width).
    """

    def __init__(self, model: nn.Module, space: SearchSpace, *, seq_len: int = 128):
        import_nncf()
        from nncf import NNCFConfig
        from nncf.experimental.torch.nas.bootstrapNAS.training.model_creator_helpers import (
                                                                                             create_compressed_model_from_algo_names)
        from nncf.torch.model_creation import create_nncf_network

        adapter = get_adapter(model)
        layers = adapter.encoder_layers(model)
        if (len(layers), adapter.num_heads(model), adapter.ffn_dim(model)) != (
                len(space.head_choices), space.num_heads, space.ffn_dim):
            raise ValueError(f"The search space is for {len(space.head_choices)} layers of {space.num_heads} heads / FFN "
                             f"{space.ffn_dim}; the model has {len(layers)} layers of {adapter.num_heads(model)} heads "
                             f"/ FFN {adapter.ffn_dim(model)}.")
        self.space = space
        self._template = copy.deepcopy(model).cpu().eval()
        student = copy.deepcopy(model)
        student.config._attn_implementation = "eager"  # NNCF traces the eager attention
        rebind_traced_functions(student)
        config = NNCFConfig.from_dict(bootstrapnas_config(student, space, seq_len=seq_len))
        # The skip hooks sit on the output projections, found before NNCF swaps Linears for NNCFLinears.
        names = {id(m): n for n, m in student.named_modules()}
        outputs = [(names[id(adapter.attention(layer).o)], names[id(getattr(*adapter.ffn(layer).output))])
                   for layer in adapter.encoder_layers(student)]
        with closing_mask_fallback():
            net = create_nncf_network(student, config)
            self.ctrl, self.net = create_compressed_model_from_algo_names(net, config, ["progressive_shrinking"],
                                                                           dump_graphs=False)  # no graph files
        self._width = self.ctrl.multi_elasticity_handler.width_handler
        self._skip: list[list[bool]] = [[False, False] for _ in space.head_choices]
        modules = dict(self.net.named_modules())
        for i, pair in enumerate(outputs):
            for j, name in enumerate(pair):
                modules[name].register_forward_hook(self._skip_hook(i, j))
        self.activate_maximum_subnet()

    def _skip_hook(self, layer: int, which: int):
        def hook(module, args, output):
            if not self._skip[layer][which]:
                return None
            return torch.zeros_like(output) + module.bias if module.bias is not None else torch.zeros_like(output)
        return hook

    # -- configurations (names after BootstrapNAS's ``activate_*_subnet`` and OFA's ``set_active_subnet``)

    def maximum_config(self) -> Config:
        """The dense configuration (every layer at full width)."""
        return tuple(max(c) for c in self.space.head_choices), tuple(max(c) for c in self.space.ffn_choices)

    def minimum_config(self, stage: int = 1, stages: int = 1) -> Config:
        """The smallest configuration allowed in progressive-shrinking stage ``stage`` of ``stages``."""
        return (tuple(min(c) for c in self._allowed(self.space.head_choices, stage, stages)),
                tuple(min(c) for c in self._allowed(self.space.ffn_choices, stage, stages)))

    def random_config(self, rng: random.Random, stage: int = 1, stages: int = 1) -> Config:
        """A configuration drawn uniformly per layer from the choices allowed in ``stage``."""
        return (tuple(rng.choice(c) for c in self._allowed(self.space.head_choices, stage, stages)),
                tuple(rng.choice(c) for c in self._allowed(self.space.ffn_choices, stage, stages)))

    @staticmethod
    def _allowed(choices: tuple[tuple[int, ...], ...], stage: int, stages: int) -> list[tuple[int, ...]]:
        return [c[len(c) - max(1, math.ceil(stage / stages * len(c))):] for c in choices]

    def set_active_subnet(self, heads, neurons) -> None:
        """Make ``(heads, neurons)`` (per layer, values from the search space) the active subnetwork.

        Raises:
            ValueError: If a value is not one of its layer's choices.
        """
        heads, neurons = tuple(heads), tuple(neurons)
        config = {}
        for i, (h, f) in enumerate(zip(heads, neurons, strict=True)):
            if h not in self.space.head_choices[i] or f not in self.space.ffn_choices[i]:
                raise ValueError(f"Layer {i}: {h} heads / {f} neurons is not in the search space "
                                 f"({self.space.head_choices[i]} / {self.space.ffn_choices[i]}).")
            config[2 * i] = max(h, 1) * self.space.head_dim
            config[2 * i + 1] = max(f, 1)
            self._skip[i] = [h == 0, f == 0]
        self._width.activate_subnet_for_config(config)
        self.active_config: Config = (heads, neurons)

    def activate_maximum_subnet(self) -> Config:
        """Activate (and return) :meth:`maximum_config`."""
        self.set_active_subnet(*self.maximum_config())
        return self.active_config

    def activate_minimum_subnet(self, stage: int = 1, stages: int = 1) -> Config:
        """Activate (and return) :meth:`minimum_config` of ``stage``."""
        self.set_active_subnet(*self.minimum_config(stage, stages))
        return self.active_config

    def activate_random_subnet(self, rng: random.Random, stage: int = 1, stages: int = 1) -> Config:
        """Activate (and return) a :meth:`random_config` of ``stage``."""
        self.set_active_subnet(*self.random_config(rng, stage, stages))
        return self.active_config

    def get_active_subnet(self) -> nn.Module:
        """The active subnetwork as a plain, physically smaller Hugging Face model (surgery on the
        shared weights: ``nas.extract_subnetwork``)."""
        from .extract import extract_subnetwork

        model, _ = extract_subnetwork(self.dense_model(), *self.active_config)
        return model

    def dense_model(self) -> nn.Module:
        """A plain Hugging Face copy of the reordered dense model holding the super-network's current
        (shared) weights; extract subnetworks from it with ``nas.extract_subnetwork``."""
        model = copy.deepcopy(self._template)
        state = {k: v for k, v in self.net.state_dict().items() if not k.startswith("_nncf")}
        missing, _ = model.load_state_dict(state, strict=False)
        if missing:
            raise RuntimeError(f"The super-network's weights lack {missing[:5]}.")  # pragma: no cover
        return model.eval()


@dataclass(frozen=True)
class SupernetSettings:
    """Super-network training (EFTNAS Sec. 3.3 / 4; defaults sized for a CPU).

    Attributes:
        max_steps: Optimizer steps (each runs three subnetworks: the sandwich rule).
        stages: Progressive-shrinking stages (1: the whole space from the start).
        batch_size, learning_rate, warmup_ratio, weight_decay: the Trainer's.
        ce_weight, temperature: The distillation loss (0.1 and 2 in EFTNAS).
        save_steps: A resumable checkpoint every this many steps (with ``checkpoint_dir``).
        seed: Sampling and training seed.
    """

    max_steps: int = 300
    stages: int = 2
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    ce_weight: float = 0.1
    temperature: float = 2.0
    save_steps: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.stages < 1 or self.batch_size < 1 or self.save_steps < 1:
            raise ValueError("max_steps, stages, batch_size and save_steps must be at least 1.")
        if not 0.0 <= self.ce_weight <= 1.0 or self.temperature <= 0:
            raise ValueError("ce_weight must be in [0, 1] and temperature positive.")


def stage_at(step: int, settings: SupernetSettings) -> int:
    """The progressive-shrinking stage (1..S) of optimizer step ``step`` (0-based): equal shares of
    the steps, narrowest choices last (BootstrapNAS progressive shrinking)."""
    return min(settings.stages, 1 + step * settings.stages // settings.max_steps)


def train_supernetwork(supernet: SuperNetwork, teacher: nn.Module, train_data, *, tokenizer,
                       settings: SupernetSettings = SupernetSettings(), device: str = "cpu",
                       progress=None, checkpoint_dir: str | os.PathLike | None = None) -> dict:
    """Train ``supernet`` in place with the sandwich rule and distillation (see the module docstring),
    on the repository's one training path (``pruning.training``: length-grouped batches, every core).

    The random subnetwork of step t is drawn from a generator seeded by (seed, t), so a run resumed
    from a checkpoint draws the same subnetworks as an uninterrupted one.

    Args:
        supernet: The super-network.
        teacher: The fine-tuned dense model (logits (B, C)); frozen.
        train_data: Tokenized examples (``input_ids``, ``attention_mask``, ``labels``): a list of
            dicts or a ``datasets.Dataset`` from ``pruning.training.tokenized_dataset``.
        tokenizer: For padding in the collator.
        device: ``cpu`` or ``cuda``.
        progress: Optional ``progress(fraction, message)``.
        checkpoint_dir: Keep a checkpoint every ``settings.save_steps`` steps there and continue
            from the last one found (None: no checkpoints).

    Returns:
        A summary: steps, stages, wall seconds, the step resumed from, the mean loss of the last tenth.

    Raises:
        ValueError: For no training examples.
    """
    from transformers import DataCollatorWithPadding, Trainer

    if not len(train_data):
        raise ValueError("Super-network training needs training examples.")
    teacher = teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    losses: list[float] = []

    class Sandwich(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels", None)
            with torch.no_grad():
                target = teacher(**inputs).logits
            step = self.state.global_step
            stage, total = stage_at(step, settings), 0.0
            rng = random.Random(settings.seed * 1_000_003 + step)
            for heads, neurons in (supernet.maximum_config(), supernet.random_config(rng, stage, settings.stages),
                                   supernet.minimum_config(stage, settings.stages)):
                supernet.set_active_subnet(heads, neurons)
                logits = model(**inputs).logits
                total = total + distillation_loss(logits, target, labels, ce_weight=settings.ce_weight,
                                                  temperature=settings.temperature)
            supernet.activate_maximum_subnet()
            losses.append(float(total.detach()))
            return total

    start = time.perf_counter()
    with training.output_folder(checkpoint_dir, "explorer-supernet-train-") as (out, resume):
        args = training.training_arguments(
            out, max_steps=settings.max_steps, batch_size=settings.batch_size, learning_rate=settings.learning_rate,
            warmup_ratio=settings.warmup_ratio, weight_decay=settings.weight_decay, seed=settings.seed, device=device,
            save_steps=settings.save_steps if checkpoint_dir else None)
        callbacks = [] if progress is None else [training.progress_callback(
            progress, "super-network", lambda: f"stage {stage_at(trainer.state.global_step, settings)}/{settings.stages}")]
        trainer = training.quiet(Sandwich(model=supernet.net, args=args, train_dataset=training.as_dataset(train_data),
                                          data_collator=training.DropColumns(DataCollatorWithPadding(tokenizer)),
                                          callbacks=callbacks))
        trainer.train(resume_from_checkpoint=resume)
    supernet.net.cpu().eval()
    supernet.activate_maximum_subnet()
    tail = losses[-max(1, len(losses) // 10):] or [float("nan")]
    return {"steps": settings.max_steps, "stages": settings.stages, "wall_s": round(time.perf_counter() - start, 1),
            "resumed_from": Path(resume).name if resume else None, "device": device,
            "final_loss": round(sum(tail) / len(tail), 4), "settings": asdict(settings)}


def save_supernetwork(supernet: SuperNetwork, directory: str | os.PathLike, *, tokenizer=None,
                      info: dict | None = None) -> Path:
    """Write the trained super-network as a plain Hugging Face folder (the reordered dense model with
    the shared weights), ``search_space.json`` and ``supernet.json`` (``info``), atomically.

    Returns:
        The folder.
    """
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        supernet.dense_model().save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        supernet.space.to_json(tmp / SPACE_FILE)
        (tmp / SUPERNET_FILE).write_text(json.dumps(info or {}, indent=1, default=str))
    return directory


def load_supernetwork(directory: str | os.PathLike, *, device: str = "cpu"):
    """``(model, space, info)`` from a folder written by :func:`save_supernetwork`; needs no NNCF.

    Raises:
        ValueError: If the folder is not a saved super-network.
    """
    directory = Path(directory)
    if not (directory / SPACE_FILE).is_file() or not (directory / "config.json").is_file():
        raise ValueError(f"{directory} is not a saved super-network (it needs config.json, the weights and "
                         f"{SPACE_FILE}); train one with `python -m explorer eftnas`.")
    space = SearchSpace.from_json(directory / SPACE_FILE)
    try:
        info = json.loads((directory / SUPERNET_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        info = {}
    return load_classifier_weights(directory).to(device).eval(), space, info


def load_classifier_weights(directory: str | os.PathLike) -> nn.Module:
    """A ``*ForSequenceClassification`` from a ``save_pretrained`` folder, built with ``from_config``
    and filled from its safetensors files.

    Not ``from_pretrained``: once NNCF has been imported, its wrapped torch functions leave
    transformers 5's ``from_pretrained`` with uninitialised non-persistent buffers (BERT's
    ``position_ids`` hold garbage), so a model loaded that way in the same process fails or, worse,
    computes nonsense. ``from_config`` initialises buffers eagerly.

    Raises:
        ValueError: If the weights do not match the config.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from pruning.surgery import read_safetensors

    directory = Path(directory)
    model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(directory))
    try:
        state = read_safetensors(directory)
    except FileNotFoundError as err:
        raise ValueError(str(err)) from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    buffers = {name for name, _ in model.named_buffers()}
    if [k for k in missing if k not in buffers] or unexpected:
        raise ValueError(f"The weights in {directory} do not match its config: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}.")
    return model.eval()
