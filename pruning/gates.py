"""Learned NASH (first part): hard-concrete L0 gates on encoder heads and FFN neurons, the
expected encoder sparsity they imply, and the Lagrangian that pulls it to a target.

Sources:
    * Hard concrete: Louizos, Welling and Kingma, "Learning Sparse Neural Networks through L0
      Regularization", ICLR 2018, Sec. 2.3 (stretched, clamped binary concrete), Eq. 12 (the
      probability that a gate is non-zero) and Eq. 13 (the test-time gate).
    * Gates on heads and FFN neurons of the encoder, deterministic gates at the end with the
      expected number of zeros removed, lowest first: NASH (Ko et al. 2023, Sec. 3.2), which
      takes them from CoFi (Xia et al., ACL 2022, Sec. 3).
    * Lagrangian lambda1 (s - t) + lambda2 (s - t)^2 with the multipliers trained by gradient
      ascent and the target t ramped linearly: Wang, Wohlwend and Lei, "Structured Pruning of
      Large Language Models", EMNLP 2020, Sec. 3.2, as CoFi uses it.
    * Learned decoder layers (the NASH issue's fourth selection, next to uniform / low / high):
      one hard-concrete gate per decoder layer with target sparsity 1 - k / L, the layer's
      output mixed as x + z (f(x) - x) (a closed gate skips the layer, as CoFi's layer gates
      do), and the k layers with the largest log alpha kept at the end.

Gates act through forward pre-hooks on the modules that read the units (an attention output
projection sees heads x head_dim columns; an FFN output projection sees the neurons), the same
places the Taylor importance masks (``pruning.importance``); no model file is forked. A gated
run only produces a different :class:`~pruning.plan.PruningPlan`, applied by the same surgery.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .adapters import (get_adapter, params_of_one_head, params_of_one_neuron, per_hidden_dim_of_head,
                       per_hidden_dim_of_neuron)
from .plan import PruningPlan

LIMITS = (-0.1, 1.1)  # stretch interval (l, r), Louizos et al. Sec. 2.3
TEMPERATURE = 2.0 / 3.0  # beta
LOG_ALPHA_RANGE = (math.log(1e-2), math.log(1e2))  # log alpha is clamped here after every update
EPS = 1e-6


class HardConcrete(nn.Module):
    """``n`` hard-concrete gates z in [0, 1] with learnable location ``log_alpha`` (n,).

    Training mode samples z = min(1, max(0, sigmoid((log u - log(1 - u) + log_alpha) / beta)
    (r - l) + l)), u ~ U(0, 1); eval mode gives the test-time gate of Eq. 13,
    min(1, max(0, sigmoid(log_alpha) (r - l) + l)).

    Args:
        n: Number of gates.
        init_drop_rate: Initial probability p of dropping a unit; ``log_alpha`` starts at
            log(1 - p) - log(p) (0 for p = 0.5) plus N(0, ``init_std``) noise.
        temperature: beta.
        limits: (l, r) with l < 0 < 1 < r.

    Raises:
        ValueError: For n < 1, p outside (0, 1) or limits not around [0, 1].
    """

    def __init__(self, n: int, init_drop_rate: float = 0.5, temperature: float = TEMPERATURE,
                 limits: tuple[float, float] = LIMITS, init_std: float = 0.01):
        super().__init__()
        if n < 1 or not 0.0 < init_drop_rate < 1.0 or not limits[0] < 0.0 < 1.0 < limits[1]:
            raise ValueError(f"HardConcrete needs n >= 1, 0 < init_drop_rate < 1 and l < 0 < 1 < r; got {n}, "
                             f"{init_drop_rate}, {limits}.")
        self.temperature, self.limits = temperature, limits
        loc = math.log(1.0 - init_drop_rate) - math.log(init_drop_rate)
        self.log_alpha = nn.Parameter(torch.full((n,), loc) + init_std * torch.randn(n))

    def forward(self) -> torch.Tensor:
        """Gate values, (n,): a sample in training mode, the test-time gate in eval mode."""
        low, high = self.limits
        if self.training:
            u = torch.rand_like(self.log_alpha).clamp(EPS, 1.0 - EPS)
            s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / self.temperature)
        else:
            s = torch.sigmoid(self.log_alpha)
        return (s * (high - low) + low).clamp(0.0, 1.0)

    def prob_nonzero(self) -> torch.Tensor:
        """P(z > 0) per gate, (n,): sigmoid(log_alpha - beta log(-l / r)) (Louizos et al. Eq. 12);
        its sum is the expected number of kept units (the expected L0 norm)."""
        low, high = self.limits
        return torch.sigmoid(self.log_alpha - self.temperature * math.log(-low / high))

    def deterministic(self) -> torch.Tensor:
        """Final gates, (n,): the round(n - E[L0]) gates with the lowest log_alpha are 0, the
        others keep their test-time value (NASH / CoFi)."""
        with torch.no_grad():
            z = self.eval_values()
            zeros = int(round(len(z) - float(self.prob_nonzero().sum())))
            if zeros > 0:
                z[torch.argsort(self.log_alpha, stable=True)[:zeros]] = 0.0
            return z

    def eval_values(self) -> torch.Tensor:
        """The test-time gate (Eq. 13), (n,), without gradient."""
        with torch.no_grad():
            low, high = self.limits
            return (torch.sigmoid(self.log_alpha) * (high - low) + low).clamp(0.0, 1.0)

    def clamp_(self) -> None:
        """Keep log_alpha in ``LOG_ALPHA_RANGE`` (call after each optimizer step)."""
        with torch.no_grad():
            self.log_alpha.clamp_(*LOG_ALPHA_RANGE)


class EncoderGates(nn.Module):
    """Hard-concrete gates on every encoder head and FFN neuron of a supported model.

    ``attach(model)`` registers the hooks: each encoder forward draws one gate vector per
    layer (shared by the batch; CoFi and NASH do the same) in training mode, or uses the
    deterministic gates in eval mode; ``detach()`` removes them.

    Args:
        model: A dense model (T5 / FLAN-T5, BART, BERT2BERT or a BERT encoder).
        init_drop_rate: See :class:`HardConcrete`.
    """

    def __init__(self, model: nn.Module, init_drop_rate: float = 0.5):
        super().__init__()
        adapter = get_adapter(model)
        self.family = adapter.family
        layers = adapter.encoder_layers(model)
        self.num_heads, self.ffn_dim = adapter.num_heads(model), adapter.ffn_dim(model)
        self.params_per_head = adapter.params_per_head(model)
        self.params_per_neuron = adapter.params_per_neuron(model)
        self.heads = nn.ModuleList(HardConcrete(self.num_heads, init_drop_rate) for _ in layers)
        self.neurons = nn.ModuleList(HardConcrete(self.ffn_dim, init_drop_rate) for _ in layers)
        self._handles: list = []
        self._z: dict[str, list[torch.Tensor]] = {}

    def _draw(self) -> None:
        if self.training:
            self._z = {"heads": [g() for g in self.heads], "neurons": [g() for g in self.neurons]}
        else:
            self._z = {"heads": [g.deterministic() for g in self.heads],
                       "neurons": [g.deterministic() for g in self.neurons]}

    def attach(self, model: nn.Module) -> EncoderGates:
        """Register the gate hooks on ``model`` (the one the gates were built for); returns self."""
        adapter = get_adapter(model)
        self.detach()
        layers = adapter.encoder_layers(model)
        # One draw per encoder forward: at the first encoder layer, before any gated module runs.
        self._handles.append(layers[0].register_forward_pre_hook(lambda *_: self._draw()))
        for i, layer in enumerate(layers):
            att = adapter.attention(layer)
            self._handles.append(att.o.register_forward_pre_hook(self._head_hook(i, att.head_dim)))
            self._handles.append(getattr(*adapter.ffn(layer).output).register_forward_pre_hook(self._neuron_hook(i)))
        return self

    def _head_hook(self, i: int, head_dim: int):
        def hook(_module, args):
            (x,) = args  # (B, T, heads * head_dim)
            z = self._z["heads"][i].to(x.dtype)  # (heads,)
            return (x * z.repeat_interleave(head_dim),)
        return hook

    def _neuron_hook(self, i: int):
        def hook(_module, args):
            (x,) = args  # (B, T, ffn_dim)
            return (x * self._z["neurons"][i].to(x.dtype),)
        return hook

    def detach(self) -> None:
        """Remove every hook this object registered."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def expected_sparsity(self) -> torch.Tensor:
        """Expected fraction of encoder head + FFN parameters removed (scalar, differentiable):
        1 - sum_l (E[heads kept]_l x params per head + E[neurons kept]_l x params per neuron)
        / (L x (H x params per head + F x params per neuron)), with E[kept] the sum of
        P(z > 0) (Eq. 12) and the per-unit counts of the family (a gated FFN counts three
        matrices per neuron). The same definition as ``pruning.encoder_sparsity`` of a plan."""
        kept = sum(g.prob_nonzero().sum() * self.params_per_head for g in self.heads)
        kept = kept + sum(g.prob_nonzero().sum() * self.params_per_neuron for g in self.neurons)
        total = len(self.heads) * (self.num_heads * self.params_per_head + self.ffn_dim * self.params_per_neuron)
        return 1.0 - kept / total

    def clamp_(self) -> None:
        """Clamp every log_alpha (after each optimizer step)."""
        for g in list(self.heads) + list(self.neurons):
            g.clamp_()

    def plan(self, model: nn.Module, decoder_layers: tuple[int, ...], notes: dict | None = None,
             target: float | None = None) -> PruningPlan:
        """The plan of the deterministic gates: units whose gate is 0 are removed; every layer
        keeps at least its one highest-scoring head and neuron (a layer cannot be empty). Such a
        unit may have gate 0: :func:`fold_gates` zeroes its weights, so fold, then surgery with
        this plan, computes what the gated model computes.

        Args:
            model: The dense model the gates were built for.
            decoder_layers: Kept decoder layer indices (from layer selection or decoder gates).
            notes: Provenance stored in the plan.
            target: When given and the deterministic gates remove a smaller fraction of heads or
                of neurons than ``target`` (training too short for the Lagrangian to reach it),
                the remaining units with the lowest log alpha are removed too, globally across
                layers, until each family's removed fraction reaches ``target``; the plan's notes
                say so (``target_enforced``). This is our addition, so that a budget is always met;
                the units it removes had non-zero gates, so the equivalence above no longer holds
                for them (the final fine-tune follows). Without ``target``: NASH / CoFi exactly.
        """
        adapter = get_adapter(model)

        def kept(gate: HardConcrete) -> set[int]:
            z = gate.deterministic()
            idx = torch.nonzero(z > 0).flatten().tolist()
            return set(idx) if idx else {int(torch.argmax(gate.log_alpha))}

        heads = [kept(g) for g in self.heads]
        neurons = [kept(g) for g in self.neurons]
        enforced = False
        if target is not None:
            enforced = _remove_lowest(self.heads, heads, target) | _remove_lowest(self.neurons, neurons, target)
        extra = {"target_enforced": enforced} if target is not None else {}
        return PruningPlan(family=adapter.family, num_decoder_layers=adapter.num_decoder_layers(model),
                           num_heads=self.num_heads, ffn_dim=self.ffn_dim, decoder_layers=tuple(decoder_layers),
                           encoder_heads=tuple(tuple(sorted(k)) for k in heads),
                           encoder_neurons=tuple(tuple(sorted(k)) for k in neurons),
                           notes=dict(notes or {}, method="nash-learned-gates", **extra))


