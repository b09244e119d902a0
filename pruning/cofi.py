"""CoFi's gates (Xia et al., "Structured Pruning Learns Compact and Accurate Models", ACL 2022,
Sec. 3), the baseline NASH compares with: coarse- and fine-grained hard-concrete gates on encoder
and decoder, hidden-dimension gates with norms over the open dimensions, and folding the final
gates into the weights. The gate itself and the Lagrangian are in ``pruning.hard_concrete``.
"""

from __future__ import annotations

import torch
from torch import nn

from .adapters import (get_adapter, params_of_one_head, params_of_one_neuron, per_hidden_dim_of_head,
                       per_hidden_dim_of_neuron)
from .hard_concrete import GateHooks, HardConcrete, drop_lowest, expand_units
from .plan import PruningPlan


class CoFiGates(GateHooks):
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
        self._keep(model.register_forward_pre_hook(lambda *_: self._draw()))
        for b, block in enumerate(self.blocks):
            linear, width = self._linear(adapter, model, block)
            self._scale_input(linear, lambda b=b: self._unit_gates(b), width)
        if self.hidden is not None:
            sites = adapter.hidden_sites(model)
            writes = adapter.layer_hidden_linears(model)[1] + list(sites.writes)
            entries = {id(e) for e in sites.entries}
            for module in writes + [e for e in sites.entries if isinstance(e, nn.Embedding)]:
                self._keep(module.register_forward_hook(self._scale_hook))
            for norm in sites.norms:
                self._keep(norm.register_forward_hook(self._norm_hook(id(norm) in entries)))
        return self

    def _unit_gates(self, b: int) -> torch.Tensor:
        self._current()
        return self._z[b]  # (units,) of block b

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

    def _forget(self) -> None:
        self._drawn_in_training = None

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

    def plan(self, model: nn.Module, kept_decoder_layers: tuple[int, ...] | None = None, notes: dict | None = None,
             target: float | None = None) -> PruningPlan:
        """The plan of the deterministic gates (every decoder layer kept, narrowed; hidden dims cut
        where the hidden gate is 0).

        Units with final gate 0 are removed; a block left empty keeps its highest-log-alpha unit
        (folded to zero by :func:`fold_cofi_gates` when its gate is 0). With ``target``, as in
        :meth:`EncoderGates.plan`: if fewer governed parameters are removed than ``target`` of
        :meth:`total_params` (counted at the kept hidden size), the remaining units with the lowest
        log alpha go too (at least one per block), and ``target_enforced`` says so
        (``completion_dropped``: ``{"units": n}``, heads and FFN neurons of any block); our addition,
        not CoFi's.
        """
        adapter = get_adapter(model)
        kept = []
        for z, units in zip(self.final_gates(), self.units):
            idx = set(torch.nonzero(z > 0).flatten().tolist())
            kept.append(idx or {int(torch.argmax(units.log_alpha))})
        zh = self.final_hidden()
        kept_hidden_dims = tuple(torch.nonzero(zh > 0).flatten().tolist()) if zh is not None else ()
        d_kept = len(kept_hidden_dims) if kept_hidden_dims else self.hidden_size
        unit_params = [per - a * (self.hidden_size - d_kept) for per, a in zip(self.per_unit, self.per_dim)]
        dropped = 0
        if target is not None:
            need = target * self.total_params() - (self.total_params() - sum(len(k) * p for k, p in zip(kept, unit_params)))
            dropped = drop_lowest([u.log_alpha for u in self.units], kept, need, unit_params)
        by = {block: tuple(sorted(k)) for block, k in zip(self.blocks, kept)}
        n_enc = sum(1 for stack, _, kind in self.blocks if stack == "encoder" and kind == "self")
        n_dec = sum(1 for stack, _, kind in self.blocks if stack == "decoder" and kind == "self")
        extra = {"target_enforced": dropped > 0, "completion_dropped": {"units": dropped}} if target is not None else {}
        return PruningPlan(
            family=adapter.family, num_decoder_layers=n_dec, num_heads=self.num_heads, ffn_dim=self.ffn_dim,
            kept_decoder_layers=tuple(range(n_dec)) if kept_decoder_layers is None else tuple(kept_decoder_layers),
            kept_encoder_heads=tuple(by["encoder", i, "self"] for i in range(n_enc)),
            kept_encoder_neurons=tuple(by["encoder", i, "ffn"] for i in range(n_enc)),
            decoder_num_heads=self.decoder_num_heads, decoder_ffn_dim=self.decoder_ffn_dim,
            kept_decoder_heads=tuple(by["decoder", i, "self"] for i in range(n_dec)),
            kept_cross_heads=tuple(by["decoder", i, "cross"] for i in range(n_dec)),
            kept_decoder_neurons=tuple(by["decoder", i, "ffn"] for i in range(n_dec)),
            hidden_size=self.hidden_size if kept_hidden_dims else 0, kept_hidden_dims=kept_hidden_dims,
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
            linear.weight.mul_(expand_units(z, width).to(linear.weight.dtype))
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
