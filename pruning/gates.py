"""Learned NASH's gates: hard-concrete L0 gates on encoder heads and FFN neurons (with the expected
encoder sparsity they imply), gates that choose the decoder layers, and folding the final gate
values into the weights. The gate itself and the Lagrangian are in ``pruning.hard_concrete``; CoFi's
gates in ``pruning.cofi``.

Sources:
    * Gates on heads and FFN neurons of the encoder, deterministic gates at the end with the
      expected number of zeros removed, lowest first: NASH (Ko et al. 2023, Sec. 3.2), which
      takes them from CoFi (Xia et al., ACL 2022, Sec. 3).
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

import torch
from torch import nn

from .adapters import get_adapter
from .hard_concrete import GateHooks, HardConcrete, drop_lowest, expand_units
from .plan import PruningPlan


class EncoderGates(GateHooks):
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
        self._z: dict[str, list[torch.Tensor]] = {}

    def _draw(self) -> None:
        if self.training:
            self._z = {"heads": [g() for g in self.heads], "neurons": [g() for g in self.neurons]}
        else:
            self._z = {"heads": [g.deterministic() for g in self.heads],
                       "neurons": [g.deterministic() for g in self.neurons]}

    def attach(self, model: nn.Module) -> EncoderGates:
        """Register the gate hooks on ``model`` (the one the gates were built for); returns self."""
        self.detach()
        layers = get_adapter(model).encoder_layers(model)
        # One draw per encoder forward: at the first encoder layer, before any gated module runs.
        self._keep(layers[0].register_forward_pre_hook(lambda *_: self._draw()))
        for i, kind, linear, width in self.gated_linears(model):
            self._scale_input(linear, lambda i=i, kind=kind: self._z[kind][i], width)
        return self

    def gated_linears(self, model: nn.Module):
        """Yield ``(layer, kind, linear, width)`` for each encoder layer and kind (``"heads"``,
        ``"neurons"``): the Linear whose input columns carry those units (the attention output
        projection, head_dim columns per head; the FFN output projection, one per neuron)."""
        adapter = get_adapter(model)
        for i, layer in enumerate(adapter.encoder_layers(model)):
            att = adapter.attention(layer)
            yield i, "heads", att.o, att.head_dim
            yield i, "neurons", getattr(*adapter.ffn(layer).output), 1

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

    def plan(self, model: nn.Module, kept_decoder_layers: tuple[int, ...], notes: dict | None = None,
             target: float | None = None) -> PruningPlan:
        """The plan of the deterministic gates: units whose gate is 0 are removed; every layer
        keeps at least its one highest-scoring head and neuron (a layer cannot be empty). Such a
        unit may have gate 0: :func:`fold_gates` zeroes its weights, so fold, then surgery with
        this plan, computes what the gated model computes.

        Args:
            model: The dense model the gates were built for.
            kept_decoder_layers: Kept decoder layer indices (from layer selection or decoder gates).
            notes: Provenance stored in the plan.
            target: When given and the deterministic gates remove a smaller fraction of heads or
                of neurons than ``target`` (training too short for the Lagrangian to reach it),
                the remaining units with the lowest log alpha are removed too, globally across
                layers, until each family's removed fraction reaches ``target``; the plan's notes
                say so (``target_enforced``) and count the units so removed per family
                (``completion_dropped``: ``{"heads": n, "ffn_neurons": m}``). This is our addition,
                so that a budget is always met; the units it removes had non-zero gates, so the
                equivalence above no longer holds for them (the final fine-tune follows). Without
                ``target``: NASH / CoFi exactly.
        """
        adapter = get_adapter(model)

        def kept(gate: HardConcrete) -> set[int]:
            z = gate.deterministic()
            idx = torch.nonzero(z > 0).flatten().tolist()
            return set(idx) if idx else {int(torch.argmax(gate.log_alpha))}

        heads = [kept(g) for g in self.heads]
        neurons = [kept(g) for g in self.neurons]
        extra = {}
        if target is not None:
            dropped = {}
            for family, gates, kept_units in (("heads", self.heads, heads), ("ffn_neurons", self.neurons, neurons)):
                total = sum(len(g.log_alpha) for g in gates)
                need = round(target * total) - (total - sum(len(k) for k in kept_units))
                dropped[family] = drop_lowest([g.log_alpha for g in gates], kept_units, need, [1] * len(gates))
            extra = {"target_enforced": any(dropped.values()), "completion_dropped": dropped}
        return PruningPlan(family=adapter.family, num_decoder_layers=adapter.num_decoder_layers(model),
                           num_heads=self.num_heads, ffn_dim=self.ffn_dim, kept_decoder_layers=tuple(kept_decoder_layers),
                           kept_encoder_heads=tuple(tuple(sorted(k)) for k in heads),
                           kept_encoder_neurons=tuple(tuple(sorted(k)) for k in neurons),
                           notes=dict(notes or {}, method="nash-learned-gates", **extra))


class DecoderLayerGates(GateHooks):
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
            self._keep(layer.register_forward_pre_hook(self._pre_hook(i), with_kwargs=True))
            self._keep(layer.register_forward_hook(self._post_hook(i)))
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

    def _forget(self) -> None:
        self._inputs = {}


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
    gates.detach()
    with torch.no_grad():
        for i, kind, linear, width in gates.gated_linears(model):
            z = getattr(gates, kind)[i].deterministic()
            linear.weight.mul_(expand_units(z, width).to(linear.weight.dtype))
    return model