def _remove_lowest(gates, kept: list[set[int]], target: float) -> bool:
    """Remove kept units (in place) lowest log alpha first, at least one left per layer, until
    round(target x all units) are removed. Returns whether any unit was removed."""
    total = sum(len(g.log_alpha) for g in gates)
    need = int(round(target * total)) - (total - sum(len(k) for k in kept))
    if need <= 0:
        return False
    candidates = sorted((float(g.log_alpha.detach()[i]), layer, i) for layer, g in enumerate(gates) for i in kept[layer])
    removed = 0
    for _, layer, i in candidates:
        if removed == need:
            break
        if len(kept[layer]) > 1:
            kept[layer].discard(i)
            removed += 1
    return removed > 0


class DecoderLayerGates(nn.Module):
    """One hard-concrete gate per decoder layer; ``keep`` = k layers survive.

    A gated layer computes x + z (f(x) - x), with x its input hidden states (B, T, d) and f(x)
    its output: z = 0 skips the layer, z = 1 runs it. This works for pre-LN (T5, BART) and
    post-LN (BERT) layers alike, where scaling a sublayer's output would not make a closed
    layer the identity. The deterministic gates are binary: 1 for the k layers with the
    largest log alpha, 0 for the rest, so the gated model in eval mode computes exactly
    what the model with the other layers removed computes (test: ``tests/test_gates.py``).

    Args:
        model: A dense encoder-decoder model.
        keep: k, decoder layers to keep, 1 <= k <= L.
        init_drop_rate: See :class:`HardConcrete`.

    Raises:
        ValueError: For a model without a decoder or k outside [1, L].
    """

    def __init__(self, model: nn.Module, keep: int, init_drop_rate: float = 0.5):
        super().__init__()
        n = len(get_adapter(model).decoder_layers(model))
        if n == 0:
            raise ValueError("Decoder layer gates need an encoder-decoder model; this model has no decoder.")
        if not 1 <= keep <= n:
            raise ValueError(f"Decoder layers to keep must be between 1 and {n} (the model's count), got {keep}.")
        self.keep, self.num_layers = keep, n
        self.layers = HardConcrete(n, init_drop_rate)
        self._handles: list = []
        self._z: torch.Tensor | None = None
        self._inputs: dict[int, torch.Tensor] = {}

    @property
    def target(self) -> float:
        """The sparsity target 1 - k / L of the decoder gates."""
        return 1.0 - self.keep / self.num_layers

    def kept_layers(self) -> tuple[int, ...]:
        """The k layers with the largest log alpha, increasing."""
        order = torch.argsort(self.layers.log_alpha.detach(), descending=True, stable=True)
        return tuple(sorted(int(i) for i in order[:self.keep]))

    def deterministic(self) -> torch.Tensor:
        """Binary final gates, (L,): 1 on :meth:`kept_layers`, 0 elsewhere."""
        z = torch.zeros(self.num_layers)
        z[list(self.kept_layers())] = 1.0
        return z

    def expected_sparsity(self) -> torch.Tensor:
        """Expected fraction of decoder layers removed, 1 - sum P(z > 0) / L (scalar,
        differentiable; every decoder layer owns the same parameters)."""
        return 1.0 - self.layers.prob_nonzero().sum() / self.num_layers

    def clamp_(self) -> None:
        """Clamp log alpha (after each optimizer step)."""
        self.layers.clamp_()

    def attach(self, model: nn.Module) -> DecoderLayerGates:
        """Register the hooks on ``model``'s decoder layers; returns self."""
        self.detach()
        layers = get_adapter(model).decoder_layers(model)
        for i, layer in enumerate(layers):
            self._handles.append(layer.register_forward_pre_hook(self._pre_hook(i), with_kwargs=True))
            self._handles.append(layer.register_forward_hook(self._post_hook(i)))
        return self

    def _pre_hook(self, i: int):
        def hook(_module, args, kwargs):
            if i == 0:  # one draw per decoder forward (per generated token in generation)
                self._z = self.layers() if self.training else self.deterministic().to(self.layers.log_alpha.device)
            self._inputs[i] = args[0] if args else kwargs["hidden_states"]  # (B, T, d)
        return hook

    def _post_hook(self, i: int):
        def hook(_module, _args, output):
            x = self._inputs.pop(i)
            z = self._z[i].to(x.dtype)
            hidden = output[0] if isinstance(output, tuple) else output
            mixed = x + z * (hidden - x)
            return (mixed, *output[1:]) if isinstance(output, tuple) else mixed
        return hook

    def detach(self) -> None:
        """Remove every hook this object registered."""
        for handle in self._handles:
            handle.remove()
        self._handles, self._inputs = [], {}


def target_sparsity(step: int, target: float, warmup_steps: int) -> float:
    """The Lagrangian's target at ``step``: 0 at step 0, rising linearly to ``target`` at
    ``warmup_steps``, then constant (Wang et al. 2020; CoFi's warm-up).

    Raises:
        ValueError: For a target outside [0, 1) or a negative warm-up.
    """
    if not 0.0 <= target < 1.0 or warmup_steps < 0:
        raise ValueError(f"Target sparsity must be in [0, 1) and warm-up >= 0; got {target}, {warmup_steps}.")
    if warmup_steps == 0:
        return target
    return target * min(1.0, step / warmup_steps)


class Lagrangian(nn.Module):
    """lambda1 (s - t) + lambda2 (s - t)^2, with lambda1 and lambda2 starting at 0.

    The model and gates minimise it; the multipliers maximise it: give ``parameters()`` of
    this module to an optimizer with ``maximize=True`` (gradient ascent). While the expected
    sparsity s is below the target t, ascent drives lambda1 negative, so the term rewards a
    larger s; lambda2 grows with every step the constraint is violated.
    """

    def __init__(self):
        super().__init__()
        self.lambda1 = nn.Parameter(torch.zeros(()))
        self.lambda2 = nn.Parameter(torch.zeros(()))

    def forward(self, expected: torch.Tensor, target: float) -> torch.Tensor:
        """The Lagrangian term (scalar) for expected sparsity ``expected`` and target ``target``."""
        gap = expected - target
        return self.lambda1 * gap + self.lambda2 * gap * gap


def fold_gates(model: nn.Module, gates: EncoderGates) -> nn.Module:
    """Multiply the deterministic gate values into the weights, in place, so that the model
    without hooks computes what the gated model computes in eval mode (NASH / CoFi: the
    remaining gate values are absorbed before the final fine-tune).

    A head's gate scales its head_dim input columns of the attention output projection; a
    neuron's gate scales its input column of the FFN output projection (biases are not
    touched: they come after the gated product). Closed gates leave zero columns, which
    :func:`pruning.apply_plan` with :meth:`EncoderGates.plan` then removes.

    Returns:
        ``model``, with the gates' hooks detached.
    """
    adapter = get_adapter(model)
    gates.detach()
    with torch.no_grad():
        for layer, head_gate, neuron_gate in zip(adapter.encoder_layers(model), gates.heads, gates.neurons):
            att = adapter.attention(layer)
            att.o.weight.mul_(head_gate.deterministic().repeat_interleave(att.head_dim).to(att.o.weight.dtype))
            out = getattr(*adapter.ffn(layer).output)
            out.weight.mul_(neuron_gate.deterministic().to(out.weight.dtype))
    return model


class CoFiGates(nn.Module):
    """CoFi's coarse- and fine-grained gates on encoder and decoder (the NASH issue's CoFi baseline).

    Fine-grained: one hard-concrete gate per head of every attention block (encoder
    self-attention; decoder self- and cross-attention), per FFN neuron of every layer, and (with
    ``hidden=True``, CoFi's default) per hidden dimension, one vector shared by encoder and
    decoder. Coarse-grained: one gate per attention block and per FFN (CoFi's z_MHA and z_FFN),
    which multiplies its units' gates, so a closed block silences the whole sublayer (Xia et al.,
    ACL 2022, Sec. 3.1). NASH compares with CoFi applied to encoder and decoder alike.

    The hidden gate z_h (d,) scales the residual stream where it starts (the token embedding of
    T5, the embedding LayerNorm of BART and BERT) and every output on it (attention output
    projections, FFN outputs), and every norm then normalises over the dimensions whose gate is
    non-zero only (CoFi's ``CoFiLayerNorm``), with zeros elsewhere; so the closed dimensions are
    exactly zero throughout and the model with them cut (``pruning.surgery.narrow_hidden``)
    computes the same.

    Expected sparsity (Sec. 3.2, over encoder and decoder attention and FFN parameters):
    1 - sum_blocks P(z_block > 0) sum_units P(z_unit > 0) (a_unit E[d kept] + b_unit) / all such
    parameters, where a unit owns a_unit parameters per hidden dimension (4 x head_dim for a head:
    Q, K, V rows and output columns; one per FFN Linear for a neuron) and b_unit biases, and
    E[d kept] = sum P(z_h > 0) (d without hidden gates); embeddings and norms are not counted, as
    in CoFi. Deterministic gates (Sec. 3.4): each vector has its expected number of zeros, lowest
    log alpha first, and a unit's final gate is z_unit z_block.

    Not implemented: removing a sublayer outright: a plan keeps at least one unit per block, so a
    closed block keeps its best unit with its weights folded to zero (it computes nothing; it costs
    that one unit). Decoder layers are never dropped.

    Args:
        model: A dense encoder-decoder model (T5 / FLAN-T5, BART, BERT2BERT).
        init_drop_rate: See :class:`HardConcrete`.
        hidden: Also gate the hidden dimensions (CoFi's default).

    Raises:
        ValueError: For a model without a decoder, or hidden gates on a model whose encoder and
            decoder hidden sizes differ.
    """

    def __init__(self, model: nn.Module, init_drop_rate: float = 0.5, hidden: bool = True):
        super().__init__()
        adapter = get_adapter(model)
        encoder, decoder = adapter.encoder_layers(model), adapter.decoder_layers(model)
        if not decoder:
            raise ValueError("CoFi gates here cover an encoder-decoder model; this model has no decoder.")
        self.family = adapter.family
        self.num_heads, self.ffn_dim = adapter.num_heads(model), adapter.ffn_dim(model)
        self.decoder_num_heads, self.decoder_ffn_dim = adapter.decoder_num_heads(model), adapter.decoder_ffn_dim(model)
        self.hidden_size = adapter.hidden_size(model)
        self.blocks = [("encoder", i, kind) for i in range(len(encoder)) for kind in ("self", "ffn")]
        self.blocks += [("decoder", i, kind) for i in range(len(decoder)) for kind in ("self", "cross", "ffn")]
        sizes, per_unit, per_dim = [], [], []
        for stack, i, kind in self.blocks:
            layer = (encoder if stack == "encoder" else decoder)[i]
            if kind == "ffn":
                sizes.append(getattr(*adapter.ffn(layer).output).in_features)
                per_unit.append(params_of_one_neuron(adapter.ffn(layer)))
                per_dim.append(per_hidden_dim_of_neuron(adapter.ffn(layer)))
            else:
                att = adapter.attention(layer) if kind == "self" else adapter.cross_attention(layer)
                sizes.append(att.o.in_features // att.head_dim)
                per_unit.append(params_of_one_head(att))
                per_dim.append(per_hidden_dim_of_head(att))
        self.per_unit = per_unit  # parameters of one unit at the dense hidden size
        self.per_dim = per_dim  # of which per hidden dimension (the rest are biases)
        self.units = nn.ModuleList(HardConcrete(n, init_drop_rate) for n in sizes)
        counts = {"encoder": len(encoder), "decoder": len(decoder)}
        self.sublayers = nn.ModuleDict({f"{stack}_{kind}": HardConcrete(counts[stack], init_drop_rate)
                                        for stack, kinds in (("encoder", ("self", "ffn")),
                                                             ("decoder", ("self", "cross", "ffn")))
                                        for kind in kinds})
        self.hidden = HardConcrete(self.hidden_size, init_drop_rate) if hidden else None
        self._handles: list = []
        self._z: list[torch.Tensor] = []
        self._zh: torch.Tensor | None = None
        self._drawn_in_training: bool | None = None

    def _sublayer(self, block: tuple[str, int, str]) -> tuple[HardConcrete, int]:
        stack, i, kind = block
        return self.sublayers[f"{stack}_{kind}"], i

    def final_gates(self) -> list[torch.Tensor]:
        """Deterministic z_unit z_block per block (no gradient), in ``self.blocks`` order."""
        subs = {key: gate.deterministic() for key, gate in self.sublayers.items()}
        return [units.deterministic() * subs[f"{stack}_{kind}"][i]
                for (stack, i, kind), units in zip(self.blocks, self.units)]

    def final_hidden(self) -> torch.Tensor | None:
        """Deterministic hidden gates, (d,), at least one non-zero; None without hidden gates."""
        if self.hidden is None:
            return None
        z = self.hidden.deterministic()
        if not bool((z > 0).any()):
            z[int(torch.argmax(self.hidden.log_alpha))] = 1.0
        return z

    def _draw(self) -> None:
        if self.training:
            subs = {key: gate() for key, gate in self.sublayers.items()}
            self._z = [units() * subs[f"{stack}_{kind}"][i] for (stack, i, kind), units in zip(self.blocks, self.units)]
            self._zh = self.hidden() if self.hidden is not None else None
        else:
            device = self.units[0].log_alpha.device
            self._z = [z.to(device) for z in self.final_gates()]
            self._zh = self.final_hidden().to(device) if self.hidden is not None else None
        self._drawn_in_training = self.training

    def _current(self) -> None:
        if self._drawn_in_training is not self.training:
            self._draw()

    def hidden_mask(self) -> torch.Tensor | None:
        """(d,) bool, the hidden dimensions open in the current draw; None without hidden gates."""
        self._current()
        return None if self._zh is None else (self._zh > 0).detach()

    def _linear(self, adapter, model, block) -> tuple[nn.Linear, int]:
        """The Linear whose input carries the block's units, and the width of one unit."""
        stack, i, kind = block
        layer = (adapter.encoder_layers(model) if stack == "encoder" else adapter.decoder_layers(model))[i]
        if kind == "ffn":
            return getattr(*adapter.ffn(layer).output), 1
        att = adapter.attention(layer) if kind == "self" else adapter.cross_attention(layer)
        return att.o, att.head_dim

    def attach(self, model: nn.Module) -> CoFiGates:
        """Register the gate hooks on ``model`` (the one the gates were built for); returns self.
        One draw per model forward (a forward pre-hook on ``model``); in eval mode (generation
        too, whose encoder runs outside the model's forward) the deterministic gates."""
        adapter = get_adapter(model)
        self.detach()
        self._handles.append(model.register_forward_pre_hook(lambda *_: self._draw()))
        for b, block in enumerate(self.blocks):
            linear, width = self._linear(adapter, model, block)
            self._handles.append(linear.register_forward_pre_hook(self._hook(b, width)))
        if self.hidden is not None:
            sites = adapter.hidden_sites(model)
            writes = adapter.layer_hidden_linears(model)[1] + list(sites.writes)
            entries = {id(e) for e in sites.entries}
            for module in writes + [e for e in sites.entries if isinstance(e, nn.Embedding)]:
                self._handles.append(module.register_forward_hook(self._scale_hook))
            for norm in sites.norms:
                self._handles.append(norm.register_forward_hook(self._norm_hook(id(norm) in entries)))
        return self

    def _hook(self, b: int, width: int):
        def hook(_module, args):
            self._current()
            (x,) = args  # (B, T, units * width)
            z = self._z[b].to(x.dtype)
            return (x * (z.repeat_interleave(width) if width > 1 else z),)
        return hook

    def _scale_hook(self, _module, _args, output):
        self._current()
        return output * self._zh.to(output.dtype)  # (B, T, d) * (d,)

    def _norm_hook(self, entry: bool):
        def hook(module, args, _output):
            self._current()
            (x,) = args  # (B, T, d), exactly zero on the closed dimensions
            out = norm_over(module, x, torch.nonzero(self._zh).flatten())
            return out * self._zh.to(out.dtype) if entry else out
        return hook

    def detach(self) -> None:
        """Remove every hook this object registered."""
        for handle in self._handles:
            handle.remove()
        self._handles, self._drawn_in_training = [], None

    def total_params(self) -> int:
        """Parameters the gates govern: every head and FFN neuron of encoder and decoder."""
        return sum(len(u.log_alpha) * p for u, p in zip(self.units, self.per_unit))

    def expected_sparsity(self) -> torch.Tensor:
        """Expected fraction of the governed parameters removed (scalar, differentiable), see the class."""
        kept = 0.0
        dims = self.hidden.prob_nonzero().sum() if self.hidden is not None else float(self.hidden_size)
        for block, units, per, per_dim in zip(self.blocks, self.units, self.per_unit, self.per_dim):
            sub, i = self._sublayer(block)
            unit = per_dim * dims + (per - per_dim * self.hidden_size)
            kept = kept + sub.prob_nonzero()[i] * units.prob_nonzero().sum() * unit
        return 1.0 - kept / self.total_params()

    def clamp_(self) -> None:
        """Clamp every log alpha (after each optimizer step)."""
        for gate in list(self.units) + list(self.sublayers.values()) + ([self.hidden] if self.hidden else []):
            gate.clamp_()

    def plan(self, model: nn.Module, decoder_layers: tuple[int, ...] | None = None, notes: dict | None = None,
             target: float | None = None) -> PruningPlan:
        """The plan of the deterministic gates (every decoder layer kept, narrowed; hidden dims cut
        where the hidden gate is 0).

        Units with final gate 0 are removed; a block left empty keeps its highest-log-alpha unit
        (folded to zero by :func:`fold_cofi_gates` when its gate is 0). With ``target``, as in
        :meth:`EncoderGates.plan`: if fewer governed parameters are removed than ``target`` of
        :meth:`total_params` (counted at the kept hidden size), the remaining units with the lowest
        log alpha go too (at least one per block), and ``target_enforced`` says so; our addition,
        not CoFi's.
        """
        adapter = get_adapter(model)
        kept = []
        for z, units in zip(self.final_gates(), self.units):
            idx = set(torch.nonzero(z > 0).flatten().tolist())
            kept.append(idx or {int(torch.argmax(units.log_alpha))})
        zh = self.final_hidden()
        hidden_dims = tuple(torch.nonzero(zh > 0).flatten().tolist()) if zh is not None else ()
        d_kept = len(hidden_dims) if hidden_dims else self.hidden_size
        unit_params = [per - a * (self.hidden_size - d_kept) for per, a in zip(self.per_unit, self.per_dim)]
        enforced = False
        if target is not None:
            need = target * self.total_params() - (self.total_params() - sum(len(k) * p for k, p in zip(kept, unit_params)))
            candidates = sorted((float(u.log_alpha.detach()[j]), b, j) for b, u in enumerate(self.units) for j in kept[b])
            for _, b, j in candidates:
                if need <= 0:
                    break
                if len(kept[b]) > 1:
                    kept[b].discard(j)
                    need -= unit_params[b]
                    enforced = True
        by = {block: tuple(sorted(k)) for block, k in zip(self.blocks, kept)}
        n_enc = sum(1 for stack, _, kind in self.blocks if stack == "encoder" and kind == "self")
        n_dec = sum(1 for stack, _, kind in self.blocks if stack == "decoder" and kind == "self")
        extra = {"target_enforced": enforced} if target is not None else {}
        return PruningPlan(
            family=adapter.family, num_decoder_layers=n_dec, num_heads=self.num_heads, ffn_dim=self.ffn_dim,
            decoder_layers=tuple(range(n_dec)) if decoder_layers is None else tuple(decoder_layers),
            encoder_heads=tuple(by["encoder", i, "self"] for i in range(n_enc)),
            encoder_neurons=tuple(by["encoder", i, "ffn"] for i in range(n_enc)),
            decoder_num_heads=self.decoder_num_heads, decoder_ffn_dim=self.decoder_ffn_dim,
            decoder_heads=tuple(by["decoder", i, "self"] for i in range(n_dec)),
            decoder_cross_heads=tuple(by["decoder", i, "cross"] for i in range(n_dec)),
            decoder_neurons=tuple(by["decoder", i, "ffn"] for i in range(n_dec)),
            hidden_size=self.hidden_size if hidden_dims else 0, hidden_dims=hidden_dims,
            notes=dict(notes or {}, method="cofi-gates", **extra))


def norm_over(module: nn.Module, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``module`` (an ``nn.LayerNorm`` or T5's RMS norm) applied to the dimensions ``keep`` of x
    only, zeros elsewhere: what the norm of a model cut to those dimensions computes (CoFi's
    ``CoFiLayerNorm``).

    Args:
        module: The norm, with weight (and bias) of shape (d,).
        x: (..., d).
        keep: 1-D long tensor of kept dimensions.

    Returns:
        (..., d), differentiable in x and the norm's parameters.

    Raises:
        TypeError: For a norm that is neither.
    """
    keep = keep.to(x.device)
    part = x.index_select(-1, keep)
    if isinstance(module, nn.LayerNorm):
        bias = module.bias[keep] if module.bias is not None else None
        weight = module.weight[keep] if module.weight is not None else None
        normed = nn.functional.layer_norm(part, (len(keep),), weight, bias, module.eps)
    elif hasattr(module, "variance_epsilon"):  # T5LayerNorm: no mean, no bias, variance in float32
        variance = part.to(torch.float32).pow(2).mean(-1, keepdim=True)
        normed = part * torch.rsqrt(variance + module.variance_epsilon)
        if module.weight.dtype in (torch.float16, torch.bfloat16):
            normed = normed.to(module.weight.dtype)
        normed = module.weight[keep] * normed
    else:
        raise TypeError(f"Cannot normalise over kept dimensions with {type(module).__name__}.")
    return torch.zeros(*x.shape[:-1], x.shape[-1], dtype=normed.dtype, device=x.device).index_copy(-1, keep, normed)


def fold_cofi_gates(model: nn.Module, gates: CoFiGates) -> nn.Module:
    """:func:`fold_gates` for :class:`CoFiGates`, in place, hooks detached first: each unit's final
    gate z_unit z_block scales its input columns of the block's output projection; the hidden gate
    z_h scales the rows and biases of every Linear that writes the residual stream, and its start:
    the embedding LayerNorm's weight and bias (BART, BERT) or the token embedding's columns (T5,
    whose LM head, when tied to that embedding, gets 1 / z_h in the final decoder norm instead).
    Closed dimensions become zero; surgery with :meth:`CoFiGates.plan` cuts them.

    Returns:
        ``model``.
    """
    adapter = get_adapter(model)
    gates.detach()
    with torch.no_grad():
        for block, z in zip(gates.blocks, gates.final_gates()):
            linear, width = gates._linear(adapter, model, block)
            linear.weight.mul_((z.repeat_interleave(width) if width > 1 else z).to(linear.weight.dtype))
        zh = gates.final_hidden()
        if zh is None:
            return model
        sites = adapter.hidden_sites(model)
        for lin in adapter.layer_hidden_linears(model)[1] + list(sites.writes):
            lin.weight.mul_(zh[:, None].to(lin.weight.dtype))
            if lin.bias is not None:
                lin.bias.mul_(zh.to(lin.bias.dtype))
        done: set[int] = set()
        for entry in sites.entries:
            if id(entry.weight) in done:
                continue
            done.add(id(entry.weight))
            if isinstance(entry, nn.Embedding):
                entry.weight.mul_(zh[None, :].to(entry.weight.dtype))
                if any(r.weight is entry.weight for r in sites.reads) and sites.output_norm is not None:
                    safe = torch.where(zh > 0, zh, torch.ones_like(zh))
                    sites.output_norm.weight.div_(safe.to(sites.output_norm.weight.dtype))
            else:
                entry.weight.mul_(zh.to(entry.weight.dtype))
                if getattr(entry, "bias", None) is not None:
                    entry.bias.mul_(zh.to(entry.bias.dtype))
    return model
